"""Position channels for priors trained on crops (PaDIS): the maps, the data and the widened
UNet (a tiny position-conditioned training run is in test_train.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from medldm.errors import InvalidInputError
from medldm.models.config import UNetConfig, build_unet
from medldm.models.positions import PositionConditionedUNet, image_coordinates
from medldm.train.data import ImageDataset
from medldm.train.loop import widen_input_channels

TINY_UNET = UNetConfig(
    spatial_dims=2,
    channels=(16, 16, 32),
    attention_levels=(False, False, True),
    num_head_channels=16,
    norm_num_groups=8,
)


def _ramp(size: int = 32) -> np.ndarray:
    """An image whose every pixel value says where it is."""
    return np.arange(size * size, dtype=np.float32).reshape(size, size) / (size * size)


def test_a_crop_carries_its_place_in_the_whole_image():
    dataset = ImageDataset([_ramp()], patch=16, augment=False, positions=True)
    for seed in range(5):
        item = dataset.get(0, np.random.default_rng(seed))
        assert item.shape == (3, 16, 16)
        start = divmod(round(float(item[0, 0, 0]) * 32 * 32), 32)
        expected = image_coordinates((16, 16), start, (32, 32)).numpy()
        np.testing.assert_allclose(item[1:], expected, atol=1e-6)


def test_a_flipped_crop_reads_as_a_crop_of_the_other_side():
    class FlipOnly:  # first draw flips, second skips the affine transform
        def __init__(self):
            self.draws = iter([0.1, 0.9])

        def random(self):
            return next(self.draws)

    dataset = ImageDataset([_ramp()], augment=True, flip_axis=1, positions=True)
    whole = dataset.get(0, np.random.default_rng(0))  # not flipped or flipped: maps increase
    item = dataset._augment(
        np.concatenate([_ramp()[None], image_coordinates((32, 32)).numpy()]), FlipOnly()
    )
    np.testing.assert_allclose(item[0], _ramp()[:, ::-1])
    np.testing.assert_allclose(item[2], image_coordinates((32, 32)).numpy()[1], atol=1e-6)
    assert whole.shape == (3, 32, 32)


def test_the_widened_unet_computes_what_the_unconditioned_one_did():
    plain = build_unet(TINY_UNET, 4).eval()
    conditioned = build_unet(replace(TINY_UNET, position_channels=2), 4).eval()
    assert isinstance(conditioned, PositionConditionedUNet)
    weights = widen_input_channels(plain.state_dict(), conditioned.state_dict())
    conditioned.load_state_dict(weights)
    z = torch.randn(2, 4, 8, 8)
    t = torch.tensor([10, 500])
    positions = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(conditioned(z, timesteps=t, positions=positions), plain(z, t))
        torch.testing.assert_close(conditioned(z, timesteps=t), plain(z, t))


def test_position_channels_only_for_2d_networks():
    with pytest.raises(InvalidInputError, match="position_channels"):
        UNetConfig(spatial_dims=3, position_channels=2)


# --- slice position: where a whole slice lies in the head ------------------------------
def _awake(unet: torch.nn.Module) -> torch.nn.Module:
    """MONAI zero-initialises the output convolutions: random weights there instead, so
    the output depends on the input."""
    with torch.no_grad():
        for parameter in unet.parameters():
            if not parameter.abs().sum():
                parameter.normal_(0.0, 0.1)
    return unet.eval()


def _slice_unet(seed: int = 0) -> PositionConditionedUNet:
    torch.manual_seed(seed)
    unet = build_unet(replace(TINY_UNET, slice_position=True), 4)
    assert isinstance(unet, PositionConditionedUNet) and not unet.image_positions
    return _awake(unet)


def test_the_slice_position_steers_the_network_and_starts_silent_when_widened():
    conditioned = _slice_unet()
    assert conditioned.conv_in.conv.in_channels == 5  # latent + one slice-position map
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        low = conditioned(z, t, slice_position=torch.tensor([0.0, 0.0]))
        high = conditioned(z, t, slice_position=1.0)
        middle = conditioned(z, t)  # no position: the middle of the head
        assert not torch.allclose(low, high, atol=1e-4)
        torch.testing.assert_close(middle, conditioned(z, t, slice_position=0.5))
    # started from an unconditioned network, step 0 ignores the position
    source = _awake(build_unet(TINY_UNET, 4))
    widened = _slice_unet(1)
    widened.load_state_dict(widen_input_channels(source.state_dict(), widened.state_dict()))
    with torch.no_grad():
        torch.testing.assert_close(widened(z, t, slice_position=0.0), source(z, t))
        torch.testing.assert_close(widened(z, t, slice_position=1.0), source(z, t))


def test_a_slice_carries_its_position_as_a_constant_channel_after_augmentation():
    images = np.stack([_ramp(), _ramp()])
    dataset = ImageDataset(images, augment=True, flip_axis=1, slice_positions=[0.1, 0.9])
    for seed in range(4):  # the affine's zero padding must not reach the position channel
        item = dataset.get(1, np.random.default_rng(seed))
        assert item.shape == (2, 32, 32)
        np.testing.assert_array_equal(item[1], np.full((32, 32), 0.9, np.float32))
    with pytest.raises(InvalidInputError, match="slice positions for 2 images"):
        ImageDataset(images, slice_positions=[0.5])


def test_the_prior_hands_each_slice_its_position_and_forgets_it_afterwards(monkeypatch):
    from medldm.models.testing import tiny_prior

    prior = tiny_prior()
    prior.unet = _slice_unet()
    prior.slice_conditioned = True
    seen = []
    forward = prior.unet.forward

    def spy(x, timesteps, **kwargs):
        seen.append(kwargs.get("slice_position"))
        return forward(x, timesteps, **kwargs)

    monkeypatch.setattr(prior.unet, "forward", spy)
    z = torch.randn(6, 4, 8, 8)  # two copies of three slices, slice fastest
    with prior.at_slice_positions([0.0, 0.5, 1.0]):
        prior.predict_eps(z, 100)
    prior.predict_eps(z, 100)
    assert seen[0].tolist() == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0] and seen[1] is None
    with prior.at_slice_positions([0.0, 1.0, 0.5, 0.2]), pytest.raises(InvalidInputError):
        prior.predict_eps(z, 100)
