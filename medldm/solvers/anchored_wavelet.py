"""A data-consistent solve anchored at an estimate, with wavelet sparsity instead of TV:

    x* = argmin_{x >= 0} 1/2 ||A x - y||^2 + lam/2 ||x - anchor||^2 + w ||W x||_1,
    lam = weight * ||A^H A||,

by FISTA (:class:`~medldm.solvers.l1_wavelet.L1Wavelet` on the stacked operator
``[A; sqrt(lam) I]``, :class:`~medldm.physics.anchored.AnchoredPhysics`), ``W`` a 2-level
Haar transform with cycle spinning whose coarse band is thresholded too (the setting the
single-coil ``l1_wavelet_mri_{4x,8x}_native`` presets chose on clinical slices). Beside
:mod:`medldm.solvers.anchored_tv`, the same last step after a prior's estimate: where TV
leaves a low haze of aliasing residue in the air around a head (an estimate a few hundredths
of the range above a background that is zero), soft thresholding takes it to zero, and the
anchor keeps the prior's detail in the head. ``weight`` is relative to ``||A^H A||``;
``wavelet_weight`` is in the units of the ``l1_wavelet`` presets' ``weight``.

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> mask = torch.zeros(1, 1, 16, 16); mask[..., ::2] = 1
>>> truth = torch.zeros(1, 1, 16, 16); truth[..., 4:12, 4:12] = 1.0
>>> haze = truth + 0.03 * (truth == 0)  # the anchor: right object, grey background
>>> x = anchored_l1_wavelet(Inpainting(mask).A(truth), Inpainting(mask), haze, 0.01, 0.01)
>>> bool(x[truth == 0].abs().mean() < 0.5 * haze[truth == 0].mean())  # the haze is gone
True
"""

from __future__ import annotations

import torch

from medldm.physics.anchored import AnchoredPhysics
from medldm.physics.base import LinearPhysics

#: The wavelet setting of the anchored step (that of the single-coil native l1-wavelet presets).
WAVELET = {"wavelet": "haar", "levels": 2, "random_shift": True, "threshold_coarse": True}


@torch.no_grad()
def anchored_l1_wavelet(
    y: torch.Tensor,
    physics: LinearPhysics,
    anchor: torch.Tensor,
    weight: float,
    wavelet_weight: float,
    *,
    n_iter: int = 100,
    normal_scale: float | None = None,
) -> torch.Tensor:
    """``x*`` of the module docstring (real, non-negative, shaped like ``anchor``).

    ``normal_scale`` is ``||A^H A||`` when the caller knows it; else it is computed by
    power iteration. The cycle-spinning shifts are drawn from a fixed seed, so the step is
    deterministic.
    """
    from medldm.solvers.l1_wavelet import L1Wavelet

    stacked = AnchoredPhysics.relative(physics, weight, anchor, tuple(y.shape), normal_scale)
    solver = L1Wavelet(wavelet_weight, n_iter, constraint="nonnegative", **WAVELET)
    shifts = torch.Generator(device=anchor.device).manual_seed(0)
    return solver.solve(stacked.measurement(y), stacked, generator=shifts).estimate
