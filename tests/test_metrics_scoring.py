"""The one scoring function (medldm.metrics.scoring) the benchmark and the reconstruction
app report from."""

from __future__ import annotations

import numpy as np
import pytest

from medldm.errors import InvalidInputError
from medldm.metrics import mean_slice_scores, nmse, psnr, score, ssim


def _stack(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random((3, 32, 32)).astype(np.float32)
    truth[1] *= 0.5
    noisy = np.abs(truth + rng.normal(0, 0.02, truth.shape).astype(np.float32))
    return noisy, truth


def test_score_gives_the_three_metrics_with_the_ground_truths_range():
    estimate, truth = _stack()
    scores = score(estimate[0], truth[0])
    data_range = float(truth[0].astype(np.float64).max() - truth[0].min())
    assert scores["data_range"] == data_range and scores["roi"] == "none"
    assert scores["psnr"] == psnr(estimate[0], truth[0], data_range=data_range)
    assert scores["ssim"] == ssim(estimate[0], truth[0], data_range=data_range)
    assert scores["nmse"] == nmse(estimate[0], truth[0])


def test_score_compares_magnitudes_even_of_real_estimates():
    estimate, truth = _stack()
    assert score(-estimate[0], truth[0]) == score(estimate[0], truth[0])


def test_score_refuses_non_finite_estimates_and_unknown_rois():
    estimate, truth = _stack()
    estimate[0, 0, 0] = np.nan
    with pytest.raises(InvalidInputError, match="NaN"):
        score(estimate[0], truth[0])
    with pytest.raises(InvalidInputError, match="unknown ROI"):
        score(truth[0], truth[0], roi="brain")


def test_mean_slice_scores_use_each_slices_own_range():
    # (the range is taken in float64: a float32 max - min can differ in the last bit)
    estimate, truth = _stack()
    scores = mean_slice_scores(estimate, truth)
    expected_psnr = np.mean(
        [
            psnr(e, t, data_range=float(t.max() - t.min()))
            for e, t in zip(estimate, truth, strict=True)
        ]
    )
    expected_ssim = np.mean(
        [
            ssim(e, t, data_range=float(t.max() - t.min()))
            for e, t in zip(estimate, truth, strict=True)
        ]
    )
    assert scores["psnr"] == pytest.approx(expected_psnr, rel=1e-8)
    assert scores["ssim"] == pytest.approx(expected_ssim, rel=1e-8)


def test_a_constant_slice_is_scored_in_the_model_range():
    estimate, truth = _stack()
    truth[2] = 0.0
    estimate[2] = 0.1
    scores = mean_slice_scores(estimate, truth)
    first_two = mean_slice_scores(estimate[:2], truth[:2])
    assert scores["psnr"] == pytest.approx((2 * first_two["psnr"] + 20.0) / 3, rel=1e-6)
    assert np.isnan(scores["nmse"])  # no energy in the empty slice: NMSE undefined
