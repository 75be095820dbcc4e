"""What every latent-diffusion solver does around its paper-specific main loop: the common
options, :meth:`LatentSolverBase.begin` (checks, the problem, the starting noise) and
:meth:`LatentSolverBase.end` (final data consistency, samples, std, residuals, NFE and
time in a :class:`~medldm.solvers.base.Reconstruction`).

Example
-------
>>> from medldm.solvers.latent_dds import LatentDDS
>>> from medldm.solvers.latent_daps import LatentDAPS
>>> LatentDDS(n_steps=20).nfe_per_sample, LatentDAPS(n_anneal=10, n_ode=3).nfe_per_sample
(20, 30)
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import gaussian_like
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Reconstruction
from medldm.solvers.latent_problem import LatentProblem


def check_prior(prior: Any, solver: str) -> LatentPrior:
    """``prior``, or a clear error when an LDM solver runs without a trained prior."""
    if prior is None or not isinstance(prior, LatentPrior):
        raise InvalidInputError(
            f"the {solver} solver needs a trained LDM prior",
            fix="pass prior=<name or checkpoint folder> (e.g. prior=brain_t1_2d), see "
            "medldm.models.load_prior",
        )
    if not prior.has_diffusion_model:
        raise InvalidInputError(
            f"the prior at {getattr(prior, 'path', '?')} has no diffusion model",
            fix="train the diffusion stage (medldm-train-diffusion) or use a shipped prior",
        )
    return prior


class LatentSolverBase:
    """The shared part of the LDM solvers (see the module).

    Attributes
    ----------
    requires:
        Physics capabilities needed beyond ``A`` and ``A^H``: none.
    nfe_per_sample:
        Network evaluations per posterior sample (``n_steps``; solvers with another
        schedule override it), for time estimates before a run.
    backpropagates:
        Whether the steps differentiate through the networks (about three times the time
        and memory of a forward pass); ``False`` unless a solver says otherwise.
    schedule_option:
        The option that sets the length of the solver's outer loop (``n_steps``; LatentDAPS:
        ``n_anneal``): the cost grows linearly with it, so a dry run times short runs and
        extrapolates (:mod:`medldm.recon.estimate`).
    """

    name = "latent"
    requires: ClassVar[frozenset[str]] = frozenset()
    schedule_option: ClassVar[str] = "n_steps"
    n_steps: int

    @property
    def nfe_per_sample(self) -> int:
        return int(self.n_steps)

    @property
    def backpropagates(self) -> bool:
        return False

    def _set_common(
        self,
        *,
        n_samples: int,
        final_dc: bool,
        final_dc_weight: float,
        final_dc_iter: int,
        normalization: str,
        phase: str | None,
        slice_axis: int,
        progress: bool,
        final_tv_weight: float = 0.0,
        final_wavelet_weight: float = 0.0,
    ) -> None:
        self.n_samples = int(n_samples)
        self.final_dc = bool(final_dc)
        self.final_dc_weight = float(final_dc_weight)
        self.final_dc_iter = int(final_dc_iter)
        if not (final_tv_weight >= 0 and final_wavelet_weight >= 0):  # NaN fails too
            raise InvalidInputError(
                f"final_tv_weight and final_wavelet_weight must be >= 0, got "
                f"{final_tv_weight} and {final_wavelet_weight}"
            )
        if final_tv_weight > 0 and final_wavelet_weight > 0:
            raise InvalidInputError(
                "the final step takes TV or wavelets, not both: got final_tv_weight="
                f"{final_tv_weight}, final_wavelet_weight={final_wavelet_weight}",
                fix="set one of them to 0",
            )
        self.final_tv_weight = float(final_tv_weight)
        self.final_wavelet_weight = float(final_wavelet_weight)
        self.normalization = normalization
        self.phase = phase
        self.slice_axis = int(slice_axis)
        self.progress = bool(progress)

    def begin(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        prior: LatentPrior | None,
        generator: torch.Generator | None,
    ) -> tuple[LatentProblem, torch.Tensor, tuple[float, int]]:
        """``(problem, z_T noise for n_samples copies, clock)`` after checking the prior."""
        prior = check_prior(prior, self.name)
        clock = (time.perf_counter(), prior.nfe)
        problem = LatentProblem(
            y,
            physics,
            prior,
            normalization=self.normalization,
            phase=self.phase,
            slice_axis=self.slice_axis,
        )
        shape = problem.latent_shape(self.n_samples)
        noise = gaussian_like(torch.empty(shape, device=prior.device), generator)
        return problem, noise, clock

    def end(
        self,
        problem: LatentProblem,
        x: torch.Tensor,
        clock: tuple[float, int],
        *,
        iterations: int,
        info: dict[str, Any],
    ) -> Reconstruction:
        started, nfe_before = clock
        return problem.reconstruction(
            x,
            solver=self.name,
            started=started,
            nfe=problem.prior.nfe - nfe_before,
            iterations=iterations,
            final_dc=self.final_dc,
            final_dc_weight=self.final_dc_weight,
            final_dc_iter=self.final_dc_iter,
            final_tv_weight=self.final_tv_weight,
            final_wavelet_weight=self.final_wavelet_weight,
            info=info,
        )
