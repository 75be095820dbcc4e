"""Data consistency with total variation along the slice axis: the through-plane coupling of
a volume reconstructed with a 2D prior (DiffusionMBIR, Chung et al., CVPR 2023; DDS-3D).

The 2D prior denoises every slice on its own; this step ties neighbouring slices together
inside each data-consistency solve::

    x* = argmin_x 1/2 ||A x - y||^2 + lam/2 ||x - anchor||^2 + tau ||D_z x||_1,

with ``D_z`` the forward difference along the slice axis and a zero last difference
(Neumann boundary: the top slice is *not* tied to the bottom one, unlike the wrap-around
``torch.roll`` of the reference codes). An l1 norm keeps the edges where anatomy changes
from one slice to the next, which the quadratic ``mu ||D_z x||^2`` coupling blurs.

Solved by ADMM on the splitting ``v = D_z x`` (Boyd et al. 2011, scaled form), as
DiffusionMBIR does::

    x <- argmin 1/2||A x - y||^2 + lam/2||x - anchor||^2 + rho/2||D_z x - v + u||^2   (CG)
    v <- soft(D_z x + u, tau / rho)
    u <- u + D_z x - v

A few outer iterations per diffusion step suffice (the anchor changes little between
steps); each x-update is a short CG from the previous x.

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> truth = torch.zeros(1, 1, 6, 4, 4); truth[:, :, 3:] = 1.0  # a step along the slices
>>> mask = torch.rand(1, 1, 6, 4, 4, generator=torch.Generator().manual_seed(0)) > 0.5
>>> physics = Inpainting(mask, spatial_dims=3)
>>> anchor = truth + 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
>>> x = slice_tv_consistency(physics.A(truth), physics, anchor, lam=1.0, tau=0.05, axis=2)
>>> bool((x - truth).abs().mean() < (anchor - truth).abs().mean())
True
"""

from __future__ import annotations

import torch

from medldm.physics.base import LinearPhysics, conjugate_gradient
from medldm.solvers.finite_differences import forward_difference, forward_difference_adjoint


def soft_threshold(v: torch.Tensor, threshold: float) -> torch.Tensor:
    """``sign(v) max(|v| - threshold, 0)`` (the proximal map of ``threshold |.|``)."""
    return torch.sign(v) * torch.clamp(v.abs() - threshold, min=0.0)


@torch.no_grad()
def slice_tv_consistency(
    y: torch.Tensor,
    physics: LinearPhysics,
    anchor: torch.Tensor,
    *,
    lam: float,
    tau: float,
    axis: int,
    rho: float | None = None,
    n_outer: int = 3,
    n_cg: int = 5,
) -> torch.Tensor:
    """``x*`` of the module docstring for a real ``anchor`` ``(B, 1, *spatial)``.

    ``lam`` and ``tau`` are absolute weights (in the units of ``A^H A``); ``axis`` is the
    tensor axis of the slices (``2`` for ``(B, 1, S, H, W)``); ``rho`` (default ``lam``) is
    the ADMM penalty. Returns a tensor shaped like ``anchor``.
    """
    rho = float(lam if rho is None else rho)
    real = not anchor.is_complex()

    def normal(x: torch.Tensor) -> torch.Tensor:
        out = physics.A_adjoint_A(x)
        out = out.real if real and out.is_complex() else out
        return out + lam * x + rho * forward_difference_adjoint(forward_difference(x, axis), axis)

    data_rhs = physics.A_adjoint(y)
    data_rhs = data_rhs.real if real and data_rhs.is_complex() else data_rhs
    data_rhs = data_rhs + lam * anchor
    x = anchor
    v = forward_difference(x, axis)
    u = torch.zeros_like(v)
    for _ in range(n_outer):
        rhs = data_rhs + rho * forward_difference_adjoint(v - u, axis)
        x, _ = conjugate_gradient(normal, rhs, x, n_iter=n_cg, tol=1e-7)
        dx = forward_difference(x, axis)
        v = soft_threshold(dx + u, tau / rho)
        u = u + dx - v
    return x
