"""Raw tomography projections in, line-integral sinograms out: Data Exchange HDF5.

A Data Exchange file (the APS format that dxchange and TomoPy read) holds the detector's
raw intensities and the fields needed to turn them into line integrals:

=============================  =====================================================
dataset                        contents
=============================  =====================================================
``exchange/data``              projections ``(n_views, n_rows, n_detectors)``, counts
``exchange/data_white``        flat fields (beam, no sample) ``(n_flats, n_rows, n_det)``
``exchange/data_dark``         dark fields (no beam) ``(n_darks, n_rows, n_det)``
``exchange/theta``             projection angles ``(n_views,)``, degrees (attribute
                               ``units``; ``"rad"``/``"radians"`` is converted)
=============================  =====================================================

:func:`read_data_exchange` averages the flat and dark fields, corrects every projection
``T = (data - dark) / (flat - dark)``, raises transmissions below ``transmission_floor``
to it (noise and dead pixels give ``T <= 0``, whose logarithm does not exist; how many
were raised is reported), and returns the line integrals ``p = -log T`` as one sinogram
per detector row, laid out ``(n_detectors, n_views)`` like
:class:`medldm.physics.ParallelBeamCT`'s measurements.

The effective pixel size (at the sample) is taken from the file where it says so
(:data:`PIXEL_SIZE_PATHS`); otherwise it is ``None`` and lengths are in detector pixels
(1 pixel = 1 unit), which :attr:`ProjectionData.pixel_size_note` states.

This is a measurement, not an image, so it is its own record rather than a
:class:`~medldm.io.MedImage`; the reconstruction of it is a MedImage.

Example
-------
>>> import h5py, numpy as np, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
>>> with h5py.File(path, "w") as f:
...     f["exchange/data"] = np.full((4, 1, 8), 50.0, np.float32)
...     f["exchange/data_white"] = np.full((2, 1, 8), 100.0, np.float32)
...     f["exchange/data_dark"] = np.zeros((2, 1, 8), np.float32)
...     f["exchange/theta"] = np.array([0.0, 45.0, 90.0, 135.0])
>>> scan = read_data_exchange(path)
>>> scan.sinograms.shape, round(float(scan.sinograms[0, 0, 0]), 4)  # -log(0.5)
((1, 8, 4), 0.6931)
>>> scan.pixel_size_mm is None, round(float(scan.angles_rad[2]), 4)
(True, 1.5708)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import DataNotFoundError, InvalidInputError

DATA = "exchange/data"
FLATS = "exchange/data_white"
DARKS = "exchange/data_dark"
ANGLES = "exchange/theta"

#: Where Data Exchange files keep the effective (sample-plane) pixel size, first match wins.
#: The bare detector pixel (``.../detector/pixel_size_x``) is divided by the objective's
#: magnification when both are present (see :func:`_pixel_size`).
PIXEL_SIZE_PATHS = (
    "measurement/instrument/detection_system/objective/resolution",
    "measurement/instrument/detector/actual_pixel_size_x",
)
DETECTOR_PIXEL_PATH = "measurement/instrument/detector/pixel_size_x"
MAGNIFICATION_PATH = "measurement/instrument/detection_system/objective/magnification"

#: Length units (Data Exchange ``units`` attributes) in millimetres.
_UNIT_MM = {
    "m": 1e3,
    "mm": 1.0,
    "um": 1e-3,
    "µm": 1e-3,
    "micron": 1e-3,
    "microns": 1e-3,
    "micrometer": 1e-3,
    "micrometre": 1e-3,
    "nm": 1e-6,
}


@dataclass(frozen=True)
class ProjectionData:
    """Flat/dark-corrected line integrals of a parallel-beam scan.

    Attributes
    ----------
    sinograms:
        ``(n_rows, n_detectors, n_views)`` float32 line integrals ``-log T`` (unitless:
        attenuation coefficient times length).
    angles_deg:
        ``(n_views,)`` projection angles in degrees, as the file gives them.
    pixel_size_mm:
        Effective detector pixel size at the sample in mm, or ``None`` when the file does
        not give it (lengths are then in pixels).
    pixel_size_note:
        Where the pixel size came from, or that it is missing.
    transmission_floor:
        The floor applied to the transmission before the logarithm.
    floored_fraction:
        Fraction of projection values raised to the floor.
    n_flats, n_darks:
        How many flat and dark fields were averaged.
    path:
        The file read (``None`` for in-memory data).
    metadata:
        Plain values from the file (title, sample name) and notes.
    """

    sinograms: np.ndarray
    angles_deg: np.ndarray
    pixel_size_mm: float | None
    pixel_size_note: str
    transmission_floor: float
    floored_fraction: float
    n_flats: int
    n_darks: int
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.sinograms.shape[0])

    @property
    def n_detectors(self) -> int:
        return int(self.sinograms.shape[1])

    @property
    def n_views(self) -> int:
        return int(self.sinograms.shape[2])

    @property
    def angles_rad(self) -> np.ndarray:
        """The projection angles in radians."""
        return np.deg2rad(self.angles_deg)

    def sinogram(self, row: int) -> np.ndarray:
        """The ``(n_detectors, n_views)`` sinogram of detector row ``row``."""
        if not -self.n_rows <= row < self.n_rows:
            raise InvalidInputError(
                f"detector row {row} does not exist (the scan has {self.n_rows} rows)",
                path=self.path,
                fix=f"choose a row in 0..{self.n_rows - 1}",
            )
        return self.sinograms[row]


def line_integrals(
    projections: np.ndarray,
    flats: np.ndarray,
    darks: np.ndarray,
    transmission_floor: float = 1e-3,
    *,
    path: Path | None = None,
) -> tuple[np.ndarray, float]:
    """``(-log T, floored fraction)`` with ``T = (projections - dark) / (flat - dark)``.

    ``projections`` is ``(n_views, n_rows, n_detectors)``; ``flats`` and ``darks`` are
    ``(n, n_rows, n_detectors)`` stacks (averaged) or single ``(n_rows, n_detectors)``
    images. ``T`` below ``transmission_floor`` is raised to it. Returns float32
    ``(n_views, n_rows, n_detectors)`` and the fraction of values that were raised.
    """
    if not 0 < transmission_floor < 1:
        raise InvalidInputError(
            f"transmission_floor must be in (0, 1), got {transmission_floor}", path=path
        )
    flat = np.asarray(flats, np.float64)
    dark = np.asarray(darks, np.float64)
    flat = flat.mean(axis=0) if flat.ndim == 3 else flat
    dark = dark.mean(axis=0) if dark.ndim == 3 else dark
    beam = flat - dark
    if not np.all(beam > 0):
        bad = int(np.count_nonzero(~(beam > 0)))
        raise InvalidInputError(
            f"the mean flat field is not above the mean dark field at {bad} detector "
            "pixel(s), so their transmission is undefined",
            path=path,
            fix="check that data_white holds beam-on and data_dark beam-off images",
        )
    transmission = (np.asarray(projections, np.float64) - dark) / beam
    floored = transmission < transmission_floor
    transmission = np.maximum(transmission, transmission_floor)
    return (-np.log(transmission)).astype(np.float32), float(floored.mean())


def _text(value: Any) -> str:
    value = value[()] if hasattr(value, "shape") else value
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _length_mm(handle: Any, name: str) -> float | None:
    """The positive scalar dataset ``name`` in mm, using its ``units`` attribute;
    ``None`` when absent, not positive or without a known length unit."""
    if name not in handle:
        return None
    values = np.asarray(handle[name][()], dtype=np.float64).ravel()
    unit = _text(handle[name].attrs.get("units", "")).strip().lower()
    if values.size == 0 or not np.isfinite(values[0]) or values[0] <= 0 or unit not in _UNIT_MM:
        return None
    return float(values[0] * _UNIT_MM[unit])


def _pixel_size(handle: Any) -> tuple[float | None, str]:
    """``(effective pixel size in mm or None, where it came from)``."""
    for name in PIXEL_SIZE_PATHS:
        size = _length_mm(handle, name)
        if size is not None:
            return size, f"{name} ({size * 1000:g} um)"
    detector = _length_mm(handle, DETECTOR_PIXEL_PATH)
    if detector is not None and MAGNIFICATION_PATH in handle:
        magnification = float(np.asarray(handle[MAGNIFICATION_PATH][()]).ravel()[0])
        if magnification > 0:
            size = detector / magnification
            return size, (
                f"{DETECTOR_PIXEL_PATH} / {MAGNIFICATION_PATH} ({size * 1000:g} um at the sample)"
            )
    return None, "the file gives no pixel size: lengths are in detector pixels (1 pixel = 1 unit)"


def _angles_deg(handle: Any, path: Path, n_views: int) -> np.ndarray:
    angles = np.asarray(handle[ANGLES][()], dtype=np.float64).ravel()
    unit = _text(handle[ANGLES].attrs.get("units", "degrees")).strip().lower()
    if unit in ("rad", "radian", "radians"):
        angles = np.rad2deg(angles)
    elif unit not in ("deg", "degree", "degrees", ""):
        raise InvalidInputError(
            f"{ANGLES} has unknown units {unit!r}", path=path, fix="use degrees or radians"
        )
    if angles.shape != (n_views,):
        raise InvalidInputError(
            f"{ANGLES} holds {angles.size} angles for {n_views} projections",
            path=path,
            fix="give one angle per projection in exchange/theta",
        )
    if not np.all(np.isfinite(angles)):
        raise InvalidInputError(f"{ANGLES} contains NaN/Inf", path=path)
    return angles


def _stack(handle: Any, name: str, path: Path, detector_shape: tuple[int, int]) -> np.ndarray:
    if name not in handle:
        kind = {FLATS: "flat (white) fields", DARKS: "dark fields"}[name]
        raise InvalidInputError(
            f"the file has no {name} dataset ({kind})",
            path=path,
            fix=f"write the {kind} to {name} (without them the projections cannot be "
            "turned into line integrals)",
        )
    stack = np.asarray(handle[name][()], dtype=np.float64)
    stack = stack[None] if stack.ndim == 2 else stack
    if stack.ndim != 3 or stack.shape[1:] != detector_shape or stack.shape[0] == 0:
        raise InvalidInputError(
            f"{name} has shape {stack.shape}; expected (n, {detector_shape[0]}, "
            f"{detector_shape[1]}) like the projections",
            path=path,
        )
    if not np.all(np.isfinite(stack)):
        raise InvalidInputError(f"{name} contains NaN/Inf", path=path)
    return stack


def read_data_exchange(
    path: str | Path,
    *,
    transmission_floor: float = 1e-3,
    rows: slice | list[int] | None = None,
) -> ProjectionData:
    """Read a Data Exchange HDF5 scan into line-integral sinograms (see the module text).

    Parameters
    ----------
    path:
        The ``.h5`` file.
    transmission_floor:
        Transmissions below this are raised to it before ``-log`` (default ``1e-3``,
        i.e. line integrals at most ``-log 1e-3 = 6.9``).
    rows:
        Detector rows to keep (default: all).

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    InvalidInputError
        Not an HDF5 file, or a dataset is missing, mis-shaped or not finite.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(
            "projection file not found",
            path=path,
            fix="give sinogram=/path/to/scan.h5 (Data Exchange HDF5)",
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise InvalidInputError(
            f"cannot read as HDF5: {error}",
            path=path,
            fix="give a Data Exchange HDF5 file (exchange/data, data_white, data_dark, theta)",
        ) from error
    with handle:
        for name in (DATA, ANGLES):
            if name not in handle:
                raise InvalidInputError(
                    f"the file has no {name} dataset",
                    path=path,
                    fix="give a Data Exchange HDF5 file with exchange/data (projections, "
                    "n_views x n_rows x n_detectors) and exchange/theta (angles, degrees)",
                )
        projections = np.asarray(handle[DATA][()], dtype=np.float64)
        if projections.ndim == 2:  # one detector row
            projections = projections[:, None, :]
        if projections.ndim != 3 or min(projections.shape) < 1:
            raise InvalidInputError(
                f"{DATA} has shape {projections.shape}; expected (n_views, n_rows, n_detectors)",
                path=path,
            )
        if not np.all(np.isfinite(projections)):
            raise InvalidInputError(f"{DATA} contains NaN/Inf", path=path)
        detector_shape = (projections.shape[1], projections.shape[2])
        flats = _stack(handle, FLATS, path, detector_shape)
        darks = _stack(handle, DARKS, path, detector_shape)
        angles = _angles_deg(handle, path, projections.shape[0])
        pixel_size_mm, pixel_note = _pixel_size(handle)
        metadata = {
            key: _text(handle[name])
            for key, name in (
                ("title", "exchange/title"),
                ("sample", "measurement/sample/name"),
            )
            if name in handle
        }
    if rows is not None:
        selection = list(range(detector_shape[0]))[rows] if isinstance(rows, slice) else rows
        if not selection or any(not 0 <= r < detector_shape[0] for r in selection):
            raise InvalidInputError(
                f"rows {rows} outside the detector's {detector_shape[0]} rows", path=path
            )
        projections, flats, darks = (a[:, selection] for a in (projections, flats, darks))
    integrals, floored = line_integrals(projections, flats, darks, transmission_floor, path=path)
    metadata.update({"format": "data-exchange", "source_path": str(path)})
    return ProjectionData(
        sinograms=np.ascontiguousarray(integrals.transpose(1, 2, 0)),
        angles_deg=angles,
        pixel_size_mm=pixel_size_mm,
        pixel_size_note=pixel_note,
        transmission_floor=float(transmission_floor),
        floored_fraction=floored,
        n_flats=int(flats.shape[0]),
        n_darks=int(darks.shape[0]),
        path=path,
        metadata=metadata,
    )
