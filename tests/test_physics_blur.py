"""Microscopy blur: PSF sources and checks, FFT convolution against SciPy, noise."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
import torch
from scipy.ndimage import gaussian_filter

from medldm.errors import InvalidInputError
from medldm.physics import (
    Blur,
    PoissonGaussianNoise,
    airy_psf,
    gaussian_psf,
    load_psf,
    psf_from_beads,
    psf_with_fallback,
)
from medldm.physics.blur import FALLBACK_PSF_SIGMA_PX


def _scipy_kernel_shape(sigmas) -> tuple[int, ...]:
    """The kernel size scipy's gaussian_filter uses (truncate=4): 2 * int(4 s + 0.5) + 1."""
    return tuple(2 * int(4 * s + 0.5) + 1 for s in sigmas)


# --- PSFs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "psf",
    [
        gaussian_psf((9, 11), (1.0, 2.0)),
        gaussian_psf((7, 9, 9), 1.5),
        airy_psf((31, 31), 1.2, 0.5, 0.05, refractive_index=1.33),
        airy_psf((9, 31, 31), 1.2, 0.5, 0.05, z_spacing_um=0.2, refractive_index=1.33),
    ],
    ids=["gaussian_2d", "gaussian_3d", "airy_2d", "airy_3d"],
)
def test_psfs_have_unit_sum_and_peak_at_the_centre(psf):
    assert float(psf.sum()) == pytest.approx(1.0, abs=1e-6)
    assert bool((psf >= 0).all())
    centre = tuple(n // 2 for n in psf.shape)
    assert float(psf[centre]) == pytest.approx(float(psf.max()))


def test_airy_psf_first_zero_is_at_the_rayleigh_radius():
    numerical_aperture, wavelength_um, pixel_um = 0.8, 0.5, 0.01
    psf = airy_psf((201, 201), numerical_aperture, wavelength_um, pixel_um)
    profile = psf[100, 100:].numpy()
    first_minimum_px = int(np.argmax(np.diff(profile) > 0))
    rayleigh_px = 0.61 * wavelength_um / numerical_aperture / pixel_um
    assert abs(first_minimum_px - rayleigh_px) <= 1.5


def test_blur_with_unnormalised_psf_is_normalised():
    blur = Blur(torch.ones(3, 3) * 7)
    assert float(blur.psf.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "psf, match",
    [
        (torch.tensor([[1.0, float("nan")], [1.0, 1.0]]), "NaN"),
        (torch.zeros(3, 3), "sums to zero"),
        (-torch.ones(3, 3), "sums to zero"),
    ],
    ids=["nan", "zeros", "negative"],
)
def test_bad_psf_raises(psf, match):
    with pytest.raises(InvalidInputError, match=match):
        Blur(psf)


def test_load_psf_normalises_a_measured_psf_and_keeps_axis_order(tmp_path):
    psf = np.zeros((5, 7, 9), np.float32)  # (z, y, x) as tifffile writes it
    psf[2, 3, 4], psf[2, 3, 5] = 3.0, 1.0
    path = tmp_path / "psf.tif"
    tifffile.imwrite(path, psf, photometric="minisblack")
    loaded = load_psf(path)
    assert loaded.shape == (5, 7, 9)
    assert float(loaded.sum()) == pytest.approx(1.0)
    assert float(loaded[2, 3, 4]) == pytest.approx(0.75)


def test_psf_file_with_some_nan_raises_unless_zeroed(tmp_path):
    psf = np.ones((4, 6, 6), np.float32)
    psf[0, 0, :2] = np.nan
    path = tmp_path / "partial_nan_psf.tif"
    tifffile.imwrite(path, psf, photometric="minisblack")
    with pytest.raises(InvalidInputError, match="2 NaN/Inf voxels") as error:
        load_psf(path)
    assert "partial_nan_psf.tif" in str(error.value)
    assert float(load_psf(path, nan_policy="zero").sum()) == pytest.approx(1.0)


def test_all_nan_psf_file_raises_naming_the_file(tmp_path):
    path = tmp_path / "all_nan_psf.tif"
    tifffile.imwrite(path, np.full((3, 8, 8), np.nan, np.float32), photometric="minisblack")
    for policy in ("raise", "zero"):
        with pytest.raises(InvalidInputError, match="every voxel") as error:
            load_psf(path, nan_policy=policy)
        assert str(path) in str(error.value)


@pytest.mark.shared_data
def test_shared_measured_psf_is_all_nan_and_raises_naming_the_file(microscopy_dir):
    path = microscopy_dir / "psf.tif"
    with pytest.raises(InvalidInputError, match="922500 of 922500") as error:
        load_psf(path, nan_policy="zero")
    assert str(path) in str(error.value)


@pytest.mark.shared_data
def test_fallback_fits_the_bead_image_when_the_measured_psf_is_unusable(microscopy_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="medldm.physics.blur"):
        psf, source = psf_with_fallback(
            microscopy_dir / "psf.tif", microscopy_dir / "Bead_Image1_crop.tif"
        )
    assert "Bead_Image1_crop.tif" in source and "psf.tif" in source
    assert "falling back" in caplog.text
    assert float(psf.sum()) == pytest.approx(1.0)
    assert psf.ndim == 3


def test_fallback_without_any_file_is_the_documented_gaussian():
    psf, source = psf_with_fallback(None)
    assert "default Gaussian" in source
    assert str(FALLBACK_PSF_SIGMA_PX) in source
    assert float(psf.sum()) == pytest.approx(1.0)


def test_psf_from_beads_recovers_the_sigma_of_synthetic_beads():
    rng = np.random.default_rng(0)
    volume = np.zeros((32, 64, 64))
    for z, y, x in [(16, 20, 20), (15, 44, 40), (18, 30, 52)]:
        volume[z, y, x] = rng.uniform(50, 100)
    true_sigmas = (2.0, 3.0, 2.5)
    blurred = gaussian_filter(volume, true_sigmas) * 100 + 5 + rng.normal(0, 0.05, volume.shape)
    psf, sigmas = psf_from_beads(blurred)
    assert sigmas == pytest.approx(true_sigmas, rel=0.05)
    assert float(psf.sum()) == pytest.approx(1.0)


# --- blur operator --------------------------------------------------------------------
@pytest.mark.parametrize(
    "sigmas, shape",
    [((1.0, 1.0), (32, 40)), ((2.5, 1.5), (33, 28)), ((1.0, 2.0, 1.5), (12, 24, 20))],
    ids=["2d", "2d_anisotropic", "3d"],
)
@pytest.mark.parametrize("boundary, mode", [("circular", "wrap"), ("zero", "constant")])
def test_gaussian_blur_matches_scipy_gaussian_filter(sigmas, shape, boundary, mode):
    image = np.random.default_rng(1).random(shape)
    psf = gaussian_psf(_scipy_kernel_shape(sigmas), sigmas)
    blur = Blur(psf, spatial_dims=len(shape), boundary=boundary)
    ours = blur.A(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(ours, gaussian_filter(image, sigmas, mode=mode), atol=1e-6)


def test_blur_keeps_batch_and_channels_separate():
    blur = Blur(gaussian_psf((5, 5), 1.0))
    x = torch.zeros(2, 3, 16, 16)
    x[1, 2, 8, 8] = 1.0
    y = blur.A(x)
    assert float(y[1, 2].sum()) == pytest.approx(1.0)
    assert float(y[0].abs().sum() + y[1, :2].abs().sum()) == 0.0


def test_circular_blur_with_psf_larger_than_image_raises():
    with pytest.raises(InvalidInputError, match="larger than the image"):
        Blur(gaussian_psf((21, 21), 3.0)).A(torch.rand(1, 1, 16, 16))


def test_poisson_gaussian_noise_is_seeded():
    blur = Blur(gaussian_psf((7, 7), 1.5), noise_model=PoissonGaussianNoise(gain=100, sigma=0.01))
    x = torch.rand(1, 1, 24, 24)
    first = blur(x, torch.Generator().manual_seed(0))
    assert torch.equal(first, blur(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, blur(x, torch.Generator().manual_seed(1)))
    assert 0 < float((first - blur.A(x)).std()) < 0.2
