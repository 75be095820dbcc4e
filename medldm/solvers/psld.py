"""PSLD: Posterior Sampling with Latent Diffusion (Rout et al., NeurIPS 2023).

Latent DPS plus a "gluing" term that asks the latent to be a fixed point of
decode -> enforce the measurement -> encode, so the decoder's output does not drift off
the data manifold::

    for t, t' in the schedule:
        z0  = Tweedie(z_t);  x0 = D(z0)
        z_t' = DDIM/DDPM update of z_t with z0
        z_t' -= omega * grad_{z_t} ||y - A x0||                                   # DPS
        z_t' -= gamma * grad_{z_t} ||z0 - E(A^T y + (I - A^T A) x0)||             # gluing
    x = D(z_0) (+ optional final data consistency)

``A^T y + (I - A^T A) x0`` replaces the measured part of ``x0`` by the measurement when
``A^T A`` is a projection (inpainting, single-coil Cartesian MRI). For other operators
(CT, multi-coil MRI, deblurring) medldm uses the same expression with ``A^T A`` scaled by
``1/||A^T A||`` — one Landweber step towards the data — which reduces to the paper's
formula for projections.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.inpainting import Inpainting
>>> physics = Inpainting(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5)
>>> y = physics(torch.rand(1, 1, 16, 16))
>>> rec = PSLD(n_steps=3, n_samples=1).solve(y, physics, tiny_prior())
>>> rec.nfe, bool(torch.isfinite(rec.estimate).all())
(3, True)
"""

from __future__ import annotations

from typing import Any

import torch

from medldm.solvers.latent_dps import LatentDPS
from medldm.solvers.latent_problem import LatentProblem


class PSLD(LatentDPS):
    """Latent DPS + PSLD's gluing term (weight ``gluing_weight`` = ``gamma / omega``).

    Parameters
    ----------
    gluing_weight:
        ``gamma`` relative to the DPS step ``omega`` (``step_size``); the paper's
        defaults are ``omega = 1``, ``gamma = 0.1``.
    Other parameters: as :class:`~medldm.solvers.latent_dps.LatentDPS`.
    """

    name = "psld"

    def __init__(self, *args: Any, gluing_weight: float = 0.1, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.gluing_weight = float(gluing_weight)

    def extra_loss(
        self, problem: LatentProblem, z0: torch.Tensor, x0: torch.Tensor, n: int
    ) -> torch.Tensor:
        physics = problem.physics_for(n)
        y = problem.repeat(problem.y, n)
        glued = x0 + physics.A_adjoint(y - physics.A(x0)) / problem.normal_scale
        if glued.is_complex():
            glued = glued.real
        distance = torch.linalg.vector_norm((z0 - problem.encode(glued)).flatten(1), dim=1)
        return self.gluing_weight * distance.sum()
