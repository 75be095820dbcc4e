"""The selection rule of benchmarks/tune_latent.py: best SSIM within a PSNR tolerance."""

from __future__ import annotations

import doctest
import importlib.util
import sys
from pathlib import Path

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
