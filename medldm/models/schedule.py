"""The noise schedule's arithmetic, written once: Tweedie's clean estimate, one DDIM step,
forward diffusion to a noise level, and the Gaussian draws they use.

Notation of the variance-preserving schedule the diffusion model was trained on:
``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps`` with ``a_t`` the cumulative signal fraction
(``alphas_cumprod[t]``, :meth:`medldm.models.prior.Prior.alpha_bar`). ``Prior.sample`` and
every latent solver (:mod:`medldm.solvers`) step through the schedule with these functions.

References
----------
J. Song, C. Meng, S. Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, eq. (12).

Example
-------
>>> import torch
>>> a_t, a_prev = torch.tensor(0.5), torch.tensor(0.9)
>>> z0, eps = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
>>> z_t = forward_diffuse(z0, a_t, eps)
>>> bool(torch.allclose(tweedie_x0(z_t, eps, a_t), z0))
True
>>> bool(torch.allclose(ddim_step(z_t, z0, a_t, a_prev), a_prev.sqrt() * z0))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medldm.errors import InvalidInputError


def tweedie_x0(z_t: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor) -> torch.Tensor:
    """Tweedie's estimate of the clean latent, ``(z_t - sqrt(1 - a_t) eps) / sqrt(a_t)``,
    given the predicted noise ``eps`` (``a_t`` broadcast against ``z_t``)."""
    return (z_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()


def ddim_sigma(a_t: torch.Tensor, a_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """Standard deviation of the fresh noise of a DDIM step from ``a_t`` to ``a_prev``:
    ``eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev))`` (``eta=1``: DDPM's)."""
    return eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()


def ddim_step(
    z_t: torch.Tensor,
    z0: torch.Tensor,
    a_t: torch.Tensor,
    a_prev: torch.Tensor,
    *,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM step from ``z_t`` (signal fraction ``a_t``) to the less noisy level
    ``a_prev``, given the clean estimate ``z0``:

    ``z' = sqrt(a_prev) z0 + sqrt(1 - a_prev - s^2) eps + s noise``, ``s`` = :func:`ddim_sigma`,

    where ``eps = (z_t - sqrt(a_t) z0) / sqrt(1 - a_t)`` is the noise re-derived from ``z0``
    (so a ``z0`` corrected by a data-consistency step moves the trajectory; for Tweedie's
    ``z0`` it is the network's prediction). ``noise`` (standard normal, shaped like ``z_t``)
    is required when ``eta > 0``; ``a_prev = 1`` gives ``z0``.
    """
    eps = (z_t - a_t.sqrt() * z0) / (1 - a_t).sqrt()
    sigma = ddim_sigma(a_t, a_prev, eta)
    z = a_prev.sqrt() * z0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
    if noise is not None:
        z = z + sigma * noise
    elif eta > 0:
        raise InvalidInputError(
            f"a DDIM step with eta={eta} needs standard normal noise",
            fix="pass noise=gaussian_like(z_t, generator)",
        )
    return z


def forward_diffuse(z0: torch.Tensor, a_t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The clean latent ``z0`` noised to level ``a_t``: ``sqrt(a_t) z0 + sqrt(1 - a_t) noise``."""
    return a_t.sqrt() * z0 + (1 - a_t).sqrt() * noise


def gaussian_like(tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``tensor`` (its dtype and device), drawn on
    ``generator``'s device, so a CPU generator gives the same numbers on CPU and GPU."""
    device = generator.device if generator is not None else tensor.device
    return torch.randn(tensor.shape, generator=generator, device=device).to(tensor)


def timestep_pairs(steps: Sequence[int]) -> list[tuple[int, int | None]]:
    """``[(t_0, t_1), ..., (t_last, None)]`` from a descending list of timesteps."""
    return [(t, steps[i + 1] if i + 1 < len(steps) else None) for i, t in enumerate(steps)]
