"""`MedImage`: pixels with their geometry, units and source metadata.

Conventions
-----------
* ``array`` is a NumPy array whose leading axes are spatial, in the index order of the
  affine's columns (nibabel's convention): ``array[x, y]`` for a 2D image,
  ``array[x, y, z]`` for a volume, then non-spatial axes such as ``"c"`` (channel) and
  ``"t"`` (time / volume index): ``array[x, y, z, t]``.  For DICOM, ``x`` runs along a
  row (column index) and ``y`` down the columns (row index), ``z`` along the slice normal.
* ``affine`` is a 4x4 matrix mapping voxel indices ``(x, y, z, 1)`` of the spatial axes to
  RAS+ world coordinates in millimetres (nibabel's convention). A 2D image still has a
  4x4 affine; its third column is the slice normal scaled by the slice thickness.
* ``spacing`` is derived from the affine (column norms), in millimetres; microscopy pixel
  sizes are stored in millimetres too (1 µm = 0.001 mm).

Example
-------
>>> import numpy as np
>>> img = MedImage(np.zeros((4, 5, 6), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
>>> img.spacing
(0.5, 0.5, 2.0)
>>> img.spatial_shape
(4, 5, 6)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medldm.errors import InvalidInputError

SPATIAL_AXES = ("x", "y", "z")
NON_SPATIAL_AXES = ("c", "t")

#: Intensity units used across medldm.
UNIT_HU = "HU"
UNIT_MR = "arbitrary MR units"
UNIT_COUNTS = "counts"
UNIT_UNKNOWN = "unknown"


@dataclass
class MedImage:
    """An image array with its world geometry and provenance.

    Parameters
    ----------
    array:
        Pixel values, spatial axes first (see module docstring), float or integer.
    affine:
        4x4 voxel-to-world matrix, RAS+ millimetres.
    axes:
        Name of every array axis, e.g. ``("x", "y", "z")`` or ``("x", "y", "z", "t")``.
        Defaults to the first ``array.ndim`` spatial names (at most 3).
    modality:
        DICOM-style modality code (``"CT"``, ``"MR"``, ``"OT"`` for microscopy/other).
    unit:
        Intensity unit of ``array`` (``"HU"``, ``"arbitrary MR units"``, ``"counts"``...).
    metadata:
        Source metadata: UIDs, acquisition parameters, the source path(s), warnings about
        the geometry (for example a gantry tilt), as plain JSON-compatible values.
    """

    array: np.ndarray
    affine: np.ndarray
    axes: tuple[str, ...] = ()
    modality: str = "OT"
    unit: str = UNIT_UNKNOWN
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4) or not np.all(np.isfinite(self.affine)):
            raise InvalidInputError(
                f"affine must be a finite 4x4 matrix, got shape {self.affine.shape}",
                fix="pass a voxel-to-world matrix in millimetres",
            )
        if not self.axes:
            if self.array.ndim > 3:
                raise InvalidInputError(
                    f"a {self.array.ndim}-D array needs explicit axis names",
                    fix="pass axes=('x', 'y', 'z', 't') or similar",
                )
            self.axes = SPATIAL_AXES[: self.array.ndim]
        self.axes = tuple(self.axes)
        if len(self.axes) != self.array.ndim:
            raise InvalidInputError(
                f"axes {self.axes} do not match an array of shape {self.array.shape}",
                fix="give one name per array axis",
            )
        n_spatial = sum(a in SPATIAL_AXES for a in self.axes)
        if tuple(self.axes[:n_spatial]) != SPATIAL_AXES[:n_spatial] or n_spatial < 2:
            raise InvalidInputError(
                f"axes {self.axes} must start with the spatial axes x, y[, z]",
                fix="move spatial axes to the front (see medldm.io.image)",
            )
        unknown = [a for a in self.axes[n_spatial:] if a not in NON_SPATIAL_AXES]
        if unknown or len(set(self.axes)) != len(self.axes):
            raise InvalidInputError(
                f"axes {self.axes} contain unknown or repeated names",
                fix=f"use spatial axes {SPATIAL_AXES} then any of {NON_SPATIAL_AXES}",
            )

    # --- geometry ----------------------------------------------------------------------
    @property
    def n_spatial(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return sum(a in SPATIAL_AXES for a in self.axes)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes only."""
        return tuple(int(s) for s in self.array.shape[: self.n_spatial])

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each spatial axis in millimetres (norms of affine columns)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(v) for v in norms[: self.n_spatial])

    @property
    def origin(self) -> tuple[float, float, float]:
        """World position (RAS+ mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])  # type: ignore[return-value]

    @property
    def orientation(self) -> str:
        """Axis codes such as ``"RAS"`` or ``"LPS"``: the world direction each index grows."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    def axis_index(self, name: str) -> int:
        """Position of axis ``name`` in :attr:`axes` (raises if absent)."""
        if name not in self.axes:
            raise InvalidInputError(f"image has no axis {name!r}; its axes are {self.axes}")
        return self.axes.index(name)

    # --- convenience -------------------------------------------------------------------
    def replace(self, **changes: Any) -> MedImage:
        """Return a copy with some fields replaced (metadata is deep-copied)."""
        import copy

        if "metadata" not in changes:
            changes["metadata"] = copy.deepcopy(self.metadata)
        return dataclasses.replace(self, **changes)

    def with_array(self, array: np.ndarray, unit: str | None = None) -> MedImage:
        """Same geometry and metadata, new pixels (of the same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InvalidInputError(
                f"new array shape {array.shape} differs from {self.array.shape}",
                fix="resample or reshape before replacing the pixels",
            )
        return self.replace(array=array, unit=self.unit if unit is None else unit)

    def summary(self) -> str:
        """One-paragraph human-readable description of the geometry."""
        spacing = " x ".join(f"{s:.4g}" for s in self.spacing)
        lines = [
            f"shape {self.array.shape} axes {''.join(self.axes)} dtype {self.array.dtype}",
            f"spacing {spacing} mm, orientation {self.orientation}, origin "
            + ", ".join(f"{v:.3f}" for v in self.origin)
            + " mm",
            f"modality {self.modality}, unit {self.unit}, value range "
            f"[{float(np.nanmin(self.array)):.6g}, {float(np.nanmax(self.array)):.6g}]",
        ]
        for warning in self.metadata.get("warnings", []):
            lines.append(f"warning: {warning}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"MedImage(shape={self.array.shape}, axes={''.join(self.axes)}, "
            f"spacing={tuple(round(s, 4) for s in self.spacing)}, "
            f"modality={self.modality!r}, unit={self.unit!r})"
        )
