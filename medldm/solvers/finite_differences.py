"""Forward-difference gradient over the spatial axes of ``(B, C, *spatial)`` tensors, its
adjoint (minus the divergence), and isotropic total variation.

``gradient(x)[d]`` is ``w_d (x[i + e_d] - x[i])`` with a zero last difference (Neumann
boundary), ``d`` running over the spatial axes; the weights ``w_d`` default to 1 and let a
3D TV weight the through-plane axis (the first spatial axis, ``D`` of ``(B, C, D, H, W)``)
differently. ``||gradient||^2 <= 4 sum_d w_d^2``. Real and complex tensors alike; the
isotropic TV of a complex image uses ``|grad x| = sqrt(sum_d |d_d x|^2)``.

Example
-------
>>> import torch
>>> x = torch.tensor([[[[0.0, 1.0, 3.0]]]])  # (B, C, H, W) = (1, 1, 1, 3)
>>> gradient(x)[1]
tensor([[[[1., 2., 0.]]]])
>>> float(total_variation(x))
3.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def axis_weights(spatial_dims: int, weight_z: float = 1.0) -> list[float]:
    """Per-axis gradient weights: ``weight_z`` on the first spatial axis of a 3D image."""
    return [float(weight_z)] + [1.0] * (spatial_dims - 1) if spatial_dims == 3 else [1.0] * 2


def gradient_norm_bound(weights: Sequence[float]) -> float:
    """An upper bound of the operator norm of :func:`gradient`: ``2 sqrt(sum w_d^2)``."""
    return 2.0 * sum(w * w for w in weights) ** 0.5


def forward_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x[i + 1] - x[i]`` along ``dim``, with a zero last difference (same shape as ``x``)."""
    difference = torch.diff(x, dim=dim)
    return torch.cat([difference, torch.zeros_like(x.narrow(dim, 0, 1))], dim=dim)


def forward_difference_adjoint(g: torch.Tensor, dim: int) -> torch.Tensor:
    """Adjoint of :func:`forward_difference` along ``dim`` (minus the backward difference)."""
    inner = g.narrow(dim, 0, g.shape[dim] - 1)
    zero = torch.zeros_like(g.narrow(dim, 0, 1))
    return torch.cat([zero, inner], dim=dim) - torch.cat([inner, zero], dim=dim)


def gradient(x: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Weighted forward differences, stacked: ``(n_spatial, B, C, *spatial)``."""
    n_spatial = x.ndim - 2
    weights = [1.0] * n_spatial if weights is None else list(weights)
    return torch.stack([w * forward_difference(x, 2 + d) for d, w in enumerate(weights)], dim=0)


def gradient_adjoint(g: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Adjoint of :func:`gradient` (minus the divergence): ``(B, C, *spatial)``."""
    n_spatial = g.shape[0]
    weights = [1.0] * n_spatial if weights is None else list(weights)
    out = torch.zeros_like(g[0])
    for d, w in enumerate(weights):
        out = out + w * forward_difference_adjoint(g[d], 2 + d)
    return out


def pointwise_norm(g: torch.Tensor) -> torch.Tensor:
    """``|g| = sqrt(sum_d |g_d|^2)`` per pixel, real, ``(B, C, *spatial)``."""
    return torch.sqrt((g.real**2 + g.imag**2).sum(0) if g.is_complex() else (g**2).sum(0))


def total_variation(x: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Isotropic TV ``sum_pixels |grad x|`` per batch item, ``(B,)``."""
    return pointwise_norm(gradient(x, weights)).flatten(1).sum(1)
