"""Model configurations: enough to rebuild the networks without the training config.

Example
-------
>>> cfg = AutoencoderConfig(spatial_dims=2, channels=(16, 32, 32), latent_channels=4)
>>> cfg.downsampling_factor
4
>>> ae = build_autoencoder(cfg)
>>> sum(p.numel() for p in ae.parameters()) > 0
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from medldm.errors import InvalidInputError


@dataclass
class AutoencoderConfig:
    """MONAI ``AutoencoderKL`` arguments. ``len(channels) - 1`` downsamplings by 2:
    three levels give a downsampling factor of 4, four levels a factor of 8.

    ``shortcut="block_pca"`` builds a :class:`~medldm.models.residual_autoencoder.
    ResidualAutoencoderKL` (the network learns a residual over a linear block-PCA codec);
    ``"none"`` the plain MONAI ``AutoencoderKL``."""

    spatial_dims: int = 2
    channels: tuple[int, ...] = (32, 64, 128)
    latent_channels: int = 4
    num_res_blocks: int = 1
    attention_levels: tuple[bool, ...] = (False, False, False)
    norm_num_groups: int = 16
    with_nonlocal_attn: bool = False
    shortcut: str = "none"

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


@dataclass
class UNetConfig:
    """MONAI ``DiffusionModelUNet`` arguments (in/out channels = latent channels).

    ``position_channels``: 0, or 2 for a 2D network that also sees each latent pixel's
    place in the whole image (:class:`~medldm.models.positions.PositionConditionedUNet`,
    for priors trained on crops). ``slice_position``: a 2D network that also sees the
    slice's position in the head's foreground extent (one more input channel).
    ``neighbour_slices``: a slice-conditioned 2D network that also sees the noisy latents of
    the slices below and above (:func:`~medldm.models.positions.stack_neighbours`)."""

    spatial_dims: int = 2
    channels: tuple[int, ...] = (64, 128, 128)
    attention_levels: tuple[bool, ...] = (False, True, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    norm_num_groups: int = 32
    position_channels: int = 0
    slice_position: bool = False
    neighbour_slices: bool = False

    def __post_init__(self) -> None:
        if self.neighbour_slices and not self.slice_position:
            raise InvalidInputError(
                "neighbour_slices needs slice_position (a stack is told to the network "
                "through its slice positions)",
                fix="set unet.slice_position: true",
            )
        if self.slice_position and self.spatial_dims != 2:
            raise InvalidInputError(
                f"slice_position is for a 2D network; got spatial_dims={self.spatial_dims}"
            )
        if not self.position_channels:
            return
        from medldm.models.positions import POSITION_CHANNELS

        if self.position_channels != POSITION_CHANNELS or self.spatial_dims != 2:
            raise InvalidInputError(
                f"position_channels must be 0, or {POSITION_CHANNELS} for a 2D network; got "
                f"{self.position_channels} with spatial_dims={self.spatial_dims}"
            )


@dataclass
class SchedulerConfig:
    """DDPM training schedule (MONAI ``DDPMScheduler``); DDIM sampling uses the same betas."""

    num_train_timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction_type: str = "epsilon"


@dataclass
class LDMConfig:
    """Everything that defines a latent diffusion prior's networks."""

    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    image_size: tuple[int, ...] = (128, 128)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LDMConfig:
        try:
            return cls(
                autoencoder=AutoencoderConfig(**_tuples(data["autoencoder"])),
                unet=UNetConfig(**_tuples(data.get("unet", {}))),
                scheduler=SchedulerConfig(**data.get("scheduler", {})),
                image_size=tuple(data.get("image_size", (128, 128))),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"model config is incomplete or has unknown fields ({exc})",
                fix="use a config written by medldm (config.json of a checkpoint)",
            ) from exc


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tuples(data: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


SHORTCUTS = ("none", "block_pca")


def build_autoencoder(config: AutoencoderConfig):  # -> monai AutoencoderKL
    """A MONAI ``AutoencoderKL`` for single-channel images (with the block-PCA shortcut
    when ``config.shortcut == "block_pca"``; its basis is fitted by the trainer)."""
    from monai.networks.nets import AutoencoderKL

    if config.shortcut not in SHORTCUTS:
        raise InvalidInputError(
            f"unknown autoencoder shortcut {config.shortcut!r}",
            fix=f"use one of {', '.join(SHORTCUTS)}",
        )
    if config.shortcut == "block_pca":
        from medldm.models.residual_autoencoder import ResidualAutoencoderKL

        return ResidualAutoencoderKL(
            spatial_dims=config.spatial_dims,
            channels=tuple(config.channels),
            latent_channels=config.latent_channels,
            num_res_blocks=config.num_res_blocks,
            attention_levels=tuple(config.attention_levels),
            norm_num_groups=config.norm_num_groups,
            with_nonlocal_attn=config.with_nonlocal_attn,
        )
    return AutoencoderKL(
        spatial_dims=config.spatial_dims,
        in_channels=1,
        out_channels=1,
        channels=tuple(config.channels),
        latent_channels=config.latent_channels,
        num_res_blocks=config.num_res_blocks,
        attention_levels=tuple(config.attention_levels),
        norm_num_groups=config.norm_num_groups,
        with_encoder_nonlocal_attn=config.with_nonlocal_attn,
        with_decoder_nonlocal_attn=config.with_nonlocal_attn,
    )


def build_unet(config: UNetConfig, latent_channels: int):  # -> monai DiffusionModelUNet
    """A MONAI ``DiffusionModelUNet`` with self-attention where ``attention_levels`` says
    (with position input channels when ``config.position_channels`` or
    ``config.slice_position``)."""
    from monai.networks.nets import DiffusionModelUNet

    from medldm.models.positions import PositionConditionedUNet

    conditioned = bool(config.position_channels) or config.slice_position
    options = (
        {
            "image_positions": bool(config.position_channels),
            "slice_position": config.slice_position,
            "neighbour_slices": config.neighbour_slices,
        }
        if conditioned
        else {}
    )
    network = PositionConditionedUNet if conditioned else DiffusionModelUNet
    return network(
        **options,
        spatial_dims=config.spatial_dims,
        in_channels=latent_channels,
        out_channels=latent_channels,
        channels=tuple(config.channels),
        attention_levels=tuple(config.attention_levels),
        num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels,
        norm_num_groups=config.norm_num_groups,
    )


def build_scheduler(config: SchedulerConfig, kind: str = "ddpm"):
    """MONAI ``DDPMScheduler`` (training) or ``DDIMScheduler`` (sampling) with the same betas."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        schedule=config.schedule,
        beta_start=config.beta_start,
        beta_end=config.beta_end,
        prediction_type=config.prediction_type,
        clip_sample=False,
    )
    if kind == "ddpm":
        return DDPMScheduler(**common)
    if kind == "ddim":
        return DDIMScheduler(**common, set_alpha_to_one=True)
    raise InvalidInputError(f"unknown scheduler kind {kind!r}", fix="use 'ddpm' or 'ddim'")
