"""Every forward operator: <A x, y> = <x, A^H y> to float precision, and its shapes."""

from __future__ import annotations

import pytest
import torch

from medldm.physics import (
    Blur,
    BoxMask,
    BrushStrokeMask,
    EquispacedLineMask,
    Inpainting,
    MultiCoilMRI,
    ParallelBeamCT,
    RandomLineMask,
    RandomPixelMask,
    SingleCoilMRI,
    VariableDensityMask2D,
    birdcage_sensitivities,
    gaussian_psf,
    limited_angle,
    sparse_view_angles,
)


def _seed(value: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(value)


# name -> (operator factory, x shape, expected y shape, x is complex)
OPERATORS = {
    "inpainting_box_2d": (
        lambda: Inpainting(BoxMask(0.4)((20, 24))),
        (2, 1, 20, 24),
        (2, 1, 20, 24),
        False,
    ),
    "inpainting_pixels_3d": (
        lambda: Inpainting(RandomPixelMask(0.3)((6, 10, 12), _seed()), spatial_dims=3),
        (2, 1, 6, 10, 12),
        (2, 1, 6, 10, 12),
        False,
    ),
    "inpainting_strokes_3d": (
        lambda: Inpainting(BrushStrokeMask(3)((6, 16, 16), _seed()), spatial_dims=3),
        (1, 2, 6, 16, 16),
        (1, 2, 6, 16, 16),
        False,
    ),
    "single_coil_mri_2d": (
        lambda: SingleCoilMRI(RandomLineMask(4)((24, 32), _seed())),
        (2, 1, 24, 32),
        (2, 1, 24, 32),
        True,
    ),
    "single_coil_mri_3d": (
        lambda: SingleCoilMRI(VariableDensityMask2D(4)((8, 16, 16), _seed()), spatial_dims=3),
        (1, 1, 8, 16, 16),
        (1, 1, 8, 16, 16),
        True,
    ),
    "single_coil_mri_multislice": (
        lambda: SingleCoilMRI(
            RandomLineMask(4)((16, 16), _seed()).expand(6, 16, 16), spatial_dims=3, kspace_dims=2
        ),
        (2, 1, 6, 16, 16),
        (2, 1, 6, 16, 16),
        True,
    ),
    "multi_coil_mri_multislice": (
        lambda: MultiCoilMRI(
            EquispacedLineMask(4)((16, 16), _seed()).expand(6, 16, 16),
            birdcage_sensitivities(4, (6, 16, 16)),
            spatial_dims=3,
            kspace_dims=2,
        ),
        (1, 1, 6, 16, 16),
        (1, 4, 6, 16, 16),
        True,
    ),
    "multi_coil_mri_2d": (
        lambda: MultiCoilMRI(
            EquispacedLineMask(4)((24, 32), _seed()), birdcage_sensitivities(4, (24, 32))
        ),
        (2, 1, 24, 32),
        (2, 4, 24, 32),
        True,
    ),
    "ct_sparse_view_2d": (
        lambda: ParallelBeamCT(24, sparse_view_angles(8)),
        (2, 1, 24, 24),
        (2, 1, 24, 8),
        False,
    ),
    "ct_limited_angle_2d": (
        lambda: ParallelBeamCT((20, 24), limited_angle(90, 15), circle=False),
        (1, 1, 20, 24),
        (1, 1, 34, 15),
        False,
    ),
    "ct_shifted_centre_2d": (
        # measured data: rotation axis 3.4 bins left of the detector's middle bin
        lambda: ParallelBeamCT(24, sparse_view_angles(9), n_detectors=30, centre_offset=-3.4),
        (2, 1, 24, 24),
        (2, 1, 30, 9),
        False,
    ),
    "ct_shifted_centre_slicewise_3d": (
        lambda: ParallelBeamCT(
            16, limited_angle(120, 7), n_detectors=20, spatial_dims=3, centre_offset=2.75
        ),
        (1, 1, 3, 16, 16),
        (1, 1, 3, 20, 7),
        False,
    ),
    "ct_sparse_view_slicewise_3d": (
        lambda: ParallelBeamCT(16, sparse_view_angles(6), spatial_dims=3),
        (1, 1, 4, 16, 16),
        (1, 1, 4, 16, 6),
        False,
    ),
    "ct_limited_angle_slicewise_3d": (
        lambda: ParallelBeamCT(16, limited_angle(60, 10), spatial_dims=3),
        (2, 1, 3, 16, 16),
        (2, 1, 3, 16, 10),
        False,
    ),
    "blur_circular_2d": (
        lambda: Blur(gaussian_psf((7, 7), 1.5)),
        (2, 1, 20, 24),
        (2, 1, 20, 24),
        False,
    ),
    "blur_zero_boundary_2d": (
        lambda: Blur(gaussian_psf((5, 9), (1.0, 2.0)), boundary="zero"),
        (1, 1, 20, 24),
        (1, 1, 20, 24),
        False,
    ),
    "blur_circular_3d": (
        lambda: Blur(gaussian_psf((5, 7, 7), (1.0, 1.5, 1.5)), spatial_dims=3),
        (1, 1, 8, 12, 12),
        (1, 1, 8, 12, 12),
        False,
    ),
    "blur_zero_boundary_3d": (
        lambda: Blur(gaussian_psf((3, 5, 5), 1.0), spatial_dims=3, boundary="zero"),
        (1, 1, 6, 10, 10),
        (1, 1, 6, 10, 10),
        False,
    ),
}


def _random(shape, dtype, generator):
    real_dtype = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    values = torch.randn(shape, generator=generator, dtype=real_dtype)
    if dtype.is_complex:
        values = torch.complex(values, torch.randn(shape, generator=generator, dtype=real_dtype))
    return values


@pytest.mark.parametrize(
    "precision, tolerance", [("float64", 1e-10), ("float32", 1e-4)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_operator_adjoint_matches_inner_products_and_shapes(name, precision, tolerance):
    make_operator, x_shape, y_shape, is_complex = OPERATORS[name]
    physics = make_operator()
    double = precision == "float64"
    x_dtype = {
        (False, False): torch.float32,
        (False, True): torch.float64,
        (True, False): torch.complex64,
        (True, True): torch.complex128,
    }[(is_complex, double)]
    generator = _seed(1)
    x = _random(x_shape, x_dtype, generator)
    y_clean = physics.A(x)
    assert tuple(y_clean.shape) == y_shape
    y = _random(y_shape, y_clean.dtype, generator)
    # Off-support entries of y are outside the range of A; the identity holds for any y.
    assert tuple(physics.A_adjoint(y).shape) == x_shape
    assert physics.adjointness_error(x, y) < tolerance
