"""What a reconstruction produced (:class:`ReconResult` for images and measured k-space,
:class:`SinogramResult` for measured sinograms) and the solver-layout helper shared by the
simulated (:mod:`medldm.recon.simulated_stages`) and the measured
(:mod:`medldm.recon.kspace_stages`) paths.

Example
-------
>>> import torch
>>> solver_stack(torch.ones(3, 1, 4, 5), volume_mode=False).shape
(3, 4, 5)
>>> solver_stack(torch.ones(1, 1, 3, 4, 5, dtype=torch.complex64), volume_mode=True).shape
(3, 4, 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medldm.io import MedImage
from medldm.io.raw_ct import ProjectionData
from medldm.problems.grid import GridPlan
from medldm.problems.model_view import model_stack_to_volume, model_to_slice
from medldm.recon.presets import Preset


@dataclass
class ReconResult:
    """Everything a reconstruction produced, on the input's grid and in its units.

    Stacks are ``(S, rows, cols)``: ``S`` axial slices of the slab, rows towards A,
    columns towards R (see :meth:`slab_image` for the geometry).
    """

    preset: Preset
    source: MedImage  # the input as read (its own orientation)
    canonical: MedImage  # the input in RAS+ voxel order
    slab_start: int
    truth: np.ndarray | None
    reconstruction: np.ndarray
    std: np.ndarray
    direct: np.ndarray
    baseline: np.ndarray | None
    measurement: np.ndarray
    sampling_mask: np.ndarray | None
    metrics: dict[str, Any]
    grid: GridPlan
    samples: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    simulated: bool = True
    direct_label: str = "zero_filled"  # what ``direct`` is: "fbp" where the physics offers it
    # half-width of the central 90 % interval (input units): calibrated std scale, or the
    # Gaussian 1.645 std when the std is not calibrated (``interval_note`` says which)
    interval90: np.ndarray | None = None
    interval_note: str = ""
    # further classical reconstructions of the same measurement, by solver name (the
    # preset's own baseline is ``baseline``); written and reported beside it
    other_baselines: dict[str, np.ndarray] = field(default_factory=dict)

    def slab_image(self, stack: np.ndarray, unit: str | None = None) -> MedImage:
        """A ``(S, rows, cols)`` stack as a MedImage with the slab's world geometry."""
        affine = self.canonical.affine.copy()
        if self.canonical.n_spatial == 3:
            affine[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, self.slab_start]) + affine[:3, 3]
            array = np.ascontiguousarray(model_stack_to_volume(np.asarray(stack, np.float32)))
            axes: tuple[str, ...] = ("x", "y", "z")
        else:
            array = np.ascontiguousarray(model_to_slice(np.asarray(stack, np.float32)[0]))
            axes = ("x", "y")
        return MedImage(
            array,
            affine,
            axes=axes,
            modality=self.canonical.modality,
            unit=unit or self.canonical.unit,
            metadata=dict(self.source.metadata),
        )


@dataclass
class SinogramResult:
    """What :func:`medldm.recon.sinogram.reconstruct_sinogram` produced. Images are
    ``(n_rows, side, side)`` (row index, image row, image column), centred on the rotation
    axis."""

    scan: ProjectionData
    centre: float
    centre_source: str
    centre_estimates: dict[str, dict[str, Any]]
    window_start: int
    centre_offset: float
    fbp: np.ndarray
    tv: np.ndarray
    fbp_centre_at_middle: np.ndarray
    measurement: np.ndarray
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    tv_candidates: dict[float, np.ndarray] = field(default_factory=dict)

    @property
    def image_side(self) -> int:
        return int(self.fbp.shape[-1])

    @property
    def unit(self) -> str:
        if self.scan.pixel_size_mm is None:
            return "attenuation per detector pixel"
        return "attenuation per mm"


def magnitude(tensor: torch.Tensor) -> np.ndarray:
    """``|tensor|`` (complex) or the tensor, as float32 NumPy on the CPU."""
    tensor = tensor.detach()
    tensor = tensor.abs() if tensor.is_complex() else tensor
    return tensor.to("cpu", torch.float32).numpy()


def solver_stack(tensor: torch.Tensor, volume_mode: bool) -> np.ndarray:
    """Solver layout -> ``(S, H, W)``: ``(S, 1, H, W)`` or ``(1, 1, S, H, W)``."""
    array = magnitude(tensor)
    return array[0, 0] if volume_mode else array[:, 0]


def direct_label(physics: Any) -> str:
    """Name of ``physics.x_init``'s direct reconstruction: ``"fbp"`` where the physics
    declares filtered back-projection, ``"zero_filled"`` (``A^H y``) otherwise."""
    from medldm.physics.base import FILTERED_BACKPROJECTION

    return "fbp" if FILTERED_BACKPROJECTION in physics.capabilities else "zero_filled"
