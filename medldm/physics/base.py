"""Base class of every forward model, and the linear algebra they share (conjugate
gradients, power iteration).

A linear operator writes ``A`` and ``A_adjoint``; it inherits, as deepinv's
``LinearPhysics`` does:

* ``A_adjoint_A(x)``: the normal operator ``A^H A x``;
* ``norm(like)``: the operator norm ``||A||`` by power iteration, cached;
* ``A_dagger(y)``: the least-squares solution of ``A x = y`` by conjugate gradients on the
  normal equations ``A^H A x = A^H y`` (operators with a closed form override it);
* ``prox_l2(z, y, weight)``: ``argmin_x 1/2 ||A x - y||^2 + weight/2 ||x - z||^2`` by CG;
* ``x_init(y)``: the direct reconstruction solvers start from (``A^H y``; CT overrides it
  with filtered back-projection);
* ``forward(x, generator)``: the noisy measurement ``noise(A x)``;
* ``residual(x, y)``: relative data misfit ``||A x - y|| / ||y||``;
* ``adjointness_error(x, y)``: ``|<Ax, y> - <x, A^H y>| / (|<Ax, y>| + eps)``.

Capabilities beyond ``A`` and ``A^H`` are declared, not probed: each class lists what it
offers in the class attribute ``capabilities`` (names below), and a solver lists what it
needs in ``requires`` (:func:`medldm.bench.compatibility.is_applicable` matches the two).

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
from typing import ClassVar

import torch
from torch import nn

from medldm.physics.noise import GaussianNoise, NoiseModel

#: Capability: an observed-pixel mask ``mask`` (1 = observed), ``A = diag(mask)``
#: (inpainting); what mask-filling solvers (biharmonic) need.
OBSERVED_MASK = "observed_mask"
#: Capability: ``fbp(y)``, filtered back-projection, which ``x_init`` returns (CT).
FILTERED_BACKPROJECTION = "filtered_backprojection"
#: Capability: ``A`` is a convolution with a point-spread function (deconvolution solvers:
#: Richardson-Lucy).
CONVOLUTION = "convolution"
#: Every capability a physics class may declare.
CAPABILITIES = frozenset({OBSERVED_MASK, FILTERED_BACKPROJECTION, CONVOLUTION})


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


def _random_start(like: torch.Tensor) -> torch.Tensor:
    """A fixed-seed standard normal tensor shaped like ``like`` (its dtype and device)."""
    generator = torch.Generator().manual_seed(0)
    real_dtype = torch.empty((), dtype=like.dtype).real.dtype
    x = torch.randn(tuple(like.shape), generator=generator, dtype=real_dtype)
    if like.dtype.is_complex:
        x = torch.complex(x, torch.randn(tuple(like.shape), generator=generator, dtype=real_dtype))
    return x.to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def largest_eigenvalue(
    normal_op: Callable[[torch.Tensor], torch.Tensor],
    like: torch.Tensor,
    *,
    n_iter: int = 100,
    tol: float = 1e-5,
) -> float:
    """Largest eigenvalue of a Hermitian positive semi-definite operator (such as
    ``A^H A``) on tensors shaped like ``like``, by power iteration from a fixed-seed random
    start, so the estimate is the same on every run.

    Stops after ``n_iter`` iterations or when the estimate changes by less than ``tol``
    (relative). Power iteration approaches the value from below; callers that need a bound
    add a margin.
    """
    x = _random_start(like)
    x = x / torch.linalg.vector_norm(x)
    value = 0.0
    for _ in range(int(n_iter)):
        z = normal_op(x)
        new_value = float(torch.linalg.vector_norm(z))
        if new_value == 0:
            break
        x = z / new_value
        converged = abs(new_value - value) <= tol * new_value
        value = new_value
        if converged:
            break
    return value


class LinearPhysics(nn.Module):
    """A linear forward model ``y = noise(A x)``.

    Parameters
    ----------
    spatial_dims:
        2 or 3: the number of spatial axes of ``x``.
    noise_model:
        How a clean measurement becomes a noisy one (default: no noise).

    Attributes
    ----------
    capabilities:
        What the class offers solvers beyond ``A`` and ``A^H`` (a subset of
        :data:`CAPABILITIES`); declared by each subclass.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

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

    def A_adjoint_A(self, x: torch.Tensor) -> torch.Tensor:
        """The normal operator ``A^H A x``."""
        return self.A_adjoint(self.A(x))

    def norm(self, like: torch.Tensor, *, n_iter: int = 100, tol: float = 1e-5) -> float:
        """The operator norm ``||A||`` (largest singular value) for inputs shaped like
        ``like`` (its shape, dtype and device; the values are not used):
        ``sqrt`` of :func:`largest_eigenvalue` of ``A^H A``.

        Cached per input shape, dtype, device and iteration settings; an operator whose
        parameters change in place should be rebuilt rather than reused.
        """
        key = (tuple(like.shape), like.dtype, str(like.device), int(n_iter), float(tol))
        cache = self.__dict__.setdefault("_norm_cache", {})
        if key not in cache:
            cache[key] = largest_eigenvalue(self.A_adjoint_A, like, n_iter=n_iter, tol=tol) ** 0.5
        return cache[key]

    def A_dagger(
        self,
        y: torch.Tensor,
        *,
        n_iter: int = 50,
        tol: float = 1e-6,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Least-squares solution of ``A x = y`` (CG on the normal equations)."""
        x, _ = conjugate_gradient(self.A_adjoint_A, self.A_adjoint(y), x0, n_iter=n_iter, tol=tol)
        return x

    def prox_l2(
        self,
        z: torch.Tensor,
        y: torch.Tensor,
        weight: float,
        *,
        n_iter: int = 50,
        tol: float = 1e-6,
        penalty: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``argmin_x 1/2 ||A x - y||^2 + weight/2 ||x - z||^2 (+ 1/2 <x, P x>)``: the
        proximal operator of the data term (deepinv's ``prox_l2`` with ``gamma = 1/weight``),
        by CG on ``(A^H A + weight I + P) x = A^H y + weight z`` started from ``z``.

        ``penalty`` is an optional Hermitian positive semi-definite operator ``P`` (a
        quadratic regulariser such as ``mu D^T D``). A real ``z`` asks for a real ``x`` (a
        magnitude behind a complex operator): the normal equations keep their real part.
        """
        real = not z.is_complex()

        def normal(x: torch.Tensor) -> torch.Tensor:
            out = self.A_adjoint_A(x)
            out = (out.real if real and out.is_complex() else out) + weight * x
            return out + penalty(x) if penalty is not None else out

        rhs = self.A_adjoint(y) + weight * z
        if real and rhs.is_complex():
            rhs = rhs.real
        x, _ = conjugate_gradient(normal, rhs, z, n_iter=n_iter, tol=tol)
        return x

    def x_init(self, y: torch.Tensor) -> torch.Tensor:
        """The direct reconstruction iterative solvers start from: ``A^H y`` (zero-filled
        for MRI and inpainting); operators with a better one (CT: FBP) override it."""
        return self.A_adjoint(y)

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
