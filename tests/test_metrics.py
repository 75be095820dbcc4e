"""PSNR, SSIM and NMSE: agreement with scikit-image at an explicit data range, the ROI,
per-slice versus per-volume values, and the errors the convention promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import camera
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from medldm.errors import InvalidInputError
from medldm.metrics import METRIC_CONVENTION, foreground_mask, nmse, psnr, ssim

WANG_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


@pytest.fixture(scope="module")
def camera_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real photograph (float, grey levels) and a noisy, slightly blurred estimate."""
    reference = camera().astype(np.float64)
    rng = np.random.default_rng(0)
    estimate = 0.9 * reference + rng.normal(0.0, 8.0, reference.shape) + 5.0
    return estimate, reference


@pytest.fixture(scope="module")
def mednist_mri(data_root: Path) -> np.ndarray:
    """Eight real 64x64 breast MRI slices (uint8) from MedNIST, as a (8, 64, 64) stack."""
    with np.load(data_root / "mednist" / "BreastMRI.npz") as archive:
        return archive["images"][100:108].copy()


def test_psnr_and_ssim_match_skimage_on_camera_with_explicit_range(camera_pair):
    estimate, reference = camera_pair
    for data_range in (255.0, 400.0):
        expected_psnr = peak_signal_noise_ratio(reference, estimate, data_range=data_range)
        expected_ssim = structural_similarity(
            reference, estimate, data_range=data_range, **WANG_SSIM
        )
        assert psnr(estimate, reference, data_range=data_range) == pytest.approx(expected_psnr)
        assert ssim(estimate, reference, data_range=data_range) == pytest.approx(expected_ssim)


def test_metrics_match_skimage_on_real_mednist_mri(mednist_mri):
    reference = mednist_mri[0].astype(np.float64)
    estimate = mednist_mri[1].astype(np.float64)  # a neighbouring real slice
    data_range = reference.max() - reference.min()
    assert psnr(estimate, reference) == pytest.approx(
        peak_signal_noise_ratio(reference, estimate, data_range=data_range)
    )
    assert ssim(estimate, reference) == pytest.approx(
        structural_similarity(reference, estimate, data_range=data_range, **WANG_SSIM)
    )
    expected_nmse = np.sum((estimate - reference) ** 2) / np.sum(reference**2)
    assert nmse(estimate, reference) == pytest.approx(expected_nmse)


def test_default_data_range_comes_from_the_reference_not_the_dtype(mednist_mri):
    reference = mednist_mri[0] // 2  # uint8 with values 0..127: a dtype range would be 255
    estimate = reference.astype(np.float64) + 1.0
    span = float(reference.max()) - float(reference.min())
    assert span < 255
    assert psnr(estimate, reference) == pytest.approx(10 * np.log10(span**2 / 1.0))
    # Swapping the arguments changes the range (taken from the second argument).
    swapped_span = float(estimate.max() - estimate.min())
    assert psnr(reference, estimate) == pytest.approx(10 * np.log10(swapped_span**2))


def test_identical_images_give_inf_psnr_ssim_one_nmse_zero(camera_pair):
    _, reference = camera_pair
    assert psnr(reference, reference) == float("inf")
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert nmse(reference, reference) == 0.0


def test_constant_reference_without_range_raises_and_explicit_range_works():
    reference = np.full((32, 32), 7.0)
    estimate = reference + 1.0
    with pytest.raises(InvalidInputError, match="data_range"):
        psnr(estimate, reference)
    with pytest.raises(InvalidInputError, match="data_range"):
        ssim(estimate, reference)
    assert psnr(estimate, reference, data_range=10.0) == pytest.approx(20.0)


@pytest.mark.parametrize("bad_range", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_data_range_raises(camera_pair, bad_range):
    estimate, reference = camera_pair
    with pytest.raises(InvalidInputError, match="positive"):
        psnr(estimate, reference, data_range=bad_range)


def test_complex_inputs_are_compared_as_magnitudes(camera_pair):
    estimate, reference = camera_pair
    phase = np.exp(1j * np.linspace(0, np.pi, reference.size).reshape(reference.shape))
    magnitude = np.abs(estimate)
    assert psnr(estimate * phase, reference * phase) == pytest.approx(psnr(magnitude, reference))
    assert ssim(estimate * phase, reference) == pytest.approx(ssim(magnitude, reference))


def test_torch_tensors_with_batch_and_channel_axes_are_accepted(camera_pair):
    estimate, reference = camera_pair
    est_t = torch.from_numpy(estimate)[None, None]
    ref_t = torch.from_numpy(reference)[None, None]
    assert psnr(est_t, ref_t) == pytest.approx(psnr(estimate, reference))
    assert ssim(est_t, ref_t, data_range=255.0) == pytest.approx(
        ssim(estimate, reference, data_range=255.0)
    )


def test_shape_mismatch_and_batches_raise(camera_pair):
    estimate, reference = camera_pair
    with pytest.raises(InvalidInputError, match="shape"):
        psnr(estimate[:-1], reference)
    batch = np.stack([reference, reference])[:, None]  # (2, 1, H, W)
    with pytest.raises(InvalidInputError, match="loop over the batch"):
        psnr(batch, batch)


def test_roi_psnr_and_nmse_use_only_roi_pixels(camera_pair):
    estimate, reference = camera_pair
    roi = np.zeros(reference.shape, bool)
    roi[100:300, 150:350] = True
    mse = np.mean((estimate[roi] - reference[roi]) ** 2)
    assert psnr(estimate, reference, data_range=255.0, mask=roi) == pytest.approx(
        10 * np.log10(255.0**2 / mse)
    )
    expected = np.sum((estimate[roi] - reference[roi]) ** 2) / np.sum(reference[roi] ** 2)
    assert nmse(estimate, reference, mask=roi) == pytest.approx(expected)
    # Errors outside the ROI do not count.
    spoiled = estimate.copy()
    spoiled[~roi] = 0.0
    assert psnr(spoiled, reference, data_range=255.0, mask=roi) == pytest.approx(
        psnr(estimate, reference, data_range=255.0, mask=roi)
    )


def test_roi_ssim_is_the_mean_of_the_ssim_map_over_the_roi(camera_pair):
    estimate, reference = camera_pair
    _, full_map = structural_similarity(
        reference, estimate, data_range=255.0, full=True, **WANG_SSIM
    )
    roi = np.zeros(reference.shape, bool)
    roi[100:300, 150:350] = True
    assert ssim(estimate, reference, data_range=255.0, mask=roi) == pytest.approx(
        full_map[roi].mean()
    )
    everything = np.ones(reference.shape, bool)
    assert ssim(estimate, reference, data_range=255.0, mask=everything) == pytest.approx(
        ssim(estimate, reference, data_range=255.0)
    )


def test_empty_roi_raises(camera_pair):
    estimate, reference = camera_pair
    with pytest.raises(InvalidInputError, match="empty"):
        psnr(estimate, reference, mask=np.zeros(reference.shape, bool))


def test_per_slice_values_use_the_volume_range(mednist_mri):
    volume = mednist_mri.astype(np.float64)  # (8, 64, 64): 8 slices along axis 0
    estimate = volume + np.random.default_rng(1).normal(0, 4.0, volume.shape)
    span = volume.max() - volume.min()
    per_slice = psnr(estimate, volume, per_slice=True)
    assert per_slice.shape == (8,)
    for index in range(8):
        assert per_slice[index] == pytest.approx(
            peak_signal_noise_ratio(volume[index], estimate[index], data_range=span)
        )
    ssim_slices = ssim(estimate, volume, per_slice=True)
    assert ssim_slices[3] == pytest.approx(
        structural_similarity(volume[3], estimate[3], data_range=span, **WANG_SSIM)
    )
    # The volume PSNR comes from the volume's MSE, not from the mean of slice PSNRs.
    mse = np.mean((estimate - volume) ** 2)
    assert psnr(estimate, volume) == pytest.approx(10 * np.log10(span**2 / mse))


def test_per_slice_along_another_axis_and_with_ranges_per_slice(mednist_mri):
    volume = np.moveaxis(mednist_mri.astype(np.float64), 0, -1)  # (64, 64, 8)
    estimate = volume + 3.0
    ranges = [float(np.ptp(volume[..., k])) for k in range(8)]
    values = psnr(estimate, volume, per_slice=True, slice_axis=-1, data_range=ranges)
    assert values == pytest.approx([10 * np.log10(r**2 / 9.0) for r in ranges])
    with pytest.raises(InvalidInputError, match="data ranges for 8 slices"):
        psnr(estimate, volume, per_slice=True, slice_axis=-1, data_range=ranges[:3])


def test_per_slice_needs_a_volume(camera_pair):
    estimate, reference = camera_pair
    with pytest.raises(InvalidInputError, match="3D volume"):
        psnr(estimate, reference, per_slice=True)


def test_volume_ssim_uses_a_3d_window_like_skimage(data_root):
    from medldm.data.datasets import iter_images

    volume = next(iter_images("ixi_t1", "train")).array[30:90, 30:90, 30:60].astype(np.float64)
    estimate = volume + np.random.default_rng(2).normal(0, 50.0, volume.shape)
    span = volume.max() - volume.min()
    expected = structural_similarity(volume, estimate, data_range=span, **WANG_SSIM)
    assert ssim(estimate, volume) == pytest.approx(expected)
    thin = volume[:, :, :5]
    with pytest.raises(InvalidInputError, match="per_slice"):
        ssim(thin, thin)


def test_foreground_mask_of_a_real_brain_slice_fills_holes(data_root):
    from medldm.data.datasets import iter_images
    from medldm.data.slices import central_slices

    image = next(iter_images("ixi_t1", "train"))
    brain = central_slices(image, 1)[0].array
    mask = foreground_mask(brain)
    assert mask.shape == brain.shape and mask.dtype == bool
    assert 0.2 < mask.mean() < 0.9  # head, not background
    threshold = 0.05 * (brain.max() - brain.min()) + brain.min()
    assert mask.sum() >= (brain > threshold).sum()  # holes filled, nothing removed
    assert foreground_mask(brain, threshold_fraction=None).any()  # Otsu
    with pytest.raises(InvalidInputError, match="constant"):
        foreground_mask(np.ones((8, 8)))


def test_the_convention_states_range_roi_ssim_settings_and_slices():
    for phrase in (
        "magnitude",
        "data_range",
        "max(reference) - min(reference)",
        "sigma = 1.5",
        "use_sample_covariance=False",
        "ROI",
        "per slice",
    ):
        assert phrase in METRIC_CONVENTION
