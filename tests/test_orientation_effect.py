"""benchmarks/orientation_effect.py: its paired statistics and its preset loading."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "orientation_effect.py"


@pytest.fixture(scope="module")
def orientation_effect():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("orientation_effect", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_paired_interval_matches_a_t_interval(orientation_effect):
    d = [0.1, 0.3, 0.5, 0.7]
    mean, low, high = orientation_effect.paired(d)
    half = 3.182446305284263 * np.std(d, ddof=1) / 2.0  # t(0.975, 3) * s / sqrt(4)
    assert mean == pytest.approx(0.4)
    assert (low, high) == pytest.approx((0.4 - half, 0.4 + half))


def test_load_solver_builds_the_preset_class(orientation_effect):
    from medldm.solvers import TotalVariation

    solver = orientation_effect.load_solver(ROOT / "configs" / "solver", "tv_mri_4x")
    assert isinstance(solver, TotalVariation)


def test_load_solver_names_the_missing_preset(orientation_effect, tmp_path):
    with pytest.raises(SystemExit, match=r"latent_dds_mri_4x\.yaml"):
        orientation_effect.load_solver(tmp_path, "latent_dds_mri_4x")
