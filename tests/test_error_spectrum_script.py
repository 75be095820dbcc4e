"""Whole-head diagnostics: radial error spectra (benchmarks/error_spectrum.py) and a prior's
denoising loss by slice position (benchmarks/prior_loss_by_position.py)."""

import doctest
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import error_spectrum
import prior_loss_by_position

from medldm.models.testing import tiny_prior


def test_a_cosine_lands_in_its_ring():
    rows = np.arange(64)[:, None] * np.ones((1, 64))
    stack = np.cos(2 * np.pi * 0.3125 * rows)[None]  # 20 cycles in 64 rows
    power = error_spectrum.radial_power(stack)
    ring = np.searchsorted(error_spectrum.EDGES, 0.3125, side="right") - 1
    assert np.argmax(power) == ring
    assert power[ring] > 1e3 * np.delete(power, ring).max()


def _head(slices=30, size=32):
    """A cylinder of foreground through every slice (IXI-like intensities)."""
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2).astype(np.float32)
    return np.repeat(disc[None] * 800.0, slices, axis=0)


def test_spectra_split_the_extent_into_thirds_and_see_each_error_where_it_is():
    truth = _head()
    rng = np.random.default_rng(0)
    fine = np.where(np.indices(truth.shape[1:]).sum(0) % 2, 1.0, -1.0)  # a checkerboard
    ldm = truth + 5.0 * fine[None]  # the error all at the corner of k-space
    baseline = truth + rng.normal(0, 5.0, truth.shape)  # white: every ring
    result = error_spectrum.average([error_spectrum.spectra_by_third(truth, ldm, baseline)])
    assert [result[t]["slices"] for t in error_spectrum.THIRDS] == [10, 10, 10]
    shares = error_spectrum.error_share_inner(result, 3)
    for third in error_spectrum.THIRDS:
        assert np.argmax(result[third]["ldm_error"]) == len(error_spectrum.EDGES) - 2
        assert shares[third]["ldm_error"] < 1e-6
        # white noise: the inner rings' share of the frequencies
        counts = np.array(result[third]["frequencies"], float)
        expected = counts[:3].sum() / counts.sum()
        assert shares[third]["baseline_error"] == pytest.approx(expected, abs=0.05)


def test_noise_losses_are_the_training_objective():
    import torch.nn.functional as F

    from medldm.models.config import build_scheduler

    prior = tiny_prior()
    images = torch.rand(3, 1, 16, 16)
    losses = prior_loss_by_position.noise_losses(prior, images, np.zeros(3), timesteps=(500,))
    # what the training loop's validation computes: the scheduler's forward process and
    # the MSE of the predicted noise, here per image
    clean = prior.encode(images)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    t = torch.full((3,), 500)
    noisy = build_scheduler(prior.config.scheduler, "ddpm").add_noise(clean, noise, t)
    with torch.no_grad():
        predicted = prior.predict_eps(noisy, 500).float()
    expected = [float(F.mse_loss(predicted[i], noise[i])) for i in range(3)]
    assert losses.shape == (3, 1)
    np.testing.assert_allclose(losses[:, 0], expected, rtol=1e-4)


def test_a_slice_conditioned_prior_is_told_each_slice_position():
    prior = tiny_prior(slice_position=True)
    with torch.no_grad():
        for parameter in prior.unet.parameters():  # a network that reads its condition
            parameter.add_(0.05 * torch.randn_like(parameter))
    image = torch.rand(1, 1, 16, 16)
    # the same image and the same noise draw at two positions
    low, high = (
        prior_loss_by_position.noise_losses(prior, image, np.array([p]), timesteps=(500,))
        for p in (0.0, 1.0)
    )
    again = prior_loss_by_position.noise_losses(prior, image, np.array([0.0]), timesteps=(500,))
    assert low[0, 0] == pytest.approx(again[0, 0], rel=1e-6)
    assert low[0, 0] != pytest.approx(high[0, 0], rel=1e-4)


@pytest.mark.parametrize("module", [error_spectrum, prior_loss_by_position])
def test_doctests(module):
    failures, _ = doctest.testmod(module)
    assert failures == 0


def test_the_sample_count_limit_recovers_the_posterior_mean_error():
    import sample_count_limit

    mean_error, variance = 0.7, 0.25
    rows = [
        {
            "n_samples": n,
            "ldm_minus_tv": {
                part: {"mean": -10 * np.log10(mean_error + variance / n) + shift}
                for part, shift in zip(sample_count_limit.PARTS, (0, -1, 0.5, 1), strict=True)
            },
        }
        for n in (1, 2, 4, 8)
    ]
    result = sample_count_limit.summary(rows)
    assert result["all"]["limit_db"] == pytest.approx(-10 * np.log10(mean_error), abs=0.01)
    assert result["all"]["misfit"] < 1e-6
    assert (
        result["inferior"]["limit_db"] < result["all"]["limit_db"] < result["superior"]["limit_db"]
    )
