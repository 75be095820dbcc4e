"""The operator norm ``||A||`` (largest singular value) by power iteration, cached.

Power iteration on ``A^H A`` from a fixed-seed random start, so the estimate is the same
on every run. The value is cached per physics object (weakly: it goes when the physics
does), input shape, dtype and device; a physics whose parameters change in place should be
rebuilt rather than reused.

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Scale(LinearPhysics):
...     def A(self, x): return 3 * x
...     def A_adjoint(self, y): return 3 * y
>>> round(operator_norm(Scale(), (1, 1, 8, 8)), 4)
3.0
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch

_CACHE: weakref.WeakKeyDictionary[Any, dict[tuple, float]] = weakref.WeakKeyDictionary()


def _random_start(shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    real_dtype = torch.empty((), dtype=dtype).real.dtype
    x = torch.randn(tuple(shape), generator=generator, dtype=real_dtype)
    if dtype.is_complex:
        x = torch.complex(x, torch.randn(tuple(shape), generator=generator, dtype=real_dtype))
    return x.to(device=device, dtype=dtype)


def operator_norm(
    physics: Any,
    x_shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    n_iter: int = 100,
    tol: float = 1e-5,
) -> float:
    """``||A||_2`` for inputs of shape ``x_shape`` (``(B, C, *spatial)``) and ``dtype``.

    Stops when the estimate of ``||A||^2`` changes by less than ``tol`` (relative). Power
    iteration approaches the norm from below; callers that need a bound add a margin.
    """
    device = torch.device(device)
    key = (tuple(int(n) for n in x_shape), dtype, str(device))
    try:
        cached = _CACHE.setdefault(physics, {})
    except TypeError:  # not weak-referenceable: no cache
        cached = {}
    if key in cached:
        return cached[key]
    with torch.no_grad():
        x = _random_start(x_shape, dtype, device)
        x = x / torch.linalg.vector_norm(x)
        squared_norm = 0.0
        for _ in range(int(n_iter)):
            z = physics.A_AH(x)  # A^H A x
            new_squared_norm = float(torch.linalg.vector_norm(z))
            if new_squared_norm == 0:
                break
            x = z / new_squared_norm
            converged = abs(new_squared_norm - squared_norm) <= tol * new_squared_norm
            squared_norm = new_squared_norm
            if converged:
                break
    value = squared_norm**0.5
    cached[key] = value
    return value
