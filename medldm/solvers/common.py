"""Small helpers shared by the solvers: the starting image, the progress bar, the guard
against divergence, and packing the result into a :class:`~medldm.solvers.base.Reconstruction`.

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
from typing import Any, TypeVar

import torch

from medldm.errors import MedLDMError
from medldm.solvers.base import Reconstruction

T = TypeVar("T")


def progress_over(items: Iterable[T], progress: bool, description: str) -> Iterable[T]:
    """``items`` (a ``range`` of iterations, a list of timesteps), wrapped in a tqdm
    progress bar when ``progress`` is true."""
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, leave=False)


def ensure_finite(tensor: torch.Tensor, what: str, solver: str) -> torch.Tensor:
    """``tensor`` unchanged, or a :class:`MedLDMError` when it holds NaN/Inf (a diverged
    solver must stop instead of writing garbage)."""
    if not bool(torch.isfinite(tensor).all()):
        raise MedLDMError(
            f"{solver}: the {what} became NaN/Inf (the solver diverged)",
            fix="lower the step size / guidance weight in the solver preset, or use fewer "
            "data-consistency iterations",
        )
    return tensor


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
