"""MRI: fastMRI-style masks, orthonormal centred FFTs, zero-filling, CG-SENSE, coil maps."""

from __future__ import annotations

import math

import pytest
import torch

from medldm.errors import InvalidInputError
from medldm.physics import (
    EquispacedLineMask,
    GaussianNoise,
    MultiCoilMRI,
    RandomLineMask,
    SingleCoilMRI,
    VariableDensityMask2D,
    birdcage_sensitivities,
    estimate_sensitivities,
    fft2c,
    fftnc,
    ifft2c,
    ifftnc,
    rss,
    smooth_phase,
    with_smooth_phase,
)
from medldm.physics.coils import estimation_correlation


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _sampled_lines(mask: torch.Tensor) -> torch.Tensor:
    """Columns sampled in every row (the masks sample whole phase-encode lines)."""
    assert torch.equal(mask, mask[:1].expand_as(mask)), "a line mask must repeat over rows"
    return mask[0]


def _centre_block(n_lines: int, fraction: float) -> slice:
    n_center = round(n_lines * fraction)
    start = (n_lines - n_center + 1) // 2
    return slice(start, start + n_center)


def _phantom(size: int, dtype=torch.float64) -> torch.Tensor:
    """An ellipse with smooth texture and a smooth phase, (1, 1, size, size) complex."""
    axis = torch.arange(size, dtype=dtype) - size / 2
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    inside = (rows / (0.42 * size)) ** 2 + (cols / (0.33 * size)) ** 2 < 1
    magnitude = inside * (1 + 0.3 * torch.sin(cols / 4) * torch.cos(rows / 6))
    return with_smooth_phase(magnitude[None, None].to(dtype), _seed(5), 1.0)


# --- masks ----------------------------------------------------------------------------
@pytest.mark.parametrize("acceleration, fraction", [(4, 0.08), (8, 0.04)])
def test_equispaced_mask_reproduces_fastmri_acceleration_and_centre(acceleration, fraction):
    n_lines = 320  # a fastMRI knee width
    for seed in range(5):
        lines = _sampled_lines(EquispacedLineMask(acceleration)((64, n_lines), _seed(seed)))
        assert lines[_centre_block(n_lines, fraction)].all()
        assert abs(int(lines.sum()) - n_lines / acceleration) <= 2


@pytest.mark.parametrize("acceleration, fraction", [(4, 0.08), (8, 0.04)])
def test_random_mask_reproduces_fastmri_acceleration_on_average(acceleration, fraction):
    n_lines, n_masks = 368, 200
    counts = []
    for seed in range(n_masks):
        lines = _sampled_lines(RandomLineMask(acceleration)((4, n_lines), _seed(seed)))
        assert lines[_centre_block(n_lines, fraction)].all()
        counts.append(int(lines.sum()))
    mean_count = sum(counts) / n_masks
    # Binomial spread of the outer lines: the mean of 200 masks is within ~1 line.
    assert abs(mean_count - n_lines / acceleration) < 2
    assert len(set(counts)) > 1  # the count varies with the seed, as in fastMRI


def test_default_centre_fraction_is_fastmri_pairing():
    assert EquispacedLineMask(4).center_fraction == pytest.approx(0.08)
    assert RandomLineMask(8).center_fraction == pytest.approx(0.04)
    assert EquispacedLineMask(4).n_center_lines(320) == 26


@pytest.mark.parametrize(
    "make_mask",
    [RandomLineMask(4), EquispacedLineMask(8), VariableDensityMask2D(6, center_fraction=0.1)],
    ids=["random", "equispaced", "variable_density"],
)
def test_same_seed_gives_same_mask_and_other_seed_differs(make_mask):
    shape = (8, 48, 64)
    first = make_mask(shape, _seed(11))
    assert torch.equal(first, make_mask(shape, _seed(11)))
    assert not all(torch.equal(first, make_mask(shape, _seed(s))) for s in range(12, 16))


def test_variable_density_mask_has_exact_acceleration_and_calibration_box():
    make_mask = VariableDensityMask2D(acceleration=5, center_fraction=0.125)
    mask = make_mask((10, 64, 48), _seed(0))
    plane = mask[0]
    assert torch.equal(mask, plane.expand_as(mask))  # readout axis fully sampled
    assert int(plane.sum()) == round(64 * 48 / 5)
    assert plane[make_mask.calibration_box((64, 48))].all()
    # Variable density: the centre quarter is sampled more densely than the periphery.
    centre = plane[16:48, 12:36].float().mean()
    assert centre > 2 * plane.float().mean() - centre


@pytest.mark.parametrize("acceleration", [0.5, float("nan")])
def test_line_mask_with_invalid_acceleration_raises(acceleration):
    with pytest.raises(InvalidInputError, match="acceleration"):
        RandomLineMask(acceleration)


def test_mri_operator_with_mask_sampling_nothing_raises():
    with pytest.raises(InvalidInputError, match="observes nothing"):
        SingleCoilMRI(torch.zeros(16, 16, dtype=torch.bool))


# --- Fourier transforms ---------------------------------------------------------------
def test_fft2c_is_orthonormal_and_inverted_by_ifft2c():
    x = torch.randn(3, 2, 17, 24, dtype=torch.complex128, generator=_seed(0))
    k = fft2c(x)
    assert torch.allclose(k.norm(), x.norm())  # Parseval
    assert torch.allclose(ifft2c(k), x, atol=1e-12)
    y = torch.randn(3, 2, 17, 24, dtype=torch.complex128, generator=_seed(1))
    # Unitary: <F x, y> = <x, F^H y>.
    assert torch.allclose((k.conj() * y).sum(), (x.conj() * ifft2c(y)).sum())


def test_fft2c_puts_dc_at_the_centre_index():
    image = torch.ones(1, 1, 9, 8)
    k = fft2c(image)
    assert torch.isclose(k[0, 0, 4, 4].abs(), torch.tensor(math.sqrt(72.0)))
    assert int(k.abs().flatten().argmax()) == 4 * 8 + 4


def test_fftnc_over_three_axes_is_orthonormal():
    x = torch.randn(1, 1, 6, 8, 10, dtype=torch.complex128, generator=_seed(2))
    assert torch.allclose(fftnc(x, 3).norm(), x.norm())
    assert torch.allclose(ifftnc(fftnc(x, 3), 3), x, atol=1e-12)
    assert torch.allclose(fftnc(x[0, 0, 0], 2), fft2c(x[0, 0, 0]))


# --- single coil ----------------------------------------------------------------------
def test_zero_filled_pseudo_inverse_is_exact_on_sampled_lines():
    mask = RandomLineMask(4)((32, 40), _seed(3))
    physics = SingleCoilMRI(mask)
    x = _phantom(40)[..., 4:36, :]
    y = physics.A(x)
    assert y.is_complex() and bool((y[..., ~mask] == 0).all())
    x_zero_filled = physics.A_dagger(y)
    # The estimate reproduces the data exactly on the sampled lines ...
    assert torch.allclose(physics.A(x_zero_filled), y, atol=1e-10)
    # ... and is the minimum-norm solution: nothing added off the mask.
    assert torch.allclose(fft2c(x_zero_filled)[..., ~mask], torch.zeros(1, dtype=y.dtype))


def test_single_coil_accepts_real_images_and_3d_volumes():
    mask = VariableDensityMask2D(3)((6, 12, 12), _seed(0))
    physics = SingleCoilMRI(mask, spatial_dims=3)
    x = torch.rand(2, 1, 6, 12, 12)
    y = physics.A(x)
    assert y.dtype == torch.complex64 and y.shape == (2, 1, 6, 12, 12)
    assert torch.allclose(physics.A(physics.A_dagger(y)), y, atol=1e-5)


def test_multislice_volume_is_each_slice_measured_alone():
    """kspace_dims=2: a stack of 2D acquisitions (multislice), not one 3D k-space: each
    slice's data is the 2D operator's data of that slice alone."""
    from medldm.physics.factory import MRIPhysicsFactory

    factory = MRIPhysicsFactory(4, 0.08, n_coils=1, multislice=True)
    physics = factory.build((5, 16, 16), _seed(0))
    assert physics.kspace_dims == 2 and "multislice" in factory.name
    assert torch.equal(physics.mask[0, 0], physics.mask[0, 0, :1].expand(5, 16, 16))
    volume = torch.rand(1, 1, 5, 16, 16)
    per_slice = SingleCoilMRI(physics.mask[0, 0, 0]).A(volume[0].movedim(1, 0))
    assert torch.allclose(physics.A(volume), per_slice.movedim(0, 1)[None], atol=1e-6)
    assert not torch.allclose(
        SingleCoilMRI(physics.mask[0, 0], spatial_dims=3).A(volume), physics.A(volume), atol=1e-3
    )  # 3D k-space differs
    with pytest.raises(InvalidInputError, match="kspace_dims"):
        SingleCoilMRI(physics.mask[0, 0], spatial_dims=3, kspace_dims=1)


def test_complex_noise_is_seeded_and_leaves_unsampled_points_zero():
    mask = EquispacedLineMask(4)((16, 16), _seed(0))
    physics = SingleCoilMRI(mask, noise_model=GaussianNoise(0.05))
    x = _phantom(16)
    first, second = physics(x, _seed(9)), physics(x, _seed(9))
    assert torch.equal(first, second)
    assert bool((first[..., ~mask] == 0).all())
    assert physics.residual_over_noise(x, first) == pytest.approx(
        math.sqrt(mask.float().mean().item()), rel=0.25
    )


def test_image_of_wrong_size_raises():
    physics = SingleCoilMRI(torch.ones(8, 8))
    with pytest.raises(InvalidInputError, match="expected"):
        physics.A(torch.rand(1, 1, 8, 9))


# --- multi coil -----------------------------------------------------------------------
def test_birdcage_maps_are_normalised_and_distinct():
    maps = birdcage_sensitivities(8, (32, 32))
    assert torch.allclose((maps.abs() ** 2).sum(0), torch.ones(32, 32), atol=1e-5)
    # Each coil is brightest at a different place on the rim (coils around the object).
    brightest = {int(coil.abs().flatten().argmax()) for coil in maps}
    assert len(brightest) == 8
    maps_3d = birdcage_sensitivities(16, (8, 16, 16))
    assert maps_3d.shape == (16, 8, 16, 16)
    assert torch.allclose((maps_3d.abs() ** 2).sum(0), torch.ones(8, 16, 16), atol=1e-5)


def test_cg_sense_recovers_a_fully_sampled_image():
    x = _phantom(32)
    physics = MultiCoilMRI(torch.ones(32, 32), birdcage_sensitivities(6, (32, 32)))
    y = physics.A(x)
    assert y.shape == (1, 6, 32, 32)
    assert torch.allclose(physics.A_dagger(y), x, atol=1e-6)
    assert torch.allclose(rss(ifft2c(y)), x.abs()[:, 0], atol=1e-6)


def test_cg_sense_fits_undersampled_data_better_than_zero_filling():
    x = _phantom(48)
    mask = EquispacedLineMask(2, center_fraction=0.16)((48, 48), _seed(0))
    physics = MultiCoilMRI(mask, birdcage_sensitivities(8, (48, 48)))
    y = physics.A(x)
    x_sense = physics.A_dagger(y, n_iter=100)
    error_sense = float((x_sense - x).norm() / x.norm())
    error_adjoint = float((physics.A_adjoint(y) - x).norm() / x.norm())
    assert physics.residual(x_sense, y) < 1e-3
    assert error_sense < 0.1 < error_adjoint


def test_multicoil_takes_one_image_channel():
    physics = MultiCoilMRI(torch.ones(8, 8), birdcage_sensitivities(2, (8, 8)))
    with pytest.raises(InvalidInputError, match="one image channel"):
        physics.A(torch.rand(1, 2, 8, 8))


@pytest.mark.parametrize("method", ["espirit", "rss_lowres"])
@pytest.mark.parametrize("calibration_region", [24, (64, 12)], ids=["acs_box", "acs_lines"])
def test_estimated_coil_maps_correlate_with_true_maps(method, calibration_region):
    size = 64
    true_maps = birdcage_sensitivities(8, (size, size), dtype=torch.complex128)
    image = _phantom(size)[0, 0]
    kspace = fft2c(true_maps * image)
    support = image.abs() > 0
    options = {"kernel_size": 5} if method == "espirit" else {}
    maps = estimate_sensitivities(kspace, calibration_region, method, **options)
    assert maps.shape == true_maps.shape
    assert estimation_correlation(maps, true_maps, support) > 0.9


def test_espirit_with_too_small_calibration_region_raises_with_fix():
    kspace = fft2c(birdcage_sensitivities(8, (32, 32)))
    with pytest.raises(InvalidInputError, match="rss_lowres"):
        estimate_sensitivities(kspace, (32, 6), "espirit")
    with pytest.warns(UserWarning, match="unreliable"):
        estimate_sensitivities(kspace, (32, 8), "espirit")


def test_espirit_accepts_fewer_calibration_rows_than_unknowns_as_bart_does():
    # 32 coils, 16x16 region, kernel 6: 121 kernel positions for 32 x 36 = 1152 unknowns
    size = 64
    true_maps = birdcage_sensitivities(32, (size, size), dtype=torch.complex128)
    image = _phantom(size)[0, 0]
    maps = estimate_sensitivities(fft2c(true_maps * image), 16, "espirit", kernel_size=6)
    assert estimation_correlation(maps, true_maps, image.abs() > 0) > 0.99


# --- phase ----------------------------------------------------------------------------
def test_smooth_phase_is_seeded_bounded_and_smooth():
    phase = smooth_phase((32, 40), _seed(0), max_radians=2.0)
    assert torch.equal(phase, smooth_phase((32, 40), _seed(0), max_radians=2.0))
    assert float(phase.abs().max()) == pytest.approx(2.0, rel=1e-5)
    # Smooth: neighbouring pixels differ by a small fraction of the range.
    assert float(phase.diff(dim=-1).abs().max()) < 0.5
    assert smooth_phase((4, 8, 8), _seed(1)).shape == (4, 8, 8)


@pytest.mark.parametrize("method", ["espirit", "rss_lowres"])
def test_estimated_coil_maps_of_a_volume_correlate_with_true_maps(method):
    shape = (14, 20, 20)
    true_maps = birdcage_sensitivities(8, shape, coils_per_ring=4, dtype=torch.complex128)
    axes = [torch.arange(n, dtype=torch.float64) - n / 2 for n in shape]
    depth, rows, cols = torch.meshgrid(*axes, indexing="ij")
    volume = ((depth / 6) ** 2 + (rows / 8) ** 2 + (cols / 7) ** 2 < 1).double()
    kspace = fftnc(true_maps * volume, 3)
    maps = estimate_sensitivities(kspace, (12, 12, 12), method, kernel_size=4)
    assert maps.shape == true_maps.shape
    assert estimation_correlation(maps, true_maps, volume > 0) > 0.9


def test_lowres_phase_of_a_multislice_volume_is_each_slices_own():
    """The k-space window of the phase estimate runs over the 2D k-space axes only: a
    multislice volume's slice axis is image space, so the end slices of a long stack keep
    their own phase (a window along it would weigh them down to nothing)."""
    from medldm.physics.factory import MRIPhysicsFactory
    from medldm.physics.phase import lowres_phase

    physics = MRIPhysicsFactory(4, 0.08, multislice=True).build((40, 16, 16), _seed(0))
    angles = torch.linspace(-3.0, 3.0, 40)
    volume = torch.exp(1j * angles)[:, None, None] * torch.ones(40, 16, 16)
    phase = lowres_phase(physics.A(volume[None, None]), physics)
    assert torch.allclose(torch.angle(phase[0, 0, :, 8, 8]), angles, atol=1e-3)
