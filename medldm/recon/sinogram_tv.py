"""TV of measured sinograms (:class:`~medldm.solvers.tv.TotalVariation`, non-negative) on
the sinograms scaled so that the FBP's 99.5th percentile is 1: with a given weight
(:func:`tv_with_weight`), or by the discrepancy principle (:func:`tv_by_discrepancy`): the
largest weight of :data:`TV_WEIGHT_GRID` whose data residual stays within the noise
estimated from the sinogram's background (:func:`noise_sigma`).

Example
-------
>>> import torch
>>> from medldm.physics.ct import ParallelBeamCT, sparse_view_angles
>>> physics = ParallelBeamCT(16, sparse_view_angles(20), n_detectors=24)
>>> x = torch.zeros(1, 1, 16, 16); x[..., 5:11, 5:11] = 1.0
>>> y = physics.A(x)
>>> tv, candidates, info = tv_with_weight(y, physics, 1.0, 0.01, n_iter=20)
>>> tuple(tv.shape), info["rule"], residual_rms(physics, tv, y) < residual_rms(physics, 0 * x, y)
((1, 1, 16, 16), 'given (sinogram_tv_weight)', True)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io.raw_ct import ProjectionData

#: TV weights tried by the discrepancy principle (the sinogram scaled so that the FBP's
#: 99.5th percentile is 1).
TV_WEIGHT_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
TV_ITERATIONS = 500
#: PDHG's primal/dual balance for measured sinograms. The solver's default (10, for
#: 64 x 64 simulations) converges slowly on a 361-pixel micro-CT window: on the tooth
#: (2x-binned, weight 0.3) 300 iterations at 0.3 reach the objective of 1000 iterations
#: within 0.04 %, at 10 within 8 %. The ratio changes the speed, not the minimiser.
TV_STEP_RATIO = 0.3


def noise_sigma(scan: ProjectionData, window: np.ndarray, shadow: tuple[int, int]) -> np.ndarray:
    """Per-measurement noise standard deviation of the line integrals in ``window``.

    ``sigma_0`` from the background bins (more than 10 bins outside the object's shadow):
    the standard deviation of neighbouring-bin differences over ``sqrt(2)`` (insensitive to
    slow offsets); scaled by ``exp(p / 2)`` inside the object, as for photon-counting noise
    (``var(-log T) = 1 / (N_0 T)``). Raises when there is too little background."""
    low, high = shadow
    background = np.concatenate(
        [scan.sinograms[:, : max(0, low - 10)], scan.sinograms[:, high + 11 :]], axis=1
    )
    if background.shape[1] < 8:
        raise InvalidInputError(
            "the object fills the detector, so the noise cannot be measured from background",
            path=scan.path,
            fix="give the TV weight (sinogram_tv_weight=...)",
        )
    sigma_0 = float(np.std(np.diff(background, axis=1)) / math.sqrt(2))
    return sigma_0 * np.exp(np.clip(window, 0, None) / 2)


def noise_rms(scan: ProjectionData, window: np.ndarray, shadow: tuple[int, int]) -> float:
    """The root mean square of :func:`noise_sigma` over the window's measurements."""
    sigma = torch.from_numpy(noise_sigma(scan, window, shadow))
    return float(sigma.pow(2).mean().sqrt())


def tv_by_discrepancy(
    y: torch.Tensor, physics: Any, scale: float, noise: float, n_iter: int = TV_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(TV image, the images of every weight of the grid, how the weight was chosen)``:
    the largest weight of :data:`TV_WEIGHT_GRID` whose residual RMS stays within ``noise``
    (the sinograms divided by ``scale`` for the solve, the images multiplied back)."""
    candidates, change = tv_for_weights(
        y / scale, physics, TV_WEIGHT_GRID, n_iter, return_change=True
    )
    candidates = candidates * scale
    residuals = [residual_rms(physics, x, y) for x in candidates]
    fitting = [i for i, r in enumerate(residuals) if r <= noise]
    chosen = fitting[-1] if fitting else 0
    weight_info = {
        "weight": TV_WEIGHT_GRID[chosen],
        "rule": "discrepancy principle: the largest weight of the grid whose residual "
        "RMS stays within the estimated noise RMS"
        + ("" if fitting else " (none did: the smallest weight is used)"),
        "grid": list(TV_WEIGHT_GRID),
        "residual_rms_per_weight": residuals,
        "noise_rms_estimate": noise,
        "last_relative_change": change,
    }
    return candidates[chosen], candidates, weight_info


def tv_with_weight(
    y: torch.Tensor, physics: Any, scale: float, weight: float, n_iter: int = TV_ITERATIONS
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``(TV image, it as the only candidate, the weight's record)`` for a given weight."""
    from medldm.solvers.tv import TotalVariation

    solver = TotalVariation(
        weight=float(weight),
        n_iter=n_iter,
        constraint="nonnegative",
        step_ratio=TV_STEP_RATIO,
    )
    tv = solver.solve(y / scale, physics).estimate * scale
    return tv, tv[None], {"weight": float(weight), "rule": "given (sinogram_tv_weight)"}


def tv_for_weights(
    y: torch.Tensor,
    physics: Any,
    weights: list[float] | tuple[float, ...],
    n_iter: int = TV_ITERATIONS,
    *,
    return_change: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    """TV reconstructions of ``y`` ``(B, 1, n_det, n_views)`` for several weights in one
    batched PDHG run: ``(len(weights), B, 1, H, W)`` (and, with ``return_change``, the
    last iteration's relative change of the whole batch, a convergence check).

    TV is 1-homogeneous, so ``x`` minimises ``1/2 ||A x - a y||^2 + l TV(x)`` exactly when
    ``x / a`` minimises ``1/2 ||A z - y||^2 + (l / a) TV(z)``; with ``l`` the largest weight
    and ``a = l / w`` for each weight ``w``, one solve of the scaled copies gives every
    weight, with the same PDHG iterates (step sizes do not depend on the data) as separate
    solves. ``tol=0``: every copy runs ``n_iter`` iterations."""
    from medldm.solvers.tv import TotalVariation

    largest = max(weights)
    factors = torch.tensor([largest / w for w in weights], dtype=y.dtype, device=y.device)
    batch = (factors[:, None, None, None, None] * y[None]).reshape(-1, *y.shape[1:])
    solver = TotalVariation(
        weight=largest,
        n_iter=n_iter,
        constraint="nonnegative",
        step_ratio=TV_STEP_RATIO,
        tol=0.0,
    )
    reconstruction = solver.solve(batch, physics)
    estimate = reconstruction.estimate
    shaped = estimate.reshape(len(weights), *y.shape[:2], *estimate.shape[-2:])
    estimates = shaped / factors[:, None, None, None, None]
    if return_change:
        return estimates, float(reconstruction.info["relative_change"])
    return estimates


def residual_rms(physics: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root mean square of ``A x - y`` (the units of ``y``)."""
    with torch.no_grad():
        return float((physics.A(x) - y).pow(2).mean().sqrt())
