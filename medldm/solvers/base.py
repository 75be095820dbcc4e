"""The solver call signature and the :class:`Reconstruction` it returns.

Every solver is an object with a ``name`` and

``solve(y, physics, prior=None, *, generator=None, callback=None) -> Reconstruction``

where ``y`` is the measurement, ``physics`` a :class:`~medldm.physics.base.LinearPhysics`,
``prior`` an optional trained LDM prior (a :class:`~medldm.models.prior_protocol.LatentPrior`;
classical solvers ignore it), ``generator`` a ``torch.Generator`` for every random choice,
and ``callback(step, estimate)`` is called during the iterations (for progress bars or
figures).

Solvers declare in the class attribute ``requires`` the physics capabilities they need
beyond ``A`` and ``A^H`` (e.g. :data:`~medldm.physics.base.OBSERVED_MASK` for biharmonic
inpainting); a solver that declares nothing applies to every linear operator.

Example
-------
>>> import torch
>>> rec = Reconstruction(estimate=torch.zeros(1, 1, 4, 4), residual=0.0)
>>> rec.estimate.shape
torch.Size([1, 1, 4, 4])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch

from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import LinearPhysics

Callback = Callable[[int, torch.Tensor], None]


@dataclass
class Reconstruction:
    """What a solver returns.

    Attributes
    ----------
    estimate:
        The reconstruction, ``(B, C, *spatial)``, in the same units and range as ``x``.
    residual:
        Relative data misfit of the estimate, ``||A x - y|| / ||y||``.
    residual_over_noise:
        ``||A x - y|| / (sigma sqrt(m))`` (about 1 = fits to the noise level), or ``None``.
    samples:
        Optional posterior samples ``(K, B, C, *spatial)``.
    std:
        Optional pixel-wise standard deviation of the samples, shaped like ``estimate``.
    iterations:
        Iterations of the outer loop.
    nfe:
        Number of network evaluations (0 for classical solvers).
    seconds:
        Wall time of ``solve`` in seconds.
    info:
        Anything else worth keeping (hyper-parameters, convergence history).
    """

    estimate: torch.Tensor
    residual: float
    residual_over_noise: float | None = None
    samples: torch.Tensor | None = None
    std: torch.Tensor | None = None
    iterations: int = 0
    nfe: int = 0
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Solver(Protocol):
    """Anything with a ``name`` and this ``solve`` method is a solver."""

    name: str

    def solve(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        prior: LatentPrior | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Reconstruction: ...
