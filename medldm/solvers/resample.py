"""ReSample: hard data consistency with stochastic resampling (Song et al., ICLR 2024,
"Solving Inverse Problems with Latent Diffusion Models via Hard Data Consistency").

DDIM sampling in latent space where, at chosen steps, the Tweedie estimate is replaced by
one that *fits the measurement* (hard data consistency, by optimisation), and the next
latent is then re-drawn around it (stochastic resampling) so the trajectory stays on the
noisy manifold::

    for t, t' in the DDIM schedule:
        z0 = Tweedie(z_t)
        z_t'(uncond) = DDIM update of z_t with z0
        if t is a data-consistency step (every ``skip`` steps inside ``dc_window``):
            latent mode: z0_y = argmin_z ||y - A D(z)||^2 from z0   (``latent_iter`` Adam steps)
            pixel mode:  z0_y = E(argmin_x ||A x - y||^2 + lam ||x - D(z0)||^2)   (CG)
            s^2 = gamma (1 - a_t') / a_t (1 - a_t / a_t')
            z_t' ~ N((s^2 sqrt(a_t') z0_y + (1 - a_t') z_t'(uncond)) / (s^2 + 1 - a_t'),
                     s^2 (1 - a_t') / (s^2 + 1 - a_t') I)                   # resampling
    x = D(z_0) (+ optional final data consistency)

The paper optimises in pixel space early (cheap, robust) and in latent space late; here
``mode="both"`` does the pixel step and then ``latent_iter`` latent steps from it.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.inpainting import Inpainting
>>> physics = Inpainting(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5)
>>> y = physics(torch.rand(1, 1, 16, 16))
>>> rec = ReSample(n_steps=4, skip=2, dc_window=(0.0, 1.0), latent_iter=2,
...                n_samples=1).solve(y, physics, tiny_prior())
>>> rec.nfe, rec.info["dc_steps"]
(4, 2)
"""

from __future__ import annotations

import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import gaussian_like, timestep_pairs
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import ensure_finite, progress_over
from medldm.solvers.ddim import ddim_update
from medldm.solvers.latent_base import LatentSolverBase
from medldm.solvers.latent_problem import LatentProblem


class ReSample(LatentSolverBase):
    """Latent DDIM with hard data consistency at chosen steps and stochastic resampling.

    Parameters
    ----------
    n_steps:
        DDIM steps (network evaluations per sample); the paper uses 500.
    skip:
        Data consistency every ``skip`` steps ...
    dc_window:
        ... while ``t / T`` lies in this ``(low, high)`` range.
    mode:
        ``"pixel"``, ``"latent"`` or ``"both"`` (see the module).
    dc_weight, cg_iter:
        Pixel step: proximal weight relative to ``||A^H A||`` and CG iterations.
    latent_iter, latent_lr:
        Latent step: Adam iterations and learning rate on ``||y - A D(z)||^2``.
    gamma:
        Resampling variance scale (the paper's ``gamma``, 40 in their code).
    n_samples, final_dc, final_dc_weight, final_dc_iter, normalization, phase, slice_axis, progress:
        As in :class:`~medldm.solvers.latent_dds.LatentDDS`.
    """

    name = "resample"

    def __init__(
        self,
        n_steps: int = 500,
        skip: int = 10,
        dc_window: tuple[float, float] = (0.0, 0.7),
        mode: str = "both",
        dc_weight: float = 0.05,
        cg_iter: int = 10,
        latent_iter: int = 20,
        latent_lr: float = 0.01,
        gamma: float = 40.0,
        n_samples: int = 4,
        final_dc: bool = True,
        final_dc_weight: float = 0.01,
        final_dc_iter: int = 30,
        normalization: str = "none",
        phase: str | None = "lowres",
        slice_axis: int = -1,
        progress: bool = False,
    ):
        if mode not in ("pixel", "latent", "both"):
            raise InvalidInputError(
                f"unknown ReSample mode {mode!r}", fix="use 'pixel', 'latent' or 'both'"
            )
        self.n_steps = int(n_steps)
        self.skip = max(1, int(skip))
        self.dc_window = (float(dc_window[0]), float(dc_window[1]))
        self.mode = mode
        self.dc_weight = float(dc_weight)
        self.cg_iter = int(cg_iter)
        self.latent_iter = int(latent_iter)
        self.latent_lr = float(latent_lr)
        self.gamma = float(gamma)
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
        """The latent-mode step optimises through the decoder."""
        return self.mode in ("latent", "both") and self.latent_iter > 0

    def hard_data_consistency(
        self, problem: LatentProblem, z0: torch.Tensor, n: int
    ) -> torch.Tensor:
        """A latent near ``z0`` whose decoding fits the measurement."""
        if self.mode in ("pixel", "both"):
            with torch.no_grad():
                x = problem.data_consistency(
                    problem.decode(z0), self.dc_weight, n_iter=self.cg_iter, n=n
                )
                z0 = problem.encode(x)
        if self.mode in ("latent", "both") and self.latent_iter > 0:
            z = z0.detach().clone().requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=self.latent_lr)
            with torch.enable_grad():
                for _ in range(self.latent_iter):
                    optimizer.zero_grad()
                    problem.data_loss(problem.decode(z), n).backward()
                    optimizer.step()
            z0 = z.detach()
        return z0

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
        pairs = timestep_pairs(prior.ddim_timesteps(self.n_steps))
        total = prior.num_train_timesteps
        dc_steps = 0
        for step, (t, t_prev) in enumerate(progress_over(pairs, self.progress, self.name)):
            z0 = prior.predict_x0(z, t)
            z_next = ddim_update(prior, z, z0, t, t_prev, eta=0.0)
            low, high = self.dc_window
            if t_prev is not None and step % self.skip == 0 and low <= t / total <= high:
                z0_y = self.hard_data_consistency(problem, z0, n)
                a_t, a_prev = prior.alpha_bar(t), prior.alpha_bar(t_prev)
                s2 = self.gamma * (1 - a_prev) / a_t * (1 - a_t / a_prev)
                mean = (s2 * a_prev.sqrt() * z0_y + (1 - a_prev) * z_next) / (s2 + 1 - a_prev)
                variance = s2 * (1 - a_prev) / (s2 + 1 - a_prev)
                z_next = mean + variance.sqrt() * gaussian_like(mean, generator)
                dc_steps += 1
            z = ensure_finite(z_next, "latent", self.name)
            if callback is not None:
                callback(step, problem.decode(z0))
        x = problem.decode(z)
        return self.end(
            problem,
            x,
            clock,
            iterations=len(pairs),
            info={
                "n_steps": self.n_steps,
                "mode": self.mode,
                "dc_steps": dc_steps,
                "gamma": self.gamma,
            },
        )
