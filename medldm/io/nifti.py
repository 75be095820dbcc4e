"""Read and write NIfTI-1/2 images (``.nii``, ``.nii.gz``) as :class:`MedImage`.

Reading
-------
* Axes: 2D files give ``("x", "y")``; 3D files (also with a single slice) ``("x", "y",
  "z")``; 4D files ``("x", "y", "z", "t")``; 5D files (NIfTI's 5th dimension holds vector
  components) ``("x", "y", "z", "c", "t")``, or ``("x", "y", "z", "c")`` when there is a
  single time point (displacement fields). RGB files get a ``"c"`` axis of 3 or 4 uint8.
* Values: ``scl_slope``/``scl_inter`` are applied; the result is float32 whenever scaling
  is applied or the stored data is floating point (float64 data is narrowed to float32).
  Integer data without scaling keeps its dtype (in native byte order).
* Geometry: the sform when ``sform_code > 0``, else the qform when ``qform_code > 0``,
  else the header's base affine (pixdim only); ``metadata["affine_source"]`` says which.
  Spatial units stored as metres or microns are converted to millimetres.
* Metadata: ``format`` ("nifti"), ``source_path``, ``description``, ``intent``,
  ``affine_source``, ``repetition_time_s`` (pixdim[4], 4D and 5D only), ``warnings``.

Writing
-------
:func:`write_nifti` writes NIfTI-1, the affine as both sform and qform with code 1
(scanner), spatial units mm and time in seconds, through a temporary file (atomic).

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> img = MedImage(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2, 2, 3, 1]))
>>> out = write_nifti(img, pathlib.Path(tempfile.mkdtemp()) / "a.nii.gz")
>>> back = read_nifti(out)
>>> back.axes, back.spacing, back.array.dtype.name, back.metadata["affine_source"]
(('x', 'y', 'z'), (2.0, 2.0, 3.0), 'int16', 'sform')
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from medldm.errors import (
    DataNotFoundError,
    InvalidInputError,
    MedLDMError,
    UnsupportedFormatError,
)
from medldm.io.finite import check_finite, check_nan_policy, check_size
from medldm.io.image import UNIT_MR, UNIT_UNKNOWN, MedImage
from medldm.utils.files import atomic_output, check_writable

#: Factor from a NIfTI spatial unit (``xyzt_units``) to millimetres.
SPATIAL_UNIT_TO_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001, "unknown": 1.0}

#: Factor from a NIfTI time unit to seconds (frequency-like units are not converted).
TIME_UNIT_TO_S = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}

_READ_FIX = "check that the file is complete (not truncated) and is a NIfTI-1/2 image"


def is_nifti_name(path: str | Path) -> bool:
    """True when ``path`` ends in ``.nii`` or ``.nii.gz`` (case-insensitive).

    >>> is_nifti_name("sub-01_T1w.nii.gz"), is_nifti_name("scan.tif")
    (True, False)
    """
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


# --- reading ---------------------------------------------------------------------------
def read_nifti(
    path: str | Path,
    *,
    canonical: bool = False,
    nan_policy: str = "raise",
    modality: str | None = None,
    unit: str | None = None,
    max_bytes: int | None = None,
) -> MedImage:
    """Read a NIfTI-1/2 file into a :class:`MedImage` (affine in RAS+ millimetres).

    Parameters
    ----------
    path:
        A ``.nii`` or ``.nii.gz`` file (or the ``.hdr`` of a NIfTI ``.hdr``/``.img`` pair).
    canonical:
        Reorient the array to the closest canonical RAS+ orientation (axis flips and
        permutations only, no resampling); world coordinates of every voxel are kept.
    nan_policy:
        What to do with NaN/Inf voxels: ``"raise"``, ``"zero"`` or ``"ignore"`` (see
        :func:`medldm.io.finite.check_finite`).
    modality:
        Modality code to record (NIfTI does not store one); ``None`` gives ``"OT"``.
    unit:
        Intensity unit; default ``"arbitrary MR units"`` when ``modality == "MR"``,
        else ``"unknown"``.
    max_bytes:
        Refuse files whose header declares more bytes than this (default 8 GiB or
        ``$MEDLDM_MAX_IMAGE_BYTES``), checked before any pixel is read.

    Raises
    ------
    DataNotFoundError
        The file does not exist.
    UnsupportedFormatError
        The file is not NIfTI (e.g. Analyze 7.5 or another format).
    InvalidInputError
        The file is corrupt or truncated, too large, or holds NaN/Inf with
        ``nan_policy="raise"``.
    """
    path = Path(path)
    check_nan_policy(nan_policy)
    if not path.exists():
        raise DataNotFoundError(
            "NIfTI file not found", path=path, fix="check the path and the data folder"
        )
    if path.is_dir():
        raise InvalidInputError(
            "expected a NIfTI file, got a folder", path=path, fix="pass a .nii or .nii.gz file"
        )
    try:
        version = _sniff_nifti(path)
        img = _load_image(path, version)
        array, axes, affine, meta = _decode(img, path, max_bytes)
        if canonical:
            array, axes, affine = _to_canonical(array, axes, affine)
        array, warnings = check_finite(array, path, nan_policy)
    except MedLDMError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read NIfTI file ({type(exc).__name__}: {exc})", path=path, fix=_READ_FIX
        ) from exc
    meta["canonical"] = bool(canonical)
    meta["warnings"] = meta["warnings"] + warnings
    stored_modality, stored_unit, meta["description"] = _parse_description_tag(
        meta.get("description", "")
    )
    modality = modality or stored_modality or "OT"
    if unit is None:
        unit = stored_unit or (UNIT_MR if modality == "MR" else UNIT_UNKNOWN)
    return MedImage(array, affine, axes, modality=modality, unit=unit, metadata=meta)


def _read_head(path: Path, n_bytes: int = 544) -> tuple[bytes, bool]:
    """First ``n_bytes`` of the (decompressed) file and whether it was gzip-compressed."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
        handle.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=handle) as gz:
                return gz.read(n_bytes), True
        return handle.read(n_bytes), False


def _sniff_nifti(path: Path) -> int:
    """Return the NIfTI version (1 or 2) from the header bytes, or raise.

    Checks ``sizeof_hdr`` (348 or 540, either byte order) and the magic string.
    """
    head, compressed = _read_head(path)
    version = None
    for order in "<>" if len(head) >= 4 else "":
        (sizeof_hdr,) = struct.unpack(f"{order}i", head[:4])
        if sizeof_hdr not in (348, 540):
            continue
        if len(head) < sizeof_hdr:
            raise InvalidInputError(
                f"header is truncated ({len(head)} bytes, {sizeof_hdr} expected)",
                path=path,
                fix=_READ_FIX,
            )
        if sizeof_hdr == 540 and head[4:8] in (b"n+2\x00", b"ni2\x00"):
            version = 2
        elif sizeof_hdr == 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
            version = 1
        elif sizeof_hdr == 348:
            raise UnsupportedFormatError(
                "this is an Analyze 7.5 header, not NIfTI (no 'n+1' magic)",
                path=path,
                fix="convert it to NIfTI (e.g. nibabel.load then save as .nii)",
            )
        break
    if version is None:
        raise _not_nifti(path)
    if compressed and not path.name.lower().endswith(".gz"):
        raise InvalidInputError(
            "file is gzip-compressed but its name does not end in .gz",
            path=path,
            fix="rename it to .nii.gz",
        )
    return version


def _not_nifti(path: Path) -> UnsupportedFormatError:
    return UnsupportedFormatError(
        "not a NIfTI file (no valid NIfTI-1/2 header)",
        path=path,
        fix="pass a .nii/.nii.gz image; for DICOM, TIFF or other formats use their readers",
    )


def _load_image(path: Path, version: int) -> Any:
    """nibabel image object (header parsed, pixels not yet read)."""
    import nibabel as nib

    # mmap=False: pixels are read into memory now (a file truncated or replaced later
    # cannot crash us through a stale memory map)
    if version == 2:
        return nib.Nifti2Image.from_filename(str(path), mmap=False)
    if path.name.lower().endswith((".hdr", ".hdr.gz")):
        return nib.Nifti1Pair.from_filename(str(path), mmap=False)
    return nib.Nifti1Image.from_filename(str(path), mmap=False)


def _decode(
    img: Any, path: Path, max_bytes: int | None
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, dict[str, Any]]:
    """Pixels (scaled), axis names, affine (mm) and metadata of a loaded nibabel image."""
    header = img.header
    shape = tuple(int(s) for s in header.get_data_shape())
    stored = header.get_data_dtype()
    slope, inter = _slope_inter(img)
    scaled = slope != 1.0 or inter != 0.0
    out_itemsize = 4 if (scaled or stored.kind == "f") else None
    if len(shape) < 2 or len(shape) > 5:
        raise UnsupportedFormatError(
            f"{len(shape)}-D NIfTI images are not supported (shape {shape})",
            path=path,
            fix="medldm reads 2D to 5D NIfTI images",
        )
    check_size(shape, stored, path, max_bytes, out_itemsize)
    raw = np.asarray(img.dataobj.get_unscaled())  # forces the read: truncation fails here
    if raw.shape != shape:
        raw = raw.reshape(shape)
    rgb = bool(raw.dtype.names)
    array = _apply_scaling(raw, slope, inter, scaled)
    array, axes = _nifti_axes(array, rgb, path)
    warnings: list[str] = []
    affine, source, code = _pick_affine(header, warnings)
    space_unit, time_unit = header.get_xyzt_units()
    factor = SPATIAL_UNIT_TO_MM.get(space_unit, 1.0)
    if factor != 1.0:
        affine = affine.copy()
        affine[:3, :] *= factor
    meta: dict[str, Any] = {
        "format": "nifti",
        "nifti_version": 2 if "Nifti2" in type(img).__name__ else 1,
        "source_path": str(path),
        "description": _text(header["descrip"]),
        "intent": _intent(header),
        "affine_source": source,
        "affine_code": code,
        "stored_dtype": str(stored),
        "spatial_unit_in_file": space_unit,
        "time_unit_in_file": time_unit,
        "warnings": warnings,
    }
    if scaled:
        meta["scl_slope"], meta["scl_inter"] = slope, inter
    if "t" in axes:
        step = float(header["pixdim"][4])
        if time_unit in TIME_UNIT_TO_S:  # "unknown" is taken as seconds
            meta["repetition_time_s"] = step * TIME_UNIT_TO_S[time_unit]
        else:  # hz, ppm, rads: spectral data, the 4th axis is not time
            meta["pixdim4"] = step
    return array, axes, affine, meta


def _slope_inter(img: Any) -> tuple[float, float]:
    """Scale factors nibabel will apply (1, 0 when the header has none)."""
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def _apply_scaling(raw: np.ndarray, slope: float, inter: float, scaled: bool) -> np.ndarray:
    """``raw * slope + inter`` as float32 (complex stays complex); integers kept if unscaled."""
    if raw.dtype.names:  # RGB24 / RGBA32 structured voxels
        return np.stack([raw[name] for name in raw.dtype.names], axis=-1)
    if raw.dtype.kind == "c":
        out = raw.astype(np.complex64 if raw.dtype.itemsize <= 8 else raw.dtype.newbyteorder("="))
    elif scaled or raw.dtype.kind == "f":
        out = raw.astype(np.float32, copy=False)
    else:
        return raw.astype(raw.dtype.newbyteorder("="), copy=False)
    if scaled:
        if out is raw or not out.flags.writeable:
            out = out.copy()
        out *= out.dtype.type(slope)
        out += out.dtype.type(inter)
    return out


def _nifti_axes(array: np.ndarray, rgb: bool, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Map NIfTI dims (x, y, z, t, u) to MedImage axes; RGB adds a trailing ``"c"``."""
    n = array.ndim - (1 if rgb else 0)
    names = ["x", "y", "z", "t", "c"][:n]
    if rgb:
        if "c" in names:
            raise UnsupportedFormatError(
                "RGB NIfTI with a vector dimension", path=path, fix="split the channels first"
            )
        names.append("c")
    if "c" in names and "t" in names:
        t, c = names.index("t"), names.index("c")
        if array.shape[t] == 1:
            array = np.squeeze(array, axis=t)
            names.remove("t")
        else:
            order = [i for i, a in enumerate(names) if a in ("x", "y", "z")] + [c, t]
            array = np.transpose(array, order)
            names = [names[i] for i in order]
    return array, tuple(names)


def _pick_affine(header: Any, warnings: list[str]) -> tuple[np.ndarray, str, str]:
    """sform if coded and valid, else qform if coded and valid, else the base affine."""
    for name in ("sform", "qform"):
        getter = header.get_sform if name == "sform" else header.get_qform
        affine, code = getter(coded=True)
        if affine is None or int(code) <= 0:
            continue
        affine = np.asarray(affine, dtype=np.float64)
        if np.all(np.isfinite(affine)) and abs(np.linalg.det(affine[:3, :3])) > 0:
            label = str(header.get_value_label(f"{name}_code"))
            return affine, name, label
        warnings.append(f"{name} is singular or not finite; ignored")
    warnings.append("no sform or qform in header: affine from pixdim only (orientation unknown)")
    return np.asarray(header.get_base_affine(), dtype=np.float64), "base", "unknown"


def _text(value: Any) -> str:
    raw = value.tobytes() if hasattr(value, "tobytes") else bytes(value)
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _intent(header: Any) -> dict[str, Any]:
    code, params, name = header.get_intent()
    return {"code": str(code), "params": [float(p) for p in params], "name": str(name)}


def _to_canonical(
    array: np.ndarray, axes: tuple[str, ...], affine: np.ndarray
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray]:
    """Flip/permute the spatial axes to the closest RAS+ orientation (no resampling).

    A 2D image is treated as one slice; it stays 2D unless the slice axis moves.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    two_d = "z" not in axes
    if two_d:
        array = array[:, :, np.newaxis]
    ornt = io_orientation(affine)
    affine = affine @ inv_ornt_aff(ornt, array.shape[:3])
    array = np.ascontiguousarray(apply_orientation(array, ornt))
    if two_d and array.shape[2] == 1:
        array = array[:, :, 0]
    else:
        axes = ("x", "y", "z", *axes[2:]) if two_d else axes
    return array, axes, affine


# --- writing ---------------------------------------------------------------------------
def write_nifti(
    image: MedImage,
    path: str | Path,
    *,
    overwrite: bool = False,
    dtype: DTypeLike | None = None,
) -> Path:
    """Write ``image`` to a NIfTI-1 file (``.nii`` or ``.nii.gz``) atomically.

    The affine goes into the sform exactly and into the qform (code 1, scanner); a
    sheared affine cannot be held by a qform, which then gets its closest rigid+zoom part.
    Units are mm (and seconds when there is a time axis, with
    ``metadata["repetition_time_s"]`` as pixdim[4]). A 2D image becomes one slice; axes
    ``"t"`` and ``"c"`` go to NIfTI dims 4 and 5.

    Parameters
    ----------
    dtype:
        Stored data type. Float data written as an integer type is scaled by nibabel
        (``scl_slope``/``scl_inter``); default: the array's dtype (bool as uint8, float16
        as float32, 64-bit integers as int32 when the values fit).
    overwrite:
        Replace an existing file; otherwise :class:`OutputExistsError` is raised.

    Returns
    -------
    The path written.
    """
    import nibabel as nib

    path = Path(path)
    if not is_nifti_name(path):
        raise InvalidInputError(
            "NIfTI output name must end in .nii or .nii.gz", path=path, fix="rename the output"
        )
    check_writable(path, overwrite)
    affine = _writable_affine(image, path)
    data = _to_nifti_order(image)
    out_dtype = _output_dtype(data, dtype)
    if dtype is None or data.dtype.kind == "b":  # explicit dtypes are scaled by nibabel
        data = data.astype(out_dtype if dtype is None else np.uint8, copy=False)
    try:
        img = nib.Nifti1Image(data, affine, dtype=out_dtype)
        header = img.header
        header.set_sform(affine, code=1)
        header.set_qform(affine, code=1, strip_shears=True)
        header.set_xyzt_units(xyz="mm", t="sec")
        if data.ndim >= 4 and "repetition_time_s" in image.metadata:
            header["pixdim"][4] = float(image.metadata["repetition_time_s"])
        header["descrip"] = _description_tag(image).encode("ascii", "replace")[:79]
        _set_intent(header, image.metadata.get("intent"))
    except MedLDMError:
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"cannot encode image as NIfTI ({type(exc).__name__}: {exc})",
            path=path,
            fix="check the affine is invertible and the dtype is supported by NIfTI",
        ) from exc
    with atomic_output(path, overwrite=overwrite) as tmp:
        nib.save(img, str(tmp))
    return path


def _writable_affine(image: MedImage, path: Path) -> np.ndarray:
    """The image's affine, with a 1 mm slice normal for a 2D image whose third column is 0.

    Raises :class:`InvalidInputError` for any other singular affine.
    """
    affine = image.affine.copy()
    if image.n_spatial == 2 and not np.any(affine[:3, 2]):
        normal = np.cross(affine[:3, 0], affine[:3, 1])
        if np.linalg.norm(normal) > 0:
            affine[:3, 2] = normal / np.linalg.norm(normal)
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidInputError(
            "affine is singular (a voxel axis has no extent in the world)",
            path=path,
            fix="give every spatial axis a non-zero, independent column in the affine",
        )
    return affine


_TAG_PREFIX = "medldm:"


def _description_tag(image: MedImage) -> str:
    """NIfTI ``descrip`` (80 bytes): modality and unit, so they survive a round trip."""
    description = str(image.metadata.get("description", ""))
    return f"{_TAG_PREFIX}{image.modality}|{image.unit}|{description}"


def _parse_description_tag(description: str) -> tuple[str | None, str | None, str]:
    """Inverse of :func:`_description_tag`: modality, unit and the user's description."""
    parts = description[len(_TAG_PREFIX) :].split("|", 2)
    if not description.startswith(_TAG_PREFIX) or len(parts) != 3:
        return None, None, description
    modality, unit, rest = parts
    return modality or None, unit or None, rest


def _to_nifti_order(image: MedImage) -> np.ndarray:
    """Array in NIfTI dim order (x, y, z[, t[, c]]), adding singleton z / t as needed."""
    array = image.array
    names = list(image.axes)
    if "z" not in names and len(names) > 2:  # a plain 2D image stays a 2D NIfTI
        array = np.expand_dims(array, 2)
        names.insert(2, "z")
    if "c" in names and "t" not in names:
        array = np.expand_dims(array, array.ndim)
        names.append("t")
    order = [names.index(a) for a in ("x", "y", "z", "t", "c") if a in names]
    return np.transpose(array, order)


def _output_dtype(data: np.ndarray, dtype: DTypeLike | None) -> np.dtype:
    """The on-disk dtype: explicit, or the array's made NIfTI-friendly."""
    if dtype is not None:
        return np.dtype(dtype)
    kind, size = data.dtype.kind, data.dtype.itemsize
    if kind == "b":
        return np.dtype(np.uint8)
    if kind == "f" and size < 4:
        return np.dtype(np.float32)
    if kind in "iu" and size == 8:
        small = np.dtype(np.int32 if kind == "i" else np.uint32)
        info = np.iinfo(small)
        if data.size == 0 or (data.min() >= info.min and data.max() <= info.max):
            return small
    return data.dtype.newbyteorder("=")


def _set_intent(header: Any, intent: Any) -> None:
    """Copy an intent dict (as produced by :func:`read_nifti`) into the header if valid."""
    if not isinstance(intent, dict) or intent.get("code") in (None, "none"):
        return
    try:
        header.set_intent(intent["code"], tuple(intent.get("params", ())), intent.get("name", ""))
    except Exception:  # an intent from another format: not worth failing the write
        return
