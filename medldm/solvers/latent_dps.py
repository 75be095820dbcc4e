"""Latent DPS: diffusion posterior sampling with the gradient taken through the decoder.

Diffusion Posterior Sampling (Chung et al., "Diffusion Posterior Sampling for General Noisy
Inverse Problems", ICLR 2023) run on a latent prior, as in the latent-DPS baseline of Rout
et al. (2023). At every step the Tweedie estimate of the clean latent is decoded, the data
misfit measured, and its gradient with respect to ``z_t`` (through decoder *and* denoiser)
nudges the unconditional update::

    z_T ~ N(0, I)
    for t, t' in the schedule (1000 steps in the paper):
        eps = eps(z_t, t);  z0 = (z_t - sqrt(1 - a_t) eps) / sqrt(a_t)
        r   = ||y - A D(z0)||
        z_t' = DDIM/DDPM update of z_t with z0 (eta)
        z_t' = z_t' - zeta * grad_{z_t} r          # = zeta/(2r) grad ||y - A D(z0)||^2
    x = D(z_0), then an optional final data-consistency step (CG in image space).

:class:`LatentDPS` is also the base of PSLD (:mod:`medldm.solvers.psld`), which adds the
"gluing" term to the same loop through :meth:`LatentDPS.extra_loss`.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.inpainting import Inpainting
>>> physics = Inpainting(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5)
>>> y = physics(torch.rand(1, 1, 16, 16))
>>> rec = LatentDPS(n_steps=4, n_samples=1).solve(y, physics, tiny_prior())
>>> rec.nfe, rec.iterations, bool(torch.isfinite(rec.estimate).all())
(4, 4, True)
"""

from __future__ import annotations

import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import timestep_pairs
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import ensure_finite, progress_over
from medldm.solvers.ddim import ddim_update
from medldm.solvers.latent_base import LatentSolverBase
from medldm.solvers.latent_problem import LatentProblem


class LatentDPS(LatentSolverBase):
    """DPS in latent space (gradient of ``||y - A D(z0(z_t))||`` through the networks).

    Parameters
    ----------
    n_steps:
        Sampling steps (network evaluations per sample); the paper uses 1000.
    step_size:
        ``zeta``: the guidance step on ``grad ||y - A D(z0)||``.
    eta:
        Stochasticity of the unconditional update (1: DDPM-like ancestral sampling).
    n_samples, final_dc, final_dc_weight, final_dc_iter, normalization, phase, slice_axis, progress:
        As in :class:`~medldm.solvers.latent_dds.LatentDDS`.
    """

    name = "latent_dps"

    def __init__(
        self,
        n_steps: int = 1000,
        step_size: float = 1.0,
        eta: float = 1.0,
        n_samples: int = 4,
        final_dc: bool = True,
        final_dc_weight: float = 0.01,
        final_dc_iter: int = 30,
        normalization: str = "none",
        phase: str | None = "lowres",
        slice_axis: int = -1,
        progress: bool = False,
    ):
        self.n_steps = int(n_steps)
        self.step_size = float(step_size)
        self.eta = float(eta)
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

    @property
    def backpropagates(self) -> bool:
        """The guidance gradient goes through the decoder and the denoiser."""
        return True

    def extra_loss(
        self, problem: LatentProblem, z0: torch.Tensor, x0: torch.Tensor, n: int
    ) -> torch.Tensor | None:
        """An additional differentiable loss on ``z0``/``x0`` (PSLD's gluing term)."""
        return None

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
        pairs = timestep_pairs(prior.ddim_timesteps(self.n_steps))
        x0 = problem.repeat(problem.x_init, n)
        for step, (t, t_prev) in enumerate(progress_over(pairs, self.progress, self.name)):
            with torch.enable_grad():
                z = z.detach().requires_grad_(True)
                z0 = prior.predict_x0(z, t)
                x0 = problem.decode(z0)
                loss = problem.data_norm(x0, n).sum()
                extra = self.extra_loss(problem, z0, x0, n)
                if extra is not None:
                    loss = loss + extra
                grad = torch.autograd.grad(loss, z)[0]
            with torch.no_grad():
                z_next = ddim_update(prior, z, z0, t, t_prev, eta=self.eta, generator=generator)
                z = ensure_finite(z_next - self.step_size * grad, "latent", self.name)
            x0 = x0.detach()
            if callback is not None:
                callback(step, x0)
        with torch.no_grad():
            x = problem.decode(z)
        return self.end(
            problem,
            x,
            clock,
            iterations=len(pairs),
            info={"n_steps": self.n_steps, "step_size": self.step_size, "eta": self.eta},
        )
