"""Untrained, tiny priors for tests and runnable examples (random weights, seconds to build).

They exercise every code path of the LDM solvers and the app without a trained model;
their reconstructions mean nothing. Deterministic: the same call gives the same weights.

Example
-------
>>> prior = tiny_prior()
>>> prior.spatial_dims, prior.downsampling_factor, prior.latent_channels
(2, 4, 4)
>>> tiny_prior(spatial_dims=3).image_size
(16, 16, 16)
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from medldm.models.checkpoint import LoadedPrior
from medldm.models.config import (
    AutoencoderConfig,
    LDMConfig,
    UNetConfig,
    build_autoencoder,
    build_unet,
)


@functools.lru_cache(maxsize=6)
def _networks(
    spatial_dims: int, with_unet: bool, slice_position: bool = False, neighbours: bool = False
) -> tuple[LDMConfig, Any, Any]:
    config = LDMConfig(
        AutoencoderConfig(spatial_dims=spatial_dims, channels=(8, 8, 8), norm_num_groups=4),
        UNetConfig(
            spatial_dims=spatial_dims,
            channels=(8, 8, 8),
            num_head_channels=8,
            norm_num_groups=4,
            slice_position=slice_position,
            neighbour_slices=neighbours,
        ),
        image_size=(16,) * spatial_dims,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    autoencoder = build_autoencoder(config.autoencoder)
    unet = build_unet(config.unet, config.autoencoder.latent_channels) if with_unet else None
    torch.random.set_rng_state(state)
    return config, autoencoder, unet


def tiny_prior(
    spatial_dims: int = 2,
    *,
    with_unet: bool = True,
    device: str = "cpu",
    slice_position: bool = False,
    neighbour_slices: bool = False,
) -> Any:
    """A :class:`~medldm.models.prior.Prior` with tiny random networks (f=4, 4 latent
    channels, 16-pixel training size); ``slice_position``: its UNet is told where each
    slice lies in the head (:meth:`~medldm.models.prior.Prior.at_slice_positions`);
    ``neighbour_slices`` (with it): and sees the slices below and above."""
    from medldm.models.prior import Prior

    config, autoencoder, unet = _networks(
        spatial_dims, with_unet, slice_position or neighbour_slices, neighbour_slices
    )
    loaded = LoadedPrior(
        config=config,
        autoencoder=autoencoder,
        unet=unet,
        meta={"scale_factor": 1.0, "description": "untrained test prior"},
        path=Path(f"tiny_prior_{spatial_dims}d"),
    )
    return Prior(loaded, device=device)


def save_tiny_prior(folder: str | Path, spatial_dims: int = 2) -> Path:
    """Write :func:`tiny_prior` as a checkpoint folder (what ``preset.prior=<folder>`` and
    ``load_prior(<folder>)`` read); returns the folder.

    >>> import tempfile
    >>> from medldm.models.prior import load_prior
    >>> load_prior(save_tiny_prior(tempfile.mkdtemp() + "/tiny")).latent_channels
    4
    """
    from medldm.models.checkpoint import save_prior_checkpoint

    prior = tiny_prior(spatial_dims)
    return save_prior_checkpoint(
        folder,
        config=prior.config,
        autoencoder=prior.autoencoder,
        unet=prior.unet,
        scale_factor=1.0,
    )
