"""benchmarks/orientation_effect.py: its pairing, statistics and preset loading."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from medldm.bench.cases.case import Case
from medldm.data.normalize import Normalization
from medldm.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "orientation_effect.py"


@pytest.fixture(scope="module")
def orientation_effect():
    spec = importlib.util.spec_from_file_location("orientation_effect", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _case(index: int) -> Case:
    image = np.zeros((4, 4), np.float32)
    image[0] = 1.0 + index  # the top row marks the orientation
    return Case("toy", f"c{index}", image, Normalization(0.0, 1.0))


def test_measure_pairs_each_seed_upright_and_flipped(orientation_effect):
    calls = []

    def run(case: Case, seed: int) -> tuple[float, float]:
        calls.append((case.case_id, seed, bool(case.image[0, 0] > 0)))
        return float(case.image[0, 0]) + 0.1 * seed, 0.5

    row = orientation_effect.measure("toy_op", [_case(0), _case(1)], [0, 3], run)
    # every case x seed solved twice with the same seed: upright (top row set), then flipped
    assert calls[:2] == [("c0", 0, True), ("c0", 0, False)]
    assert len(calls) == 8 and {c[1] for c in calls} == {0, 3}
    assert row["pairs"] == 4 and row["cases"] == 2
    assert row["delta_psnr_pairs"] == [1.0, 1.0, 2.0, 2.0]
    assert row["delta_psnr"] == 1.5 and row["upright_better"] == 4
    assert row["delta_ssim"] == 0.0


def test_paired_interval_is_a_t_interval(orientation_effect):
    d = [0.1, 0.3, 0.5, 0.7]
    mean, low, high = orientation_effect.paired(d)
    half = 3.182446305284263 * np.std(d, ddof=1) / 2.0  # t(0.975, 3) * s / sqrt(4)
    assert mean == pytest.approx(0.4)
    assert (low, high) == pytest.approx((0.4 - half, 0.4 + half))
    with pytest.raises(ValueError, match="at least two"):
        orientation_effect.paired([0.3])


def test_preset_solver_builds_the_preset_class(orientation_effect):
    from medldm.solvers import TotalVariation

    solver = orientation_effect.preset_solver(ROOT / "configs" / "solver", "tv_mri_4x")
    assert isinstance(solver, TotalVariation)


def test_preset_solver_names_the_missing_preset(orientation_effect, tmp_path):
    with pytest.raises(InvalidInputError, match=r"latent_dds_mri_4x\.yaml"):
        orientation_effect.preset_solver(tmp_path, "latent_dds_mri_4x")


def test_suite_operators_are_the_ldm_suites(orientation_effect):
    ops = orientation_effect.suite_operators()
    assert ops[:2] == ["mri_4x", "mri_8x"] and "inpaint_random" in ops
