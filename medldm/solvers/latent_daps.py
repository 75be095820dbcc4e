"""Latent DAPS: Decoupled Annealing Posterior Sampling (Zhang et al., CVPR 2025) on a
latent prior.

DAPS decouples consecutive noise levels: from the current noisy latent it estimates a
clean latent with the prior alone (a short probability-flow ODE solve), samples a clean
latent that also fits the data by Langevin dynamics, and re-noises it to the next, lower
noise level — so data-fitting errors made at one level are not carried along the
trajectory::

    z ~ N(0, I) at t_0 = T
    for i, t in the annealing schedule (``n_anneal`` levels, high to low noise):
        z0_hat = ODE_{t -> 0}(z)                  (``n_ode`` DDIM steps, prior only)
        r_t    = rho * sqrt((1 - a_t) / a_t)      (the paper's r_t = sigma_t, VP form)
        z0 = z0_hat; repeat ``n_langevin`` times:                       # Langevin MCMC
            g  = (z0 - z0_hat) / r_t^2 + grad ||y - A D(z0)||^2 / (2 s_y^2)
            z0 = z0 - lr_t g + sqrt(2 lr_t) xi
        z  = sqrt(a_t'') z0 + sqrt(1 - a_t'') xi  at the next level t''
    x = D(z0) (+ optional final data consistency)

The likelihood gradient goes through the decoder only (never through the UNet).
The step ``lr_t = lr / (1 / r_t^2 + ||A^H A|| / s_y^2)`` is ``lr`` over the curvature of
the two terms (taking the decoder's gain as 1), so it decays with the noise level as the
paper's annealed step size does and stays stable for any noise level or operator scale.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.inpainting import Inpainting
>>> physics = Inpainting(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5)
>>> y = physics(torch.rand(1, 1, 16, 16))
>>> rec = LatentDAPS(n_anneal=3, n_ode=2, n_langevin=2, n_samples=1).solve(y, physics, tiny_prior())
>>> rec.nfe, rec.iterations
(5, 3)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import forward_diffuse, gaussian_like, timestep_pairs
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import ensure_finite, progress_over
from medldm.solvers.ddim import ddim_update
from medldm.solvers.latent_base import LatentSolverBase


class LatentDAPS(LatentSolverBase):
    """Decoupled annealing with Langevin data steps on a latent prior.

    Parameters
    ----------
    n_anneal:
        Annealing levels (outer loop).
    n_ode:
        DDIM steps of each prior-only ODE solve (NFE = ``n_anneal * n_ode`` at most).
    n_langevin:
        Langevin steps per level (each: one decode + one backward through the decoder).
    lr:
        Langevin step relative to the inverse curvature (see the module).
    rho:
        ``r_t`` relative to the VP noise-to-signal ratio.
    measurement_sigma:
        ``s_y``, the assumed noise level of the data term (in the units of ``y``); the
        physics' own noise level when ``None`` (with a floor of 0.01).
    n_samples, final_dc, final_dc_weight, final_dc_iter, normalization, phase, slice_axis, progress:
        As in :class:`~medldm.solvers.latent_dds.LatentDDS`.
    """

    name = "latent_daps"

    def __init__(
        self,
        n_anneal: int = 50,
        n_ode: int = 4,
        n_langevin: int = 10,
        lr: float = 0.5,
        rho: float = 1.0,
        measurement_sigma: float | None = None,
        n_samples: int = 4,
        final_dc: bool = True,
        final_dc_weight: float = 0.01,
        final_dc_iter: int = 30,
        normalization: str = "none",
        phase: str | None = "lowres",
        slice_axis: int = -1,
        progress: bool = False,
    ):
        self.n_anneal = int(n_anneal)
        self.n_ode = int(n_ode)
        self.n_langevin = int(n_langevin)
        self.lr = float(lr)
        self.rho = float(rho)
        self.measurement_sigma = measurement_sigma
        self._set_common(
            n_samples=n_samples,
            final_dc=final_dc,
            final_dc_weight=final_dc_weight,
            final_dc_iter=final_dc_iter,
            normalization=normalization,
            phase=phase,
            slice_axis=slice_axis,
            progress=progress,
        )

    schedule_option: ClassVar[str] = "n_anneal"

    @property
    def nfe_per_sample(self) -> int:
        """At most ``n_ode`` network evaluations per annealing level."""
        return self.n_anneal * self.n_ode

    @property
    def backpropagates(self) -> bool:
        """Each Langevin step differentiates the data term through the decoder."""
        return True

    def _ode_to_clean(self, prior: LatentPrior, z: torch.Tensor, t: int) -> torch.Tensor:
        """Prior-only estimate of the clean latent: ``n_ode`` DDIM steps from ``t`` to 0."""
        steps = [int(s) for s in np.linspace(t, 0, max(self.n_ode, 1) + 1).round()[:-1]]
        steps = sorted(set(steps), reverse=True)
        for s, s_prev in timestep_pairs(steps):
            z0 = prior.predict_x0(z, s)
            if s_prev is None:
                return z0
            z = ddim_update(prior, z, z0, s, s_prev)
        return z

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
        problem, z, clock = self.begin(y, physics, prior, generator)
        n = self.n_samples
        s_y = self.measurement_sigma
        if s_y is None:
            s_y = max(physics.sigma, 0.01)
        levels = prior.ddim_timesteps(self.n_anneal)
        z0 = z
        for i, t in enumerate(progress_over(levels, self.progress, self.name)):
            z0_hat = self._ode_to_clean(prior, z, t)
            a_t = prior.alpha_bar(t)
            r2 = float(self.rho**2 * (1 - a_t) / a_t)
            step = self.lr / (1.0 / r2 + problem.normal_scale * problem.span**2 / s_y**2)
            z0 = z0_hat.clone()
            for _ in range(self.n_langevin):
                with torch.enable_grad():
                    z0 = z0.detach().requires_grad_(True)
                    data = problem.data_loss(problem.decode(z0), n) / (2 * s_y**2)
                    grad_data = torch.autograd.grad(data, z0)[0]
                grad = (z0.detach() - z0_hat) / r2 + grad_data
                z0 = z0.detach() - step * grad + (2 * step) ** 0.5 * gaussian_like(z0, generator)
                z0 = ensure_finite(z0, "latent", self.name)
            if i + 1 < len(levels):
                a_next = prior.alpha_bar(levels[i + 1])
                z = forward_diffuse(z0, a_next, gaussian_like(z0, generator))
            if callback is not None:
                callback(i, problem.decode(z0))
        x = problem.decode(z0)
        return self.end(
            problem,
            x,
            clock,
            iterations=len(levels),
            info={
                "n_anneal": self.n_anneal,
                "n_ode": self.n_ode,
                "n_langevin": self.n_langevin,
                "lr": self.lr,
                "measurement_sigma": s_y,
            },
        )
