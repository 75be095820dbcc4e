"""Total-variation regularised reconstruction by PDHG (Chambolle-Pock).

Solves

    min_x  1/2 ||A x - y||^2 + lambda TV(x)   [+ x real / x >= 0],

with the isotropic TV ``TV(x) = sum_pixels sqrt(sum_d |w_d D_d x|^2)`` over all spatial
axes (2D or 3D; ``w_z`` weights the through-plane axis of a volume, 0 gives slice-wise 2D
TV). Complex ``x`` (MRI) is supported: the gradient is complex and ``|.|`` is the complex
modulus.

Algorithm 1 of Chambolle & Pock (theta = 1) on ``K = [A; grad]``, with dual variables
``p`` (measurements) and ``q`` (gradients)::

    p     <- (p + sigma_p (A x_bar - y)) / (1 + sigma_p)      prox of the data term's conjugate
    q     <- project_{|q| <= lambda}(q + sigma_q grad x_bar)  prox of the TV term's conjugate
    x'    <- project_C(x - tau (A^H p + grad^H q))            primal step (+ constraint)
    x_bar <- 2 x' - x ;  x <- x'

Step sizes (``tau sigma ||K||^2 < 1``) come from one of two rules (``"auto"``, the
default, takes the diagonal one when ``x`` is real and ``A 1``, ``A^H 1`` are non-negative;
an operator with negative entries but non-negative sums, e.g. a PSF with negative lobes,
should ask for ``"scalar"`` explicitly):

* ``preconditioning="scalar"`` (any operator, complex included): the data term is
  rescaled by ``a = ||A||`` (``physics.norm``: power iteration, cached), i.e. ``A -> A / a``,
  ``y -> y / a``, ``lambda -> lambda / a^2`` (same minimiser), so
  ``||K||^2 <= 1 + ||grad||^2`` and ``tau = r / ||K||``, ``sigma = 1 / (r ||K||)``.
* ``preconditioning="diagonal"`` (real operators with non-negative entries: CT
  projectors, non-negative blurs, masks): the diagonal preconditioners of Pock &
  Chambolle (2011, alpha = 1), ``sigma_p = 1 / (r A 1)``, ``sigma_q = 1 / (2 r w_d)``,
  ``tau = r / (A^H 1 + 2 sum_d w_d)``. Much faster on ill-conditioned operators (CT).

``r`` is ``step_ratio``, the primal/dual balance (same convergence guarantee for every
``r > 0``; 10 suits images in [0, 1]).

Units: ``weight`` (lambda) is in units of ``y^2`` per unit of TV (intensity x pixels), so
it depends on the intensity scale; the tuned presets in ``configs/solver/`` assume images
normalised to [0, 1] as the data cards do.

References
----------
A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
applications to imaging", JMIV 40 (2011); T. Pock, A. Chambolle, "Diagonal
preconditioning for first order primal-dual algorithms in convex optimization", ICCV
(2011); L. Rudin, S. Osher, E. Fatemi (1992).

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Identity(LinearPhysics):
...     def A(self, x): return x
...     def A_adjoint(self, y): return y
>>> step = torch.zeros(1, 1, 16, 16); step[..., 8:] = 1.0
>>> noisy = step + 0.1 * torch.randn(step.shape, generator=torch.Generator().manual_seed(0))
>>> rec = TotalVariation(weight=0.1, n_iter=200).solve(noisy, Identity())
>>> bool((rec.estimate - step).norm() < 0.5 * (noisy - step).norm())
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish, progress_over
from medldm.solvers.finite_differences import (
    axis_weights,
    gradient,
    gradient_adjoint,
    gradient_norm_bound,
    pointwise_norm,
    total_variation,
)

CONSTRAINTS = (None, "real", "nonnegative")
PRECONDITIONINGS = ("auto", "scalar", "diagonal")

#: Safety factor on ||K||: power iteration approaches the norm from below.
NORM_MARGIN = 1.02


def project_onto_ball(q: torch.Tensor, radius: float) -> torch.Tensor:
    """Pointwise projection of a stacked gradient field onto ``{|q| <= radius}``."""
    if radius <= 0:
        return torch.zeros_like(q)
    return q / (pointwise_norm(q) / radius).clamp_min(1.0)


def project_onto_constraint(x: torch.Tensor, constraint: str | None) -> torch.Tensor:
    """``x`` itself, its real part, or its real part clipped at 0 (dtype kept)."""
    if constraint is None:
        return x
    real = x.real.clamp_min(0.0) if constraint == "nonnegative" else x.real
    return torch.complex(real, torch.zeros_like(real)) if x.is_complex() else real


@dataclass
class StepSizes:
    """PDHG steps for the rescaled problem ``A / data_scale``, ``y / data_scale``."""

    data_scale: float
    tau: torch.Tensor | float
    sigma_data: torch.Tensor | float
    sigma_gradient: torch.Tensor | float


def scalar_steps(physics: Any, x: torch.Tensor, weights: list[float], ratio: float) -> StepSizes:
    """``tau = r / ||K||``, ``sigma = 1 / (r ||K||)`` with ``A`` rescaled to norm 1."""
    norm_a = physics.norm(x)
    if norm_a <= 0:
        raise InvalidInputError("the operator is zero (||A|| = 0)", fix="check the physics")
    norm_k = NORM_MARGIN * (1.0 + gradient_norm_bound(weights) ** 2) ** 0.5
    return StepSizes(norm_a, ratio / norm_k, 1.0 / (ratio * norm_k), 1.0 / (ratio * norm_k))


def has_nonnegative_sums(physics: Any, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether ``x`` is real and ``A 1`` and ``A^H 1`` are real and non-negative: true for
    operators with non-negative entries (CT, masks, non-negative PSFs), the case that
    ``preconditioning="auto"`` sends to the diagonal preconditioners."""
    if x.is_complex() or y.is_complex():
        return False
    row_sums = physics.A(torch.ones_like(x))
    column_sums = physics.A_adjoint(torch.ones_like(y))
    return bool(row_sums.min() >= 0 and column_sums.min() >= 0)


def diagonal_steps(
    physics: Any, x: torch.Tensor, y: torch.Tensor, weights: list[float], ratio: float
) -> StepSizes:
    """Pock-Chambolle diagonal preconditioners (alpha = 1) from ``A 1`` and ``A^H 1``."""
    row_sums = physics.A(torch.ones_like(x))
    column_sums = physics.A_adjoint(torch.ones_like(y))
    if row_sums.is_complex() or column_sums.is_complex() or x.is_complex():
        raise InvalidInputError(
            "diagonal preconditioning needs a real operator with non-negative entries",
            fix="use preconditioning='scalar' for complex (MRI) operators",
        )
    if row_sums.min() < 0 or column_sums.min() < 0:
        raise InvalidInputError(
            "diagonal preconditioning needs an operator with non-negative entries "
            "(A 1 or A^H 1 has negative values)",
            fix="use preconditioning='scalar'",
        )
    active = [w for w in weights if w > 0]
    sigma_gradient = torch.tensor(
        [1.0 / (2.0 * ratio * w) if w > 0 else 0.0 for w in weights],
        dtype=x.real.dtype,
        device=x.device,
    ).reshape((-1,) + (1,) * x.ndim)
    tau = ratio / (column_sums + 2.0 * sum(active))
    sigma_data = 1.0 / (ratio * row_sums.clamp_min(torch.finfo(row_sums.dtype).tiny))
    return StepSizes(1.0, tau, sigma_data, sigma_gradient)


class TotalVariation:
    """TV-regularised least squares by PDHG.

    Parameters
    ----------
    weight:
        TV weight ``lambda >= 0`` (see the module docstring for its units).
    n_iter:
        Maximum number of PDHG iterations.
    weight_z:
        For 3D images, the weight of the through-plane differences (first spatial axis);
        1 is isotropic, 0 is slice-wise 2D TV.
    constraint:
        ``None``, ``"real"`` or ``"nonnegative"`` (implies real).
    preconditioning:
        ``"auto"``, ``"scalar"`` (any operator) or ``"diagonal"`` (real operators with
        non-negative entries); see the module docstring.
    step_ratio:
        Primal/dual step balance ``r > 0``.
    tol:
        Stop early when ``||x_k+1 - x_k|| / ||x_k+1||`` falls below ``tol`` (0: never).
    progress:
        Show a tqdm progress bar.
    phase:
        ``None``, or ``"lowres"`` for complex (MRI) data: estimate a smooth phase map from
        the measured k-space centre and solve for a real, non-negative magnitude behind it
        (:class:`~medldm.physics.phase.PhaseConstrained`); the estimate is magnitude x phase.
    """

    name = "tv"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        weight: float = 0.01,
        n_iter: int = 300,
        *,
        weight_z: float = 1.0,
        constraint: str | None = None,
        preconditioning: str = "auto",
        step_ratio: float = 10.0,
        tol: float = 0.0,
        progress: bool = False,
        phase: str | None = None,
    ):
        if weight < 0 or weight_z < 0:
            raise InvalidInputError(
                f"TV weights must be >= 0, got weight={weight}, weight_z={weight_z}"
            )
        if constraint not in CONSTRAINTS:
            raise InvalidInputError(
                f"unknown constraint {constraint!r}", fix=f"use one of {CONSTRAINTS}"
            )
        if preconditioning not in PRECONDITIONINGS:
            raise InvalidInputError(
                f"unknown preconditioning {preconditioning!r}",
                fix=f"use one of {PRECONDITIONINGS}",
            )
        if not step_ratio > 0:
            raise InvalidInputError(f"step_ratio must be > 0, got {step_ratio}")
        self.weight = float(weight)
        self.n_iter = int(n_iter)
        self.weight_z = float(weight_z)
        self.constraint = constraint
        self.preconditioning = preconditioning
        self.step_ratio = float(step_ratio)
        self.tol = float(tol)
        self.progress = bool(progress)
        if phase not in (None, "lowres"):
            raise InvalidInputError(f"unknown phase option {phase!r}", fix="use None or 'lowres'")
        self.phase = phase

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
        if self.phase == "lowres" and y.is_complex():
            from medldm.physics.phase import PhaseConstrained, lowres_phase

            phase_map = lowres_phase(y, physics)
            magnitude_solver = TotalVariation(
                self.weight,
                self.n_iter,
                weight_z=self.weight_z,
                constraint="nonnegative",
                preconditioning="scalar",
                step_ratio=self.step_ratio,
                tol=self.tol,
                progress=self.progress,
            )
            inner = magnitude_solver.solve(
                y, PhaseConstrained(physics, phase_map), callback=callback
            )
            estimate = inner.estimate.to(phase_map.dtype) * phase_map
            info = {**inner.info, "phase": "lowres"}
            return finish(
                estimate, y, physics, iterations=inner.iterations, started=started, info=info
            )
        x = project_onto_constraint(physics.x_init(y), self.constraint)
        spatial_dims = x.ndim - 2
        if spatial_dims not in (2, 3):
            raise InvalidInputError(
                f"TV needs (B, C, H, W) or (B, C, D, H, W) images, got shape {tuple(x.shape)}"
            )
        weights = axis_weights(spatial_dims, self.weight_z)
        preconditioning = self.preconditioning
        if preconditioning == "auto":
            preconditioning = "diagonal" if has_nonnegative_sums(physics, x, y) else "scalar"
        if preconditioning == "diagonal":
            steps = diagonal_steps(physics, x, y, weights, self.step_ratio)
        else:
            steps = scalar_steps(physics, x, weights, self.step_ratio)
        scale = steps.data_scale
        tau, sigma_p, sigma_q = steps.tau, steps.sigma_data, steps.sigma_gradient
        y_scaled = y / scale
        radius = self.weight / scale**2

        p = torch.zeros_like(y)
        q = torch.zeros_like(gradient(x, weights))
        x_bar = x
        change = float("inf")
        done = 0
        for k in progress_over(range(self.n_iter), self.progress, "TV (PDHG)"):
            p = (p + sigma_p * (physics.A(x_bar) / scale - y_scaled)) / (1 + sigma_p)
            q = project_onto_ball(q + sigma_q * gradient(x_bar, weights), radius)
            primal_step = physics.A_adjoint(p) / scale + gradient_adjoint(q, weights)
            x_new = project_onto_constraint(x - tau * primal_step, self.constraint)
            x_bar = 2 * x_new - x
            change = float(
                torch.linalg.vector_norm(x_new - x)
                / torch.linalg.vector_norm(x_new).clamp_min(1e-30)
            )
            x = x_new
            done = k + 1
            if callback is not None:
                callback(k, x)
            if change < self.tol:
                break

        data_misfit = 0.5 * torch.linalg.vector_norm(physics.A(x) - y) ** 2
        objective = float(data_misfit + self.weight * total_variation(x, weights).sum())
        info = {
            "weight": self.weight,
            "weight_z": self.weight_z,
            "constraint": self.constraint,
            "preconditioning": preconditioning,
            "step_ratio": self.step_ratio,
            "data_scale": scale,
            "relative_change": change,
            "objective": objective,
        }
        return finish(x, y, physics, iterations=done, started=started, info=info)
