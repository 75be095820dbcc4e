"""The selection rule of benchmarks/tune_latent.py: best SSIM within a PSNR tolerance."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_latent.py"


@pytest.fixture(scope="module")
def tune_latent():
    saved_path, had_helper = list(sys.path), "tune_classical" in sys.modules
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling tune_classical
    try:
        spec = importlib.util.spec_from_file_location("tune_latent", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path[:] = saved_path
        if not had_helper:
            sys.modules.pop("tune_classical", None)


def test_choose_prefers_ssim_among_near_best_psnr(tune_latent):
    rows = [((0.0,), 18.82, 0.413), ((0.5,), 18.80, 0.455), ((1.0,), 18.60, 0.480)]
    assert tune_latent.choose(rows, 0.05) == 1  # 0.02 dB below the best, +0.04 SSIM
    assert tune_latent.choose(rows, 0.0) == 0  # PSNR alone
    assert tune_latent.choose(rows, 0.5) == 2


def test_choose_breaks_ssim_ties_by_psnr(tune_latent):
    rows = [((0,), 20.0, 0.5), ((1,), 20.03, 0.5)]
    assert tune_latent.choose(rows, 0.05) == 1


def test_choose_refuses_a_negative_tolerance_and_no_rows(tune_latent):
    with pytest.raises(ValueError, match="tolerance"):
        tune_latent.choose([((0,), 20.0, 0.5)], -0.1)
    with pytest.raises(ValueError, match="no grid"):
        tune_latent.choose([], 0.05)


def test_doctests(tune_latent):
    failures, _ = doctest.testmod(tune_latent)
    assert failures == 0


def test_choose_above_reference_takes_the_best_psnr_that_keeps_the_ssim(tune_latent):
    rows = [((0,), 24.46, 0.7278), ((1,), 24.30, 0.7350), ((2,), 24.10, 0.7420)]
    assert tune_latent.choose_above_reference(rows, 0.7300, 0.05) == (1, True)
    assert tune_latent.choose_above_reference(rows, 0.7400, 0.05) == (2, True)
    # nobody reaches it: the near-best-PSNR rule decides, and says so
    assert tune_latent.choose_above_reference(rows, 0.80, 0.05) == (0, False)
    assert tune_latent.choose_above_reference(rows, 0.80, 0.2) == (1, False)


def test_reference_scores_run_the_classical_presets_on_the_same_measurements(tune_latent):
    from skimage.data import camera
    from skimage.transform import resize

    from medldm.bench.cases.case import Case
    from medldm.data.normalize import Normalization

    image = resize(camera().astype(np.float32) / 255.0, (32, 32), anti_aliasing=True)
    case = Case("toy", "camera", image.astype(np.float32), Normalization(0.0, 1.0))
    measurements = tune_latent.simulate("inpaint_random", [case])
    scores = tune_latent.reference_scores(["zero_filled", "tv"], "inpaint_random", measurements)
    assert list(scores) == ["zero_filled", "tv_inpaint_random"]  # the preset that was used
    (zf_psnr, _), (tv_psnr, tv_ssim) = scores["zero_filled"], scores["tv_inpaint_random"]
    assert tv_psnr > zf_psnr + 3.0  # TV fills the missing pixels; zero filling does not
    assert 0.0 < tv_ssim <= 1.0


def test_a_set_value_shadowed_by_a_grid_axis_is_refused(tune_latent):
    # dc_weight is a default grid axis of latent_dds: --set dc_weight would be ignored
    with pytest.raises(SystemExit, match=r"also a grid axis.*--grid dc_weight="):
        tune_latent.main(["--operators", "mri_4x", "--set", "dc_weight=0.005", "--references"])


def test_skipping_points_over_the_budget_needs_a_budget(tune_latent, capsys):
    with pytest.raises(SystemExit) as refused:
        tune_latent.main(["--operators", "mri_4x", "--skip-over-budget", "--references"])
    assert refused.value.code == 2
    assert "--skip-over-budget needs --max-calls" in capsys.readouterr().err
