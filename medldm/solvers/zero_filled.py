"""The direct reconstruction: ``x = A^H y`` (zero-filled for MRI and inpainting), or
filtered back-projection when the physics has one (CT).

No regularisation, no iterations: the baseline every other solver must beat. The estimate
keeps the operator's dtype (complex for MRI); benchmarks compare magnitudes.

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class KeepLeftHalf(LinearPhysics):
...     def A(self, x): return x * torch.tensor([1.0, 0.0])
...     def A_adjoint(self, y): return y * torch.tensor([1.0, 0.0])
>>> x = torch.tensor([[[[3.0, 5.0]]]])
>>> ZeroFilled().solve(KeepLeftHalf().A(x), KeepLeftHalf()).estimate
tensor([[[[3., 0.]]]])
"""

from __future__ import annotations

import time
from typing import Any

import torch

from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish, has_fbp, initial_estimate


class ZeroFilled:
    """``A^H y``, or ``physics.fbp(y)`` for CT. Deterministic; ``prior`` is ignored."""

    name = "zero_filled"

    @torch.no_grad()
    def solve(
        self,
        y: torch.Tensor,
        physics: Any,
        prior: Any = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Reconstruction:
        started = time.perf_counter()
        x = initial_estimate(y, physics)
        if callback is not None:
            callback(0, x)
        method = "fbp" if has_fbp(physics) else "adjoint"
        return finish(x, y, physics, iterations=0, started=started, info={"method": method})
