"""Noise models for measurements: Gaussian (real or complex), Poisson, Poisson-Gaussian.

Every model takes a ``torch.Generator`` so a seed fixes the noise.

Example
-------
>>> import torch
>>> noise = GaussianNoise(sigma=0.1)
>>> y = torch.zeros(1, 1, 4, 4)
>>> noisy = noise(y, torch.Generator().manual_seed(0))
>>> noisy.shape
torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

import torch
from torch import nn

from medldm.errors import InvalidInputError


def _randn_like(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``y``; complex ``y`` gets circular complex noise
    with unit variance per real and imaginary part."""
    if generator is not None and generator.device != y.device:
        # Draw on the generator's device then move: keeps seeds reproducible across devices.
        base = torch.randn(
            y.shape, generator=generator, dtype=y.real.dtype, device=generator.device
        )
        if y.is_complex():
            imag = torch.randn(
                y.shape, generator=generator, dtype=y.real.dtype, device=generator.device
            )
            base = torch.complex(base, imag)
        return base.to(y.device)
    real = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
    if y.is_complex():
        imag = torch.randn(y.shape, generator=generator, dtype=y.real.dtype, device=y.device)
        return torch.complex(real, imag)
    return real


class NoiseModel(nn.Module):
    """Base class: ``noise(y, generator)`` returns a noisy copy of the clean measurement."""

    sigma: float = 0.0

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError


class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise, ``y + sigma * n``.

    For complex measurements (k-space) ``sigma`` is the standard deviation of the real and
    of the imaginary part each.
    """

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        if not sigma >= 0:
            raise InvalidInputError(f"noise sigma must be >= 0, got {sigma}")
        self.sigma = float(sigma)

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.sigma == 0:
            return y.clone()
        return y + self.sigma * _randn_like(y, generator)


class PoissonNoise(NoiseModel):
    """Photon-count noise: ``y_noisy = Poisson(y * gain) / gain`` (``y`` >= 0).

    ``gain`` is the number of photons per unit of ``y``; larger means less noise.
    """

    def __init__(self, gain: float = 1e4):
        super().__init__()
        if not gain > 0:
            raise InvalidInputError(f"Poisson gain must be > 0, got {gain}")
        self.gain = float(gain)

    @property
    def sigma(self) -> float:  # type: ignore[override]
        return float(1.0 / self.gain**0.5)

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        rate = torch.clamp(y, min=0) * self.gain
        device = generator.device if generator is not None else y.device
        counts = torch.poisson(rate.to(device), generator=generator).to(y.device)
        return counts / self.gain


class PoissonGaussianNoise(NoiseModel):
    """Microscopy camera noise: Poisson shot noise at ``gain`` photons per unit, plus
    Gaussian read noise of standard deviation ``sigma`` (in units of ``y``)."""

    def __init__(self, gain: float = 1e3, sigma: float = 0.01):
        super().__init__()
        self.poisson = PoissonNoise(gain)
        self.gaussian = GaussianNoise(sigma)

    @property
    def sigma(self) -> float:  # type: ignore[override]
        return float((self.gaussian.sigma**2 + self.poisson.sigma**2) ** 0.5)

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.gaussian(self.poisson(y, generator), generator)
