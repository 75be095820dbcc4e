"""Stack-aware 2D priors (issue 28, coupling along z): each slice's noisy latent is shown
with its neighbours' below and above. The maps, the widened network, the training data and
how the prior is told a stack is contiguous (a tiny training run is in test_train.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from test_positions import TINY_UNET as TINY_2D_UNET
from test_positions import _awake

from medldm.errors import InvalidInputError
from medldm.models.config import UNetConfig, build_unet
from medldm.models.positions import PositionConditionedUNet, stack_neighbours
from medldm.train.data import ImageDataset, extent_neighbours
from medldm.train.diffusion import neighbour_input, split_positions
from medldm.train.loop import widen_input_channels

TINY_UNET = replace(TINY_2D_UNET, slice_position=True)


def _stack_unet(seed: int = 0) -> PositionConditionedUNet:
    torch.manual_seed(seed)
    return _awake(build_unet(replace(TINY_UNET, neighbour_slices=True), 4))


def test_the_ends_of_a_stack_see_themselves_never_the_other_end():
    z = torch.arange(4.0).reshape(4, 1, 1, 1) + 1
    pairs = stack_neighbours(z, 4)[:, :, 0, 0].tolist()
    assert pairs == [[1, 2], [1, 3], [2, 4], [3, 4]]  # no wrap-around: 1 never sees 4
    alone = stack_neighbours(z, None)
    torch.testing.assert_close(alone, torch.cat([z, z], dim=1))
    with pytest.raises(ValueError, match="stacks of 3"):
        stack_neighbours(z, 3)


def test_a_stack_aware_unet_uses_its_neighbours_and_starts_silent_when_widened():
    unet = _stack_unet()
    assert unet.conv_in.conv.in_channels == 4 + 1 + 8  # latent, slice position, two slices
    z, t = torch.randn(3, 4, 8, 8), torch.tensor([10, 500, 900])
    with torch.no_grad():
        alone = unet(z, t, slice_position=0.5)
        stacked = unet(z, t, slice_position=0.5, neighbours=stack_neighbours(z, 3))
        assert not torch.allclose(alone, stacked, atol=1e-4)
        torch.testing.assert_close(
            alone, unet(z, t, slice_position=0.5, neighbours=torch.cat([z, z], dim=1))
        )
    torch.manual_seed(1)
    source = _awake(build_unet(TINY_UNET, 4))  # slice-conditioned, no neighbours
    widened = _stack_unet(2)
    widened.load_state_dict(widen_input_channels(source.state_dict(), widened.state_dict()))
    with torch.no_grad():  # the new channels start at zero; the slice position keeps its own
        expected = source(z, t, slice_position=0.2)
        got = widened(z, t, slice_position=0.2, neighbours=stack_neighbours(z, 3))
        torch.testing.assert_close(got, expected)


def test_neighbours_need_a_slice_conditioned_network():
    with pytest.raises(InvalidInputError, match="neighbour_slices needs slice_position"):
        UNetConfig(neighbour_slices=True)


def test_extent_slices_find_their_neighbours_within_their_own_head_only():
    pairs = extent_neighbours(["a", "a", "b", "b", "b"], [0.0, 1.0, 0.0, 0.5, 1.0])
    assert pairs.tolist() == [[0, 1], [0, 1], [2, 3], [2, 4], [3, 4]]
    with pytest.raises(InvalidInputError, match="not ordered"):
        extent_neighbours(["a", "a"], [1.0, 0.0])


def test_a_training_item_moves_its_neighbours_with_it():
    ramp = np.arange(32 * 32, dtype=np.float32).reshape(32, 32) / (32 * 32)
    images = np.stack([ramp, ramp * 0.5, ramp * 0.25])
    dataset = ImageDataset(
        images,
        augment=True,
        flip_axis=1,
        slice_positions=[0.0, 0.5, 1.0],
        neighbours=extent_neighbours(["a"] * 3, [0.0, 0.5, 1.0]),
    )
    for seed in range(4):  # flips and affines move all three images alike
        item = dataset.get(1, np.random.default_rng(seed))
        assert item.shape == (4, 32, 32)
        np.testing.assert_allclose(item[1], item[0] * 2.0, atol=1e-5)  # below: ramp
        np.testing.assert_allclose(item[2], item[0] * 0.5, atol=1e-5)  # above: ramp / 4
        np.testing.assert_array_equal(item[3], np.full((32, 32), 0.5, np.float32))
    image, extra = split_positions(torch.from_numpy(item[None]), 4, True, True)
    assert image.shape == (1, 1, 32, 32) and extra["neighbour_images"].shape == (1, 2, 32, 32)
    assert extra["slice_position"].tolist() == [0.5]
    with pytest.raises(InvalidInputError, match="one \\(below, above\\) index pair"):
        ImageDataset(images, neighbours=np.zeros((2, 2), int))


def test_a_dropped_neighbour_is_the_slice_itself():
    noisy, z_t = torch.randn(2, 2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    keep = torch.tensor([[True, False], [False, True]])
    shown = neighbour_input(noisy, z_t, keep).reshape(2, 2, 4, 3, 3)
    torch.testing.assert_close(shown[0, 1], z_t[0])
    torch.testing.assert_close(shown[1, 0], z_t[1])
    torch.testing.assert_close(shown[0, 0], noisy[0, 0])
    torch.testing.assert_close(neighbour_input(noisy, z_t), noisy.flatten(1, 2))


def test_the_prior_shows_neighbours_only_for_a_contiguous_stack(monkeypatch):
    from medldm.models.testing import tiny_prior

    prior = tiny_prior()
    prior.unet = _stack_unet()
    prior.slice_conditioned = prior.stack_aware = True
    seen = []
    forward = prior.unet.forward

    def spy(x, timesteps, **kwargs):
        seen.append(kwargs["neighbours"])
        return forward(x, timesteps, **kwargs)

    monkeypatch.setattr(prior.unet, "forward", spy)
    z = torch.randn(6, 4, 8, 8)  # two copies of three slices, slice fastest
    with prior.at_slice_positions([0.0, 0.5, 1.0], adjacent=True):
        prior.predict_eps(z, 100)
    with prior.at_slice_positions([0.0, 0.5, 1.0]):  # three separate slices
        prior.predict_eps(z, 100)
    prior.predict_eps(z, 100)
    torch.testing.assert_close(seen[0], stack_neighbours(z, 3))
    torch.testing.assert_close(seen[1], torch.cat([z, z], dim=1))
    torch.testing.assert_close(seen[2], torch.cat([z, z], dim=1))
    assert not prior._adjacent
