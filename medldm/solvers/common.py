"""Small helpers shared by the classical solvers: the starting image, the progress bar,
and packing the result into a :class:`~medldm.solvers.base.Reconstruction`.

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Identity(LinearPhysics):
...     def A(self, x): return x
...     def A_adjoint(self, y): return y
>>> y = torch.ones(1, 1, 2, 2)
>>> rec = finish(y, y, Identity(), iterations=0, started=0.0)
>>> rec.residual, rec.nfe
(0.0, 0)
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from medldm.solvers.base import Reconstruction


def has_fbp(physics: Any) -> bool:
    """Whether the physics offers filtered back-projection (CT operators do)."""
    return callable(getattr(physics, "fbp", None))


def initial_estimate(y: torch.Tensor, physics: Any) -> torch.Tensor:
    """The direct reconstruction: FBP for CT, ``A^H y`` (zero-filled) otherwise."""
    return physics.fbp(y) if has_fbp(physics) else physics.A_adjoint(y)


def progress_range(n_iter: int, progress: bool, description: str) -> Iterable[int]:
    """``range(n_iter)``, wrapped in a tqdm progress bar when ``progress`` is true."""
    steps = range(int(n_iter))
    if not progress:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=description, leave=False)


def finish(
    x: torch.Tensor,
    y: torch.Tensor,
    physics: Any,
    *,
    iterations: int,
    started: float,
    info: dict[str, Any] | None = None,
) -> Reconstruction:
    """A Reconstruction of ``x`` with its data residuals and the wall time since
    ``started`` (a :func:`time.perf_counter` value)."""
    return Reconstruction(
        estimate=x,
        residual=physics.residual(x, y),
        residual_over_noise=physics.residual_over_noise(x, y),
        iterations=int(iterations),
        nfe=0,
        seconds=time.perf_counter() - started,
        info=dict(info or {}),
    )
