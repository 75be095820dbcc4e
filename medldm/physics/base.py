"""Base class of every forward model, and the conjugate-gradient solver they share.

A linear operator writes ``A`` and ``A_adjoint``; it inherits:

* ``A_dagger(y)``: the least-squares solution of ``A x = y`` by conjugate gradients on the
  normal equations ``A^H A x = A^H y`` (operators with a closed form override it);
* ``forward(x, generator)``: the noisy measurement ``noise(A x)``;
* ``residual(x, y)``: relative data misfit ``||A x - y|| / ||y||``;
* ``adjointness_error(x, y)``: ``|<Ax, y> - <x, A^H y>| / (|<Ax, y>| + eps)``.

Shapes: ``x`` is ``(B, C, *spatial)`` with ``spatial_dims`` spatial axes; ``y`` has an
operator-specific shape. Complex operators (MRI) use complex tensors.

Example
-------
>>> import torch
>>> class Scale(LinearPhysics):
...     def A(self, x): return 2 * x
...     def A_adjoint(self, y): return 2 * y
>>> op = Scale(spatial_dims=2)
>>> x = torch.ones(1, 1, 3, 3)
>>> torch.allclose(op.A_dagger(op.A(x)), x, atol=1e-5)
True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from medldm.physics.noise import GaussianNoise, NoiseModel


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the inner product ``<a, b> = sum(conj(a) * b)`` per batch item, (B,)."""
    product = torch.conj(a) * b if a.is_complex() or b.is_complex() else a * b
    return product.reshape(product.shape[0], -1).sum(dim=1).real


def conjugate_gradient(
    normal_op: Callable[[torch.Tensor], torch.Tensor],
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    *,
    n_iter: int = 50,
    tol: float = 1e-6,
) -> tuple[torch.Tensor, int]:
    """Solve ``normal_op(x) = rhs`` for a Hermitian positive (semi-)definite operator.

    Batched: each batch item has its own step sizes. Stops when every item's residual norm
    falls below ``tol`` times its right-hand side norm. Returns ``(x, iterations)``.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs - normal_op(x) if x0 is not None else rhs.clone()
    p = r.clone()
    rs_old = inner(r, r)
    rhs_norm = inner(rhs, rhs).clamp_min(1e-30)
    shape = (-1,) + (1,) * (rhs.ndim - 1)
    iterations = 0
    for iterations in range(1, n_iter + 1):
        if torch.all(rs_old <= (tol**2) * rhs_norm):
            iterations -= 1
            break
        ap = normal_op(p)
        denom = inner(p, ap)
        alpha = torch.where(denom.abs() > 0, rs_old / denom.clamp_min(1e-30), 0.0)
        x = x + alpha.reshape(shape).to(x.dtype) * p
        r = r - alpha.reshape(shape).to(r.dtype) * ap
        rs_new = inner(r, r)
        beta = torch.where(rs_old > 0, rs_new / rs_old.clamp_min(1e-30), 0.0)
        p = r + beta.reshape(shape).to(r.dtype) * p
        rs_old = rs_new
    return x, iterations


class LinearPhysics(nn.Module):
    """A linear forward model ``y = noise(A x)``.

    Parameters
    ----------
    spatial_dims:
        2 or 3: the number of spatial axes of ``x``.
    noise_model:
        How a clean measurement becomes a noisy one (default: no noise).
    """

    def __init__(self, spatial_dims: int = 2, noise_model: NoiseModel | None = None):
        super().__init__()
        self.spatial_dims = int(spatial_dims)
        self.noise_model = noise_model if noise_model is not None else GaussianNoise(0.0)

    # --- to implement -----------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- inherited --------------------------------------------------------------------
    @property
    def sigma(self) -> float:
        """Standard deviation of the measurement noise (0 for noiseless)."""
        return float(self.noise_model.sigma)

    def A_AH(self, x: torch.Tensor) -> torch.Tensor:
        """``A^H A x``."""
        return self.A_adjoint(self.A(x))

    def A_dagger(
        self,
        y: torch.Tensor,
        *,
        n_iter: int = 50,
        tol: float = 1e-6,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Least-squares solution of ``A x = y`` (CG on the normal equations)."""
        x, _ = conjugate_gradient(self.A_AH, self.A_adjoint(y), x0, n_iter=n_iter, tol=tol)
        return x

    def noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A noisy copy of the clean measurement ``y``."""
        return self.noise_model(y, generator)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The noisy measurement of ``x``: ``noise(A x)``."""
        return self.noise(self.A(x), generator)

    def residual(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Relative data misfit ``||A x - y|| / ||y||`` over the whole batch."""
        diff = self.A(x) - y
        return float(torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(y).clamp_min(1e-30))

    def residual_over_noise(self, x: torch.Tensor, y: torch.Tensor) -> float | None:
        """``||A x - y|| / (sigma sqrt(m))``: about 1 when ``x`` fits the data to the noise
        level (``m`` measurements, complex counted twice). ``None`` when noiseless."""
        if self.sigma <= 0:
            return None
        diff = self.A(x) - y
        count = diff.numel() * (2 if diff.is_complex() else 1)
        return float(torch.linalg.vector_norm(diff) / (self.sigma * count**0.5))

    def adjointness_error(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Relative mismatch of ``<A x, y>`` and ``<x, A^H y>`` (0 for an exact adjoint)."""
        lhs = inner(self.A(x), y).sum()
        rhs = inner(x, self.A_adjoint(y)).sum()
        return float((lhs - rhs).abs() / (lhs.abs() + rhs.abs() + 1e-30) * 2)
