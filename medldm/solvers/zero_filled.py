"""The direct reconstruction ``physics.x_init(y)``: ``x = A^H y`` (zero-filled for MRI and
inpainting), or filtered back-projection for physics that declare it (CT).

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
from typing import ClassVar

import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import FILTERED_BACKPROJECTION, LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish


class ZeroFilled:
    """``physics.x_init(y)``: ``A^H y``, or FBP for CT. Deterministic; ``prior`` is ignored."""

    name = "zero_filled"
    requires: ClassVar[frozenset[str]] = frozenset()

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
        started = time.perf_counter()
        x = physics.x_init(y)
        if callback is not None:
            callback(0, x)
        method = "fbp" if FILTERED_BACKPROJECTION in physics.capabilities else "adjoint"
        return finish(x, y, physics, iterations=0, started=started, info={"method": method})
