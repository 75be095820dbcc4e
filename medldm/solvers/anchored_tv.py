"""A data-consistent solve anchored at an estimate: the last step after a prior's estimate.

    x* = argmin_{x >= 0} 1/2 ||A x - y||^2 + lam/2 ||x - anchor||^2 + tv TV(x),
    lam = weight * ||A^H A||,

by PDHG (:class:`~medldm.solvers.tv.TotalVariation` on the stacked operator
``[A; sqrt(lam) I]``, :class:`~medldm.physics.anchored.AnchoredPhysics`). The anchor carries
the prior; the data term pulls the measured components back to the measurement; TV removes
the noise-like residue in what neither determines. ``weight`` is relative to ``||A^H A||``,
so one value suits operators of any scale (as the ``final_dc_weight`` of the latent
presets).

Two users: the latent solvers' final step around the posterior mean
(:meth:`medldm.solvers.latent_problem.LatentProblem.tv_data_consistency`), and the
measured-data path, where the prior ran on another grid than the measurement's: there the
anchor is the prior's estimate brought to the measured grid, and the solve restores what
the measured grid holds beyond the prior's grid (``medldm.recon.measured``).

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> mask = torch.zeros(1, 1, 8, 8); mask[..., ::2] = 1
>>> physics = Inpainting(mask)
>>> truth = torch.rand(1, 1, 8, 8)
>>> x = anchored_tv(physics.A(truth), physics, torch.zeros(1, 1, 8, 8), 0.01, 0.0, n_iter=300)
>>> bool(torch.allclose((x * mask), (truth * mask), atol=0.05))  # measured pixels kept
True
"""

from __future__ import annotations

import torch

from medldm.physics.anchored import AnchoredPhysics
from medldm.physics.base import LinearPhysics


@torch.no_grad()
def anchored_tv(
    y: torch.Tensor,
    physics: LinearPhysics,
    anchor: torch.Tensor,
    weight: float,
    tv_weight: float,
    *,
    n_iter: int = 200,
    normal_scale: float | None = None,
) -> torch.Tensor:
    """``x*`` of the module docstring (real, non-negative, shaped like ``anchor``).

    ``normal_scale`` is ``||A^H A||`` when the caller knows it; else it is computed by
    power iteration (:meth:`~medldm.physics.base.LinearPhysics.norm`).
    """
    from medldm.solvers.tv import TotalVariation

    stacked = AnchoredPhysics.relative(physics, weight, anchor, tuple(y.shape), normal_scale)
    solver = TotalVariation(tv_weight, n_iter, constraint="nonnegative", preconditioning="scalar")
    return solver.solve(stacked.measurement(y), stacked).estimate
