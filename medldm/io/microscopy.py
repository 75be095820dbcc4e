"""Read and write microscopy TIFF / OME-TIFF stacks as :class:`MedImage` (via tifffile).

Axes
----
tifffile names the axes of a series with letters (``"ZYX"``, ``"TZCYX"``...). They map to
MedImage axes as follows, and the array is transposed to ``x, y[, z][, c][, t]``:

=========  ==========================================================================
tifffile   MedImage
=========  ==========================================================================
``X``      ``x`` (column index)
``Y``      ``y`` (row index)
``Z``      ``z``
``C``      ``c``; ``S`` (RGB samples) and ``E`` (wavelength) also map to ``c``
``T``      ``t``
``I, Q``   generic stacks (plain multi-page TIFF without metadata): ``stack_axis``
           (default ``"z"``; pass ``stack_axis="t"`` for a time lapse). If that axis
           is already taken, the other of ``z``/``t`` is used. A warning is recorded.
other      dropped when of size 1, else :class:`UnsupportedFormatError`
=========  ==========================================================================

tifffile drops axes of size 1, so a written ``(x, y, 1)`` image reads back as ``(x, y)``.

Pixel sizes
-----------
Read from, in order: OME-XML (``PhysicalSizeX/Y/Z`` with their units, default µm),
ImageJ metadata (``XResolution``/``YResolution`` in pixels per ``unit``, ``spacing`` for
z), medldm's own JSON description (plain TIFF written by :func:`write_tiff`), TIFF
resolution tags in pixels per cm or inch. Unknown sizes are taken as 1 µm with a warning.
The affine is ``diag(px, py, pz, 1)`` in millimetres (1 µm = 0.001 mm), origin 0.
``metadata["pixel_size_um"]`` keeps the sizes in µm per spatial axis.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> img = MedImage(np.zeros((8, 6, 4), np.uint16), np.diag([0.0005, 0.0005, 0.002, 1]))
>>> out = write_tiff(img, pathlib.Path(tempfile.mkdtemp()) / "stack.ome.tif")
>>> back = read_microscopy(out)
>>> back.axes, back.metadata["tiff_axes"], back.metadata["pixel_size_um"]
(('x', 'y', 'z'), 'ZYX', {'x': 0.5, 'y': 0.5, 'z': 2.0})
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings as _warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import (
    DataNotFoundError,
    InvalidInputError,
    MedLDMError,
    UnsupportedFormatError,
)
from medldm.io.finite import check_finite, check_nan_policy, check_size
from medldm.io.image import UNIT_COUNTS, UNIT_UNKNOWN, MedImage
from medldm.utils.files import atomic_output, check_writable

#: tifffile axis letter -> MedImage axis name (generic ``I``/``Q`` handled separately).
TIFF_TO_MEDIMAGE = {"X": "x", "Y": "y", "Z": "z", "C": "c", "S": "c", "E": "c", "T": "t"}

#: Order of MedImage axes in an array, and the tifffile order used when writing.
MEDIMAGE_ORDER = ("x", "y", "z", "c", "t")
TIFF_WRITE_ORDER = "TZCYX"

#: Length units found in OME-XML / ImageJ metadata, as micrometres.
UNIT_TO_UM = {
    "m": 1e6, "meter": 1e6, "cm": 1e4, "centimeter": 1e4, "mm": 1e3, "millimeter": 1e3,
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "pm": 1e-6, "å": 1e-4, "angstrom": 1e-4,
    "in": 25400.0, "inch": 25400.0,
}  # fmt: skip

#: Time units of OME-XML, as seconds.
TIME_TO_S = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "min": 60.0, "h": 3600.0}

#: ImageJ can only store these dtypes.
IMAGEJ_DTYPES = ("uint8", "uint16", "int16", "float32")

#: Words in a tifffile log message that mean the file is damaged, not merely unusual.
_CORRUPTION_WORDS = ("corrupt", "invalid", "truncat", "raised", "offset", "eof", "failed")

_READ_FIX = "check the file is complete (not truncated) and a valid TIFF"


# --- reading ---------------------------------------------------------------------------
def read_microscopy(
    path: str | Path,
    *,
    nan_policy: str = "raise",
    series: int = 0,
    stack_axis: str = "z",
    max_bytes: int | None = None,
) -> MedImage:
    """Read one series of a TIFF or OME-TIFF file into a :class:`MedImage`.

    Parameters
    ----------
    path:
        ``.tif``/``.tiff`` file (OME-TIFF, ImageJ hyperstack or plain TIFF).
    nan_policy:
        ``"raise"`` (default), ``"zero"`` or ``"ignore"`` for NaN/Inf pixels.
    series:
        Index of the tifffile series (OME image) to read.
    stack_axis:
        Where a generic page stack (tifffile axis ``I`` or ``Q``) goes: ``"z"`` or ``"t"``.
    max_bytes:
        Refuse series larger than this many bytes (default 8 GiB or
        ``$MEDLDM_MAX_IMAGE_BYTES``) before reading pixels.

    Returns
    -------
    MedImage with axes ``x, y[, z][, c][, t]``, a diagonal affine in mm, modality ``"OT"``
    and unit ``"counts"`` for integer data (``"unknown"`` otherwise).
    """
    path = Path(path)
    check_nan_policy(nan_policy)
    if stack_axis not in ("z", "t"):
        raise InvalidInputError(f"stack_axis must be 'z' or 't', got {stack_axis!r}")
    if not path.exists():
        raise DataNotFoundError("TIFF file not found", path=path, fix="check the path")
    if path.is_dir():
        raise InvalidInputError("expected a TIFF file, got a folder", path=path)
    try:
        raw, info = _read_series(path, series, max_bytes)
        array, axes, axis_warnings = _to_medimage_axes(raw, info["tiff_axes"], stack_axis, path)
        array, nan_warnings = check_finite(array, path, nan_policy)
    except MedLDMError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read TIFF file ({type(exc).__name__}: {exc})", path=path, fix=_READ_FIX
        ) from exc
    sizes, size_warnings = _complete_sizes(info.pop("sizes_um"), axes)
    affine = np.diag([sizes["x"] / 1000, sizes["y"] / 1000, sizes["z"] / 1000, 1.0])
    info["pixel_size_um"] = {a: sizes[a] for a in ("x", "y", "z") if a in axes}
    info["warnings"] = info["warnings"] + axis_warnings + size_warnings + nan_warnings
    unit = UNIT_COUNTS if array.dtype.kind in "iub" else UNIT_UNKNOWN
    return MedImage(array, affine, axes, modality="OT", unit=unit, metadata=info)


@contextlib.contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """Collect warnings tifffile logs in this thread (it logs, not raises, on damage)."""
    messages: list[str] = []
    ident = threading.get_ident()

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == ident:
                messages.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = _Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def _read_series(
    path: Path, index: int, max_bytes: int | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Pixels of series ``index`` in tifffile axis order, and metadata (sizes in µm)."""
    import tifffile

    with _tifffile_log() as log:
        try:
            tif = tifffile.TiffFile(path)
        except tifffile.TiffFileError as exc:
            if "not a tiff" in str(exc).lower():
                raise UnsupportedFormatError(
                    f"not a TIFF file ({exc})",
                    path=path,
                    fix="pass a .tif/.tiff microscopy image; use read_nifti for NIfTI",
                ) from exc
            raise
        with tif:
            n_series = len(tif.series)
            if n_series == 0:
                raise InvalidInputError("TIFF holds no image series", path=path, fix=_READ_FIX)
            if not 0 <= index < n_series:
                raise InvalidInputError(
                    f"series {index} requested but the file has {n_series} series",
                    path=path,
                    fix=f"pass series= between 0 and {n_series - 1}",
                )
            s = tif.series[index]
            check_size(s.shape, s.dtype, path, max_bytes)
            data = np.asarray(s.asarray())
            n_pages = len(tif.pages)  # walks every IFD: a cut-off file logs an error here
            info: dict[str, Any] = {
                "format": "ome-tiff" if tif.is_ome else "tiff",
                "source_path": str(path),
                "tiff_axes": str(s.axes),
                "tiff_shape": [int(v) for v in s.shape],
                "series": index,
                "n_series": n_series,
                "n_pages": n_pages,
                "imagej": bool(tif.is_imagej),
            }
            sizes, source, extra = _pixel_sizes(tif, index)
            info["pixel_size_source"] = source
            size_notes = extra.pop("warnings", [])
            info.update(extra)
    damage = [m for m in log if any(w in m.lower() for w in _CORRUPTION_WORDS)]
    if damage:
        raise InvalidInputError(
            f"file looks truncated or corrupted (tifffile: {damage[0]})", path=path, fix=_READ_FIX
        )
    info["sizes_um"] = sizes
    info["warnings"] = [f"tifffile: {m}" for m in log] + size_notes
    return data, info


def _to_medimage_axes(
    data: np.ndarray, tiff_axes: str, stack_axis: str, path: Path
) -> tuple[np.ndarray, tuple[str, ...], list[str]]:
    """Transpose tifffile-ordered ``data`` to MedImage order ``x, y, z, c, t``.

    >>> a, axes, _ = _to_medimage_axes(np.zeros((2, 3, 4, 5)), "TCYX", "z", Path("a.tif"))
    >>> a.shape, axes
    ((5, 4, 3, 2), ('x', 'y', 'c', 't'))
    """
    names: list[str | None] = [None] * len(tiff_axes)
    warnings: list[str] = []
    for i, letter in enumerate(tiff_axes):  # explicit axes first
        target = TIFF_TO_MEDIMAGE.get(letter)
        if target is not None and target not in names:
            names[i] = target
    for i, letter in enumerate(tiff_axes):  # generic page stacks next
        if letter in "IQ":
            other = "t" if stack_axis == "z" else "z"
            target = stack_axis if stack_axis not in names else other
            if target not in names:
                names[i] = target
                warnings.append(
                    f"tifffile axis {letter!r} (unspecified stack) read as {target!r}; "
                    f"pass stack_axis={'t' if target == 'z' else 'z'!r} if it is not"
                )
    drop = []
    for i, letter in enumerate(tiff_axes):
        if names[i] is None:
            if data.shape[i] != 1:
                raise UnsupportedFormatError(
                    f"tifffile axis {letter!r} of size {data.shape[i]} (axes {tiff_axes}) "
                    "has no place among x, y, z, c, t",
                    path=path,
                    fix="select one plane along that axis with tifffile and save it first",
                )
            drop.append(i)
    if "x" not in names or "y" not in names:
        raise UnsupportedFormatError(
            f"series axes {tiff_axes!r} lack X or Y", path=path, fix="pass an image series"
        )
    data = np.squeeze(data, axis=tuple(drop)) if drop else data
    kept = [n for n in names if n is not None]
    order = [kept.index(a) for a in MEDIMAGE_ORDER if a in kept]
    axes = tuple(kept[i] for i in order)
    return np.transpose(data, order), axes, warnings


def _unit_to_um(unit: Any) -> float | None:
    """Micrometres per ``unit`` (``"micron"``, ``"nm"``, ``"\\\\u00B5m"``...), None if unknown.

    >>> _unit_to_um("micron"), _unit_to_um("nm"), _unit_to_um("pixel")
    (1.0, 0.001, None)
    """
    if not isinstance(unit, str):
        return None
    key = unit.strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ").replace("\\u03bc", "μ")
    return UNIT_TO_UM.get(key.lower())


def _positive(value: Any) -> float | None:
    """``value`` as a positive finite float, else None (handles TIFF rationals)."""
    try:
        if isinstance(value, tuple):
            value = value[0] / value[1] if value[1] else 0.0
        value = float(value)
    except (TypeError, ValueError, IndexError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _pixel_sizes(tif: Any, index: int) -> tuple[dict[str, float | None], str, dict[str, Any]]:
    """Pixel sizes in µm (x, y, z; None when unknown), their source and extra metadata."""
    readers = (
        ("ome", _sizes_from_ome),
        ("imagej", _sizes_from_imagej),
        ("medldm", _sizes_from_shaped),
        ("tiff-resolution", _sizes_from_resolution),
    )
    for source, reader in readers:
        found = reader(tif, index)
        if found is not None and found[0].get("x") is not None:
            return found[0], source, found[1]
    return {"x": None, "y": None, "z": None}, "unknown", {}


def _sizes_from_ome(tif: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if not tif.is_ome or not tif.ome_metadata:
        return None
    root = ET.fromstring(tif.ome_metadata)
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if not pixels:
        return None
    attrs = pixels[min(index, len(pixels) - 1)].attrib
    sizes: dict[str, Any] = {}
    for axis in "xyz":
        value = _positive(attrs.get(f"PhysicalSize{axis.upper()}"))
        factor = _unit_to_um(attrs.get(f"PhysicalSize{axis.upper()}Unit", "µm"))
        sizes[axis] = None if value is None or factor is None else value * factor
    extra: dict[str, Any] = {}
    step = _positive(attrs.get("TimeIncrement"))
    t_factor = TIME_TO_S.get(attrs.get("TimeIncrementUnit", "s"))
    if step is not None and t_factor is not None:
        extra["time_interval_s"] = step * t_factor
    return sizes, extra


def _resolution_um(page: Any, tag: str, unit_um: float) -> float | None:
    """Pixel size in µm from an X/YResolution tag (pixels per unit of ``unit_um`` µm)."""
    item = page.tags.get(tag)
    per_unit = _positive(item.value) if item is not None else None
    return None if per_unit is None else unit_um / per_unit


def _sizes_from_imagej(tif: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    meta = tif.imagej_metadata if tif.is_imagej else None
    if not meta:
        return None
    unit_um = _unit_to_um(meta.get("unit"))
    if unit_um is None:
        return None
    page = tif.series[index].pages[0] if tif.series[index].pages else tif.pages[0]
    spacing = _positive(meta.get("spacing"))
    sizes = {
        "x": _resolution_um(page, "XResolution", unit_um),
        "y": _resolution_um(page, "YResolution", unit_um),
        "z": None if spacing is None else spacing * unit_um,
    }
    interval = _positive(meta.get("finterval"))
    return sizes, ({} if interval is None else {"time_interval_s": interval})


def _sizes_from_shaped(tif: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    shaped = tif.shaped_metadata if tif.is_shaped else None
    if not shaped or index >= len(shaped) or not isinstance(shaped[index], dict):
        return None
    stored = shaped[index].get("pixel_size_um")
    if not isinstance(stored, dict):
        return None
    sizes = {a: _positive(stored.get(a)) for a in "xyz"}
    interval = _positive(shaped[index].get("time_interval_s"))
    return sizes, ({} if interval is None else {"time_interval_s": interval})


def _sizes_from_resolution(tif: Any, index: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
    page = tif.series[index].pages[0] if tif.series[index].pages else tif.pages[0]
    unit_tag = page.tags.get("ResolutionUnit")
    unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
    unit_um = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}.get(unit)
    if unit_um is None or "XResolution" not in page.tags:
        return None
    sizes = {
        "x": _resolution_um(page, "XResolution", unit_um),
        "y": _resolution_um(page, "YResolution", unit_um),
        "z": None,
    }
    extra: dict[str, Any] = {}
    if unit == 2 and sizes["x"] is not None:
        extra["warnings"] = [
            f"pixel size from a dots-per-inch tag ({25400 / sizes['x']:.4g} dpi): often a "
            "display setting, not a physical size"
        ]
        extra["resolution_dpi"] = 25400 / sizes["x"]
    return sizes, extra


def _complete_sizes(
    sizes: dict[str, float | None], axes: tuple[str, ...]
) -> tuple[dict[str, float], list[str]]:
    """Fill unknown pixel sizes with 1 µm (with a warning) for spatial axes present.

    For a 2D image the unused z size is the x size (it only scales the affine's normal).
    """
    missing = [a for a in ("x", "y", "z") if a in axes and sizes.get(a) is None]
    out = {a: float(sizes.get(a) or 1.0) for a in ("x", "y")}
    out["z"] = float(sizes.get("z") or (1.0 if "z" in axes else out["x"]))
    warnings = []
    if missing:
        warnings.append(f"pixel size unknown, assumed 1 µm (axes {', '.join(missing)})")
    return out, warnings


# --- writing ---------------------------------------------------------------------------
def is_tiff_name(path: str | Path) -> bool:
    """True for names ending in .tif or .tiff (any case).

    >>> is_tiff_name("cells.ome.tiff"), is_tiff_name("cells.nii")
    (True, False)
    """
    return Path(path).suffix.lower() in (".tif", ".tiff")


def write_tiff(
    image: MedImage,
    path: str | Path,
    *,
    overwrite: bool = False,
    ome: bool | None = None,
) -> Path:
    """Write ``image`` as OME-TIFF, ImageJ TIFF or plain TIFF, atomically.

    * OME-TIFF when ``ome=True`` or (``ome=None`` and) the name ends in ``.ome.tif(f)``:
      ``PhysicalSizeX/Y/Z`` in µm and ``TimeIncrement`` in s.
    * else ImageJ hyperstack when the dtype is uint8, uint16, int16 or float32: resolution
      in pixels per micron, ``spacing`` (z) and ``unit='micron'``.
    * else plain TIFF with resolution in pixels per cm and medldm's pixel sizes (µm) in the
      JSON image description.

    Pixel sizes come from the affine's column norms (mm -> µm); a rotation, flip or origin
    cannot be stored and triggers a :class:`UserWarning`. Axes are written in tifffile
    order ``T, Z, C, Y, X``; reading the file back gives the same array and axes (size-1
    axes excepted). Raises :class:`OutputExistsError` unless ``overwrite=True``.
    """
    import tifffile

    path = Path(path)
    if not is_tiff_name(path):
        raise InvalidInputError(
            "TIFF output name must end in .tif or .tiff", path=path, fix="rename the output"
        )
    check_writable(path, overwrite)
    if ome is None:
        ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    data, tiff_axes = _to_tiff_order(image)
    norms_um = np.linalg.norm(image.affine[:3, :3], axis=0) * 1000.0
    sizes = {a: float(v) for a, v in zip(("x", "y", "z"), norms_um, strict=True)}
    _warn_lost_geometry(image.affine, path)
    interval = _positive(image.metadata.get("time_interval_s")) if "t" in image.axes else None
    if ome:
        kwargs = _ome_kwargs(tiff_axes, sizes, interval)
    elif data.dtype.name in IMAGEJ_DTYPES:
        kwargs = _imagej_kwargs(tiff_axes, sizes, interval)
    else:
        kwargs = _plain_kwargs(tiff_axes, sizes, interval)
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            tifffile.imwrite(tmp, data, photometric="minisblack", **kwargs)
        except (OSError, MedLDMError):
            raise
        except Exception as exc:
            raise InvalidInputError(
                f"cannot write TIFF ({type(exc).__name__}: {exc})",
                path=path,
                fix="try a plain .tif name (no OME/ImageJ) or another dtype",
            ) from exc
    return path


def _to_tiff_order(image: MedImage) -> tuple[np.ndarray, str]:
    """Array transposed to tifffile order (subset of ``TZCYX``) and its axes string."""
    tiff_axes = "".join(letter for letter in TIFF_WRITE_ORDER if letter.lower() in image.axes)
    data = np.transpose(image.array, [image.axes.index(a) for a in tiff_axes.lower()])
    if data.dtype == np.bool_:
        data = data.astype(np.uint8)
    return np.ascontiguousarray(data), tiff_axes


def _warn_lost_geometry(affine: np.ndarray, path: Path) -> None:
    linear = affine[:3, :3]
    diagonal = np.allclose(linear, np.diag(np.diag(linear))) and np.all(np.diag(linear) > 0)
    if not diagonal or np.any(affine[:3, 3] != 0):
        _warnings.warn(
            f"{path}: TIFF stores pixel sizes only; the affine's rotation, flips and origin "
            "are not written",
            UserWarning,
            stacklevel=3,
        )


def _ome_kwargs(axes: str, sizes: dict[str, float], interval: float | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"axes": axes}
    for axis in "xyz":
        if axis.upper() in axes or axis in "xy":
            meta[f"PhysicalSize{axis.upper()}"] = sizes[axis]
            meta[f"PhysicalSize{axis.upper()}Unit"] = "µm"
    if interval is not None:
        meta["TimeIncrement"], meta["TimeIncrementUnit"] = interval, "s"
    return {"ome": True, "metadata": meta}


def _imagej_kwargs(axes: str, sizes: dict[str, float], interval: float | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"axes": axes, "unit": "micron"}
    if "Z" in axes:
        meta["spacing"] = sizes["z"]
    if interval is not None:
        meta["finterval"] = interval
    return {
        "imagej": True,
        "ome": False,
        "resolution": (1.0 / sizes["x"], 1.0 / sizes["y"]),
        "metadata": meta,
    }


def _plain_kwargs(axes: str, sizes: dict[str, float], interval: float | None) -> dict[str, Any]:
    stored = {a: sizes[a] for a in ("x", "y", "z") if a.upper() in axes}
    meta: dict[str, Any] = {"axes": axes, "pixel_size_um": stored}
    if interval is not None:
        meta["time_interval_s"] = interval
    return {
        "ome": False,
        "resolution": (1e4 / sizes["x"], 1e4 / sizes["y"]),
        "resolutionunit": "CENTIMETER",
        "metadata": meta,
    }
