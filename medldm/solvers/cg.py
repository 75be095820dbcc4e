"""Least squares by conjugate gradients (CGLS); CG-SENSE for multi-coil MRI.

Solves the (optionally Tikhonov-regularised) normal equations

    (A^H A + lambda I) x = A^H y,   i.e.  min_x ||A x - y||^2 + lambda ||x||^2,

with CGLS (Hestenes-Stiefel on the normal equations, keeping the data residual
``s = y - A x`` so it is monitored for free). One ``A`` and one ``A^H`` per iteration.
Without regularisation the iterates minimise ``||A x - y||`` over growing Krylov
subspaces, so the data residual never increases; stopping early (``n_iter``) is itself a
regulariser for ill-posed problems (CT, deblurring).

References
----------
Hestenes & Stiefel (1952); Pruessmann et al., "Advances in sensitivity encoding with
arbitrary k-space trajectories", MRM 46 (2001) (CG-SENSE); Björck, Numerical Methods for
Least Squares Problems (1996), CGLS.

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Matrix(LinearPhysics):
...     def __init__(self, m): super().__init__(); self.m = m
...     def A(self, x): return x @ self.m.T
...     def A_adjoint(self, y): return y @ self.m
>>> op = Matrix(torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]]))
>>> x = torch.tensor([[[[1.0, -2.0]]]])
>>> rec = ConjugateGradient(n_iter=10).solve(op.A(x), op)
>>> torch.allclose(rec.estimate, x, atol=1e-5), rec.iterations
(True, 2)
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import LinearPhysics, inner
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish, progress_over


def _per_item(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) vector reshaped to broadcast over ``like`` (B, ...)."""
    return values.reshape((-1,) + (1,) * (like.ndim - 1)).to(like.dtype)


class ConjugateGradient:
    """CGLS for ``min ||A x - y||^2 + l2_weight ||x||^2``.

    Parameters
    ----------
    n_iter:
        Maximum number of iterations.
    tol:
        Stop when every batch item's normal-equation residual
        ``||A^H (y - A x) - lambda x||`` is below ``tol`` times ``||A^H y||``.
    l2_weight:
        Tikhonov weight ``lambda >= 0`` (in the squared units of ``y`` over ``x``).
    progress:
        Show a tqdm progress bar.
    """

    name = "cg"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, n_iter: int = 30, tol: float = 1e-6, l2_weight: float = 0.0, progress: bool = False
    ):
        self.n_iter = int(n_iter)
        self.tol = float(tol)
        self.l2_weight = float(l2_weight)
        self.progress = bool(progress)

    @torch.no_grad()
    def solve(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        prior: LatentPrior | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Reconstruction:
        started = time.perf_counter()
        lam = self.l2_weight
        y_norm = torch.linalg.vector_norm(y).clamp_min(1e-30)

        s = y.clone()  # data residual y - A x, with x = 0
        r = physics.A_adjoint(s)  # normal-equation residual A^H s - lambda x
        x = torch.zeros_like(r)
        p = r.clone()
        gamma = inner(r, r)
        stop = (self.tol**2) * gamma.clamp_min(1e-30)
        history = [1.0]
        done = 0
        for k in progress_over(range(self.n_iter), self.progress, "CG"):
            if torch.all(gamma <= stop):
                break
            q = physics.A(p)
            delta = inner(q, q) + lam * inner(p, p)
            alpha = torch.where(delta > 0, gamma / delta.clamp_min(1e-30), 0.0)
            x = x + _per_item(alpha, x) * p
            s = s - _per_item(alpha, s) * q
            r = physics.A_adjoint(s) - lam * x
            gamma_new = inner(r, r)
            beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(1e-30), 0.0)
            p = r + _per_item(beta, p) * p
            gamma = gamma_new
            done = k + 1
            history.append(float(torch.linalg.vector_norm(s) / y_norm))
            if callback is not None:
                callback(k, x)
        info = {"l2_weight": lam, "n_iter": self.n_iter, "residual_history": history}
        return finish(x, y, physics, iterations=done, started=started, info=info)
