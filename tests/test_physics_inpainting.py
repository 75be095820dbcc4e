"""Inpainting: mask generators (box, random pixels, brush strokes) and the operator."""

from __future__ import annotations

import pytest
import torch

from medldm.errors import InvalidInputError
from medldm.physics import (
    BoxMask,
    BrushStrokeMask,
    GaussianNoise,
    Inpainting,
    RandomPixelMask,
)


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


# --- random pixels --------------------------------------------------------------------
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(32, 48), (8, 16, 20)], ids=["2d", "3d"])
def test_random_pixel_mask_observes_the_exact_fraction(fraction, shape):
    mask = RandomPixelMask(fraction)(shape, _seed(0))
    assert mask.shape == shape and mask.dtype == torch.bool
    assert int(mask.sum()) == round(fraction * mask.numel())


def test_random_pixel_mask_is_reproducible_by_seed():
    make_mask = RandomPixelMask(0.3)
    assert torch.equal(make_mask((16, 16), _seed(4)), make_mask((16, 16), _seed(4)))
    assert not torch.equal(make_mask((16, 16), _seed(4)), make_mask((16, 16), _seed(5)))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5])
def test_random_pixel_mask_with_invalid_fraction_raises(fraction):
    with pytest.raises(InvalidInputError, match="fraction_observed"):
        RandomPixelMask(fraction)


def test_mask_observing_nothing_raises():
    with pytest.raises(InvalidInputError, match="observes nothing"):
        RandomPixelMask(0.001)((8, 8), _seed(0))  # rounds to 0 observed pixels
    with pytest.raises(InvalidInputError, match="observes nothing"):
        BoxMask(1.0)((8, 8))
    with pytest.raises(InvalidInputError, match="observes nothing"):
        Inpainting(torch.zeros(4, 4))


# --- box ------------------------------------------------------------------------------
def test_box_mask_is_centred_with_the_requested_side():
    mask = BoxMask(0.25)((64, 32))
    missing = (~mask).nonzero()
    assert missing.min(0).values.tolist() == [24, 12]
    assert missing.max(0).values.tolist() == [39, 19]
    assert int((~mask).sum()) == 16 * 8


def test_box_mask_at_a_given_centre_and_in_3d():
    mask = BoxMask(size=(2, 4, 6), center=(3, 5, 7))((8, 12, 16))
    missing = (~mask).nonzero()
    assert missing.min(0).values.tolist() == [2, 3, 4]
    assert missing.max(0).values.tolist() == [3, 6, 9]


def test_random_box_lies_inside_the_image_and_follows_the_seed():
    make_mask = BoxMask(size=10, center="random")
    masks = [make_mask((32, 32), _seed(seed)) for seed in range(6)]
    assert all(int((~mask).sum()) == 100 for mask in masks)
    assert torch.equal(masks[0], make_mask((32, 32), _seed(0)))
    assert len({tuple((~mask).nonzero()[0].tolist()) for mask in masks}) > 1


def test_box_mask_needs_exactly_one_size_argument():
    with pytest.raises(InvalidInputError, match="exactly one"):
        BoxMask()
    with pytest.raises(InvalidInputError, match="exactly one"):
        BoxMask(0.5, size=4)


# --- brush strokes --------------------------------------------------------------------
def test_brush_strokes_hide_some_connected_pixels_in_2d():
    mask = BrushStrokeMask(n_strokes=3, width=4)((64, 64), _seed(0))
    missing = (~mask).float().mean()
    assert 0.01 < float(missing) < 0.6
    assert torch.equal(mask, BrushStrokeMask(n_strokes=3, width=4)((64, 64), _seed(0)))


def test_more_strokes_hide_more_pixels():
    few = BrushStrokeMask(n_strokes=1, width=4)((64, 64), _seed(1))
    many = BrushStrokeMask(n_strokes=12, width=4)((64, 64), _seed(1))
    assert int((~many).sum()) > int((~few).sum())


def test_brush_strokes_extruded_through_a_volume_repeat_in_every_slice():
    mask = BrushStrokeMask(n_strokes=3, width=3, volume_mode="extrude")((6, 32, 32), _seed(2))
    assert mask.shape == (6, 32, 32)
    assert all(torch.equal(mask[0], plane) for plane in mask)
    assert bool((~mask).any())


def test_brush_strokes_per_slice_differ_between_slices():
    mask = BrushStrokeMask(n_strokes=3, width=3, volume_mode="per_slice")((4, 32, 32), _seed(3))
    assert not all(torch.equal(mask[0], plane) for plane in mask)


def test_brush_strokes_as_3d_tubes_cross_slices():
    mask = BrushStrokeMask(n_strokes=4, width=4, volume_mode="tubes")((16, 32, 32), _seed(4))
    slices_touched = (~mask).flatten(1).any(dim=1)
    assert int(slices_touched.sum()) >= 2


def test_brush_mask_with_unknown_volume_mode_raises():
    with pytest.raises(InvalidInputError, match="volume_mode"):
        BrushStrokeMask(volume_mode="sideways")


# --- operator -------------------------------------------------------------------------
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_inpainting_zero_fills_missing_pixels_and_pseudo_inverse_is_exact(spatial_dims):
    shape = (24, 24) if spatial_dims == 2 else (6, 12, 12)
    mask = RandomPixelMask(0.4)(shape, _seed(0))
    physics = Inpainting(mask, spatial_dims=spatial_dims)
    x = torch.rand(2, 3, *shape)
    y = physics.A(x)
    assert y.shape == x.shape
    assert bool((y[..., ~mask] == 0).all()) and torch.equal(y[..., mask], x[..., mask])
    assert torch.equal(physics.A_dagger(y), y)
    assert torch.equal(physics.A(physics.A_dagger(y)), y)


def test_inpainting_noise_is_seeded_and_only_on_observed_pixels():
    mask = BoxMask(0.5)((16, 16))
    physics = Inpainting(mask, noise_model=GaussianNoise(0.1))
    x = torch.rand(1, 1, 16, 16)
    first = physics(x, _seed(7))
    assert torch.equal(first, physics(x, _seed(7)))
    assert bool((first[..., ~mask] == 0).all())
    assert float((first - x)[..., mask].std()) == pytest.approx(0.1, rel=0.2)


def test_inpainting_mask_moves_with_the_module_and_is_in_the_state_dict():
    physics = Inpainting(BoxMask(0.5)((8, 8)))
    assert "mask" in physics.state_dict()
    assert physics.to(torch.float64).mask.dtype == torch.float64


def test_inpainting_image_of_wrong_size_raises():
    physics = Inpainting(BoxMask(0.5)((8, 8)))
    with pytest.raises(InvalidInputError, match="expected"):
        physics.A(torch.rand(1, 1, 8, 10))
