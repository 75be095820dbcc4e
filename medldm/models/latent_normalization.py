"""The map between the autoencoder's latent means and the diffusion model's latents.

The diffusion model works on ``z = (mu - shift) * scale``, fitted once on training latents
so that ``z`` has zero mean and unit variance, and stored in the checkpoint:

* ``global`` (the classic LDM ``scale_factor``): one ``scale = 1 / std`` over all channels,
  no shift;
* ``per_channel`` (as EDM2 normalises Stable Diffusion latents, Karras et al. 2024): a mean
  and a std per latent channel. A residual autoencoder's latents are block-PCA
  coefficients plus a learned residual, so their channels differ in spread by an order of
  magnitude (brain_t1_2d at step 2926: std 1.0 for the block means, 0.07-0.2 for the
  others); with one global scale the fine channels would drown in noise at a tenth of the
  noise level of the first, and the diffusion model would spend most of its schedule on
  the block means.

Checkpoints store it as ``meta["latent_normalization"] = {"shift": [...], "scale": [...]}``
(one entry per channel); older ones only have ``meta["scale_factor"]``, read as ``global``.

Example
-------
>>> import torch
>>> mu = torch.randn(64, 2, 4, 4) * torch.tensor([3.0, 0.1]).view(1, 2, 1, 1) + 1.0
>>> norm = LatentNormalization.fit(mu, "per_channel")
>>> z = norm.forward(mu)
>>> [round(float(z[:, c].std()), 3) for c in range(2)]
[1.0, 1.0]
>>> bool(torch.allclose(norm.inverse(z), mu, atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from medldm.errors import InvalidInputError

MODES = ("global", "per_channel")


@dataclass(frozen=True)
class LatentNormalization:
    """``z = (mu - shift) * scale`` per channel; ``shift`` and ``scale`` are ``(C,)``."""

    shift: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, latents: torch.Tensor, mode: str = "global") -> LatentNormalization:
        """Fit on latent means ``(N, C, *spatial)`` so that ``forward`` gives zero mean (per
        channel; none for ``global``) and unit variance."""
        if mode not in MODES:
            raise InvalidInputError(
                f"unknown latent normalization {mode!r}", fix=f"use one of {MODES}"
            )
        latents = latents.detach().double()
        channels = latents.shape[1]
        if mode == "global":
            scale = torch.full((channels,), float(1.0 / latents.std()), dtype=torch.float64)
            return cls(torch.zeros(channels, dtype=torch.float64), scale)
        per_channel = latents.transpose(0, 1).reshape(channels, -1)
        return cls(per_channel.mean(1), 1.0 / per_channel.std(1))

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], channels: int) -> LatentNormalization:
        """From a checkpoint's meta: ``latent_normalization`` or the older ``scale_factor``."""
        spec = meta.get("latent_normalization")
        if spec:
            shift = torch.tensor(spec["shift"], dtype=torch.float64)
            scale = torch.tensor(spec["scale"], dtype=torch.float64)
            if shift.shape != (channels,) or scale.shape != (channels,):
                raise InvalidInputError(
                    f"latent_normalization has {len(spec['shift'])}/{len(spec['scale'])} "
                    f"entries for {channels} latent channels",
                    fix="the checkpoint's config.json is inconsistent: re-export it",
                )
            return cls(shift, scale)
        factor = float(meta.get("scale_factor") or 1.0)
        return cls(
            torch.zeros(channels, dtype=torch.float64),
            torch.full((channels,), factor, dtype=torch.float64),
        )

    def to_meta(self) -> dict[str, list[float]]:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @property
    def is_global(self) -> bool:
        return bool((self.shift == 0).all() and (self.scale == self.scale[0]).all())

    @property
    def scale_factor(self) -> float | None:
        """The single scale of a ``global`` normalisation (``None`` for per channel)."""
        return float(self.scale[0]) if self.is_global else None

    def _view(self, values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (like.ndim - 2)
        return values.to(like.device, like.dtype).view(shape)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        """Latent means ``(B, C, *spatial)`` -> diffusion latents."""
        return (mu - self._view(self.shift, mu)) * self._view(self.scale, mu)

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """Diffusion latents -> latent means (differentiable)."""
        return z / self._view(self.scale, z) + self._view(self.shift, z)
