"""Latent DDS: fast DDIM sampling in latent space with image-space data consistency.

Our latent version of Decomposed Diffusion Sampling (DDS; Chung, Lee & Ye, "Decomposed
Diffusion Sampler for Accelerating Large-Scale Inverse Problems", ICLR 2024). DDS observes
that the Tweedie estimate ``x0(x_t)`` lies near the clean-data manifold, so a few conjugate
gradient steps on the data term started *from* it stay near the manifold — no
back-propagation through the network is needed. Carried to a latent prior::

    z_T ~ N(0, I)
    for t, t' in the DDIM schedule (at most ~50 steps):
        z0  = (z_t - sqrt(1 - a_t) eps(z_t, t)) / sqrt(a_t)                  # Tweedie
        x0  = D(z0)                                                           # decode
        x0  = argmin_x ||A x - y||^2 + lam ||x - x0||^2   (a few CG steps)    # data fit
        z0  = E(x0)                                                           # re-encode
        z_t' = sqrt(a_t') z0 + sqrt(1 - a_t' - s^2) eps_hat + s noise          # DDIM, eta
    x = the last data-consistent x0, then an optional final CG data-consistency step
    (and optionally a TV-regularised one on the posterior mean, ``final_tv_weight``).

The CG step runs in image space on the real physics (k-space lines, sinogram, mask,
PSF), so no Jacobian of the decoder is ever formed: one network evaluation per step.
For a volume with a 2D prior, the slices are denoised as a batch and the CG step couples
them with a quadratic smoothness term along the slice axis (``slice_weight``) or, as
DiffusionMBIR's through-plane regulariser, total variation along it (``slice_tv_weight``,
ADMM: :mod:`medldm.solvers.slice_tv`). ``n_samples`` posterior
samples (different ``z_T`` and DDIM noise) give the mean and a pixel-wise std.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.inpainting import Inpainting
>>> mask = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5
>>> physics = Inpainting(mask)
>>> y = physics(torch.rand(1, 1, 16, 16))
>>> rec = LatentDDS(n_steps=5, n_samples=2).solve(y, physics, tiny_prior())
>>> rec.nfe, tuple(rec.std.shape), tuple(rec.samples.shape)
(5, (1, 1, 16, 16), (2, 1, 1, 16, 16))
"""

from __future__ import annotations

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import forward_diffuse, timestep_pairs
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import ensure_finite, progress_over
from medldm.solvers.ddim import ddim_update
from medldm.solvers.dpm_solver import dpm_solver_update
from medldm.solvers.latent_base import LatentSolverBase

#: The samplers :class:`LatentDDS` steps through the schedule with.
SAMPLERS = ("ddim", "dpm++2m")


class LatentDDS(LatentSolverBase):
    """DDIM in latent space + image-space CG data consistency at each step (no backprop).

    Parameters
    ----------
    n_steps:
        DDIM steps (= network evaluations per sample).
    dc_weight:
        ``lam`` of the CG step, relative to ``||A^H A||``: small trusts the data.
    cg_iter:
        CG iterations per step.
    eta:
        DDIM stochasticity (0 deterministic, 1 DDPM-like).
    n_samples:
        Posterior samples; their mean is the estimate, their std the uncertainty map.
    final_dc, final_dc_weight, final_dc_iter:
        The last data-consistency step on each sample (CG, proximal weight relative to
        ``||A^H A||``).
    final_tv_weight:
        When > 0, the posterior mean then goes through a TV-regularised data-consistency
        step anchored at it (``1/2||Ax-y||^2 + lam/2||x-mean||^2 + tv TV(x)``, PDHG); 0
        (default) keeps the plain LDM estimate. Reported in ``info``.
    final_wavelet_weight:
        Instead of TV (not beside it), when > 0: the same anchored step with wavelet
        sparsity (:mod:`medldm.solvers.anchored_wavelet`; in the ``l1_wavelet`` presets'
        units), which takes the aliasing haze in the air around a head to zero.
    start_fraction:
        1 (default): start from pure noise at ``t = T``; below 1: start at
        ``t = start_fraction T`` from the direct reconstruction (zero-filled / FBP), encoded
        and noised to that level ("come closer, diffuse faster", Chung et al. 2022), so
        fewer steps are spent on what the measurement already tells.
    start_tv_weight:
        With ``start_fraction < 1``: when > 0, start from the TV reconstruction with this
        weight (``argmin_{x >= 0} 1/2||Ax-y||^2 + tv TV(x)``, PDHG, as the
        ``tv_<operator>`` presets) instead of the direct one, so that the prior refines
        the best classical estimate rather than an aliased or streaked one (0: the
        direct reconstruction).
    slice_weight:
        Quadratic coupling of neighbouring slices in the CG step (volumes, 2D prior).
    slice_tv_weight:
        When > 0, total variation along the slice axis couples neighbouring slices in each
        data-consistency step instead (relative to ``||A^H A||``; volumes, 2D prior).
    sampler:
        How the latent moves to the next noise level given the data-consistent clean
        latent: ``"ddim"`` (default; :func:`~medldm.solvers.ddim.ddim_update`) or
        ``"dpm++2m"`` (DPM-Solver++(2M), second order from the previous step's clean
        latent, same cost per step: :func:`~medldm.solvers.dpm_solver.dpm_solver_update`,
        ``eta`` its SDE stochasticity), which needs fewer steps for the same quality.
    normalization, phase, slice_axis:
        See :class:`~medldm.solvers.latent_problem.LatentProblem`.
    progress:
        Show a tqdm progress bar.
    """

    name = "latent_dds"

    def __init__(
        self,
        n_steps: int = 50,
        dc_weight: float = 0.05,
        cg_iter: int = 5,
        eta: float = 0.5,
        n_samples: int = 4,
        final_dc: bool = True,
        final_dc_weight: float = 0.01,
        final_dc_iter: int = 30,
        final_tv_weight: float = 0.0,
        final_wavelet_weight: float = 0.0,
        slice_weight: float = 0.0,
        slice_tv_weight: float = 0.0,
        start_fraction: float = 1.0,
        start_tv_weight: float = 0.0,
        sampler: str = "ddim",
        normalization: str = "none",
        phase: str | None = "lowres",
        slice_axis: int = -1,
        progress: bool = False,
    ):
        self.n_steps = int(n_steps)
        self.dc_weight = float(dc_weight)
        self.cg_iter = int(cg_iter)
        self.eta = float(eta)
        self.slice_weight = float(slice_weight)
        if float(slice_tv_weight) < 0.0:
            raise InvalidInputError(f"slice_tv_weight must be >= 0, got {slice_tv_weight}")
        self.slice_tv_weight = float(slice_tv_weight)
        if not 0.0 < float(start_fraction) <= 1.0:
            raise InvalidInputError(f"start_fraction must be in (0, 1], got {start_fraction}")
        self.start_fraction = float(start_fraction)
        if float(start_tv_weight) < 0.0:
            raise InvalidInputError(f"start_tv_weight must be >= 0, got {start_tv_weight}")
        self.start_tv_weight = float(start_tv_weight)
        if sampler not in SAMPLERS:
            raise InvalidInputError(
                f"unknown sampler {sampler!r}", fix=f"use one of {list(SAMPLERS)}"
            )
        self.sampler = sampler
        self._set_common(
            n_samples=n_samples,
            final_dc=final_dc,
            final_dc_weight=final_dc_weight,
            final_dc_iter=final_dc_iter,
            normalization=normalization,
            phase=phase,
            slice_axis=slice_axis,
            progress=progress,
            final_tv_weight=final_tv_weight,
            final_wavelet_weight=final_wavelet_weight,
        )

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
        x0 = problem.repeat(problem.x_init, n)
        steps = prior.ddim_timesteps(self.n_steps)
        if self.start_fraction < 1.0:  # start from a noised reconstruction (CCDF)
            if self.start_tv_weight > 0.0:
                x0 = problem.repeat(problem.tv_reconstruction(self.start_tv_weight), n)
            t_start = round(self.start_fraction * (prior.num_train_timesteps - 1))
            steps = [int(t) for t in np.linspace(t_start, 0, self.n_steps).round()]
            z = forward_diffuse(problem.encode(x0), prior.alpha_bar(t_start), z)
        pairs = timestep_pairs(steps)
        previous: tuple[torch.Tensor, int] | None = None  # the last step's clean latent
        for step, (t, t_prev) in enumerate(progress_over(pairs, self.progress, self.name)):
            z0 = prior.predict_x0(z, t)
            x0 = problem.data_consistency(
                problem.decode(z0),
                self.dc_weight,
                n_iter=self.cg_iter,
                n=n,
                slice_weight=self.slice_weight,
                slice_tv_weight=self.slice_tv_weight,
            )
            if callback is not None:
                callback(step, x0)
            if t_prev is None:  # the last step: x0 is the sample, its latent is not needed
                break
            z0 = problem.encode(x0)
            z = ensure_finite(
                self._next(prior, z, z0, t, t_prev, previous, generator), "latent", self.name
            )
            previous = (z0, t)
        return self.end(
            problem,
            x0,
            clock,
            iterations=len(pairs),
            info={
                "n_steps": self.n_steps,
                "dc_weight": self.dc_weight,
                "eta": self.eta,
                "start_fraction": self.start_fraction,
                "start_tv_weight": self.start_tv_weight,
                "sampler": self.sampler,
                "slice_tv_weight": self.slice_tv_weight,
            },
        )

    def _next(
        self,
        prior: LatentPrior,
        z: torch.Tensor,
        z0: torch.Tensor,
        t: int,
        t_prev: int | None,
        previous: tuple[torch.Tensor, int] | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """The latent at ``t_prev`` by the chosen sampler, from the data-consistent ``z0``."""
        if self.sampler == "ddim":
            return ddim_update(prior, z, z0, t, t_prev, eta=self.eta, generator=generator)
        z0_previous, t_previous = previous if previous is not None else (None, None)
        return dpm_solver_update(
            prior, z, z0, z0_previous, t, t_prev, t_previous, eta=self.eta, generator=generator
        )
