"""The DDIM step on a prior's noise schedule, as the latent solvers take it: from timestep
``t`` to ``t_prev`` given a (possibly data-corrected) clean latent ``z0``.

The arithmetic is :func:`medldm.models.schedule.ddim_step` (shared with
:meth:`medldm.models.prior.Prior.sample`); this adapter looks up the signal fractions of the
two timesteps and draws the noise from the solver's generator.

Example
-------
>>> import torch
>>> from medldm.models.testing import tiny_prior
>>> prior = tiny_prior()
>>> z_t, z0 = torch.randn(1, 4, 4, 4), torch.zeros(1, 4, 4, 4)
>>> tuple(ddim_update(prior, z_t, z0, 999, 500).shape)
(1, 4, 4, 4)
>>> bool(torch.equal(ddim_update(prior, z_t, z0, 20, None), z0))
True
"""

from __future__ import annotations

import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import ddim_step, gaussian_like


def ddim_update(
    prior: LatentPrior,
    z_t: torch.Tensor,
    z0: torch.Tensor,
    t: int,
    t_prev: int | None,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from ``z_t`` to ``z_{t_prev}`` given the clean estimate ``z0`` (the
    noise is re-derived from ``z0``, so a corrected ``z0`` moves the trajectory);
    ``t_prev=None`` (the last step) returns ``z0``. ``eta=0`` is deterministic, ``eta=1``
    DDPM-like; the fresh noise comes from ``generator``."""
    if t_prev is None:
        return z0
    noise = gaussian_like(z_t, generator) if eta > 0 else None
    return ddim_step(z_t, z0, prior.alpha_bar(t), prior.alpha_bar(t_prev), eta=eta, noise=noise)
