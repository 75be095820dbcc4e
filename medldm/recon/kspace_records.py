"""What the stages of the measured k-space path make (:mod:`medldm.recon.kspace_stages`),
in stage order; only those stages make them. ``read``'s
:class:`~medldm.recon.kspace_input.KSpaceInput` lives with its reader and ``solve``'s
:class:`~medldm.recon.kspace_methods.KSpaceSolved` with the methods.

Example
-------
>>> import dataclasses
>>> [f.name for f in dataclasses.fields(KSpaceMeasurement)]
['physics', 'y', 'maps_text', 'maps_seconds']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medldm.physics.base import LinearPhysics
from medldm.problems.grid import GridPlan


@dataclass
class KSpaceView:
    """``model_view``: the intensities of the zero-filled image and the prior's grid."""

    zero_filled: np.ndarray  # root sum of squares of the zero-filled coil images
    normalization: Any  # the preset's intensity rule fitted to ``zero_filled``
    plan: GridPlan  # the k-space's matrix (in the model view) <-> the prior's grid
    truth: np.ndarray | None  # the reference, (1, rows, cols), model view, input units
    preset: Any = None  # the preset's variant for the data's resolution
    prior: Any = None  # its prior, loaded where the solver needs one


@dataclass
class KSpaceMeasurement:
    """``measure``: the operator on the k-space's own grid and the scaled measurement."""

    physics: LinearPhysics  # with the coil maps, on the device
    y: torch.Tensor  # the measured k-space / (high - low), (1, coils, rows, cols)
    maps_text: str  # how the coil maps were made
    maps_seconds: float


@dataclass
class KSpaceImages:
    """``to_input_grid``: magnitude stacks ``(1, rows, cols)`` on the k-space's grid, in the
    model view and the input's units."""

    images: dict[str, np.ndarray]  # by method name
    std: np.ndarray  # the LDM solver's posterior std
    direct: np.ndarray  # the zero-filled root sum of squares
