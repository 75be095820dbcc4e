"""Read DICOM images into :class:`~medldm.io.image.MedImage` with their geometry.

What is read
------------
* a single file (``.dcm``, no suffix, or gzipped ``.gz``), single- or multi-frame;
* a folder with one series, or several series (choose with ``series=`` by
  SeriesInstanceUID or SeriesNumber; :func:`list_dicom_series` lists them);
* enhanced multi-frame objects (per-frame functional groups: position, orientation,
  pixel measures and rescale per frame);
* 4D series (several volumes at the same slice positions) as ``axes = (x, y, z, t)``.

Geometry
--------
Slices are sorted along the slice normal by ImagePositionPatient (never by
InstanceNumber or file name). The slice step comes from the positions. When the step is
not parallel to the normal (CT gantry tilt) the affine is kept sheared, so every voxel
keeps its true position, and the tilt is reported in ``metadata["warnings"]`` and
``metadata["gantry_tilt_deg"]``. Uneven slice gaps are reported too; the affine then uses
the first gap (as dcm2niix does) and ``metadata["slice_positions_mm"]`` keeps the true
position of every slice along the normal. RescaleSlope/RescaleIntercept are applied per
slice (CT in Hounsfield units).

Pixel data in every transfer syntax that pydicom decodes with the pylibjpeg plugins
(JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE, deflate, big endian) is read.

Example
-------
>>> from pydicom.data import get_testdata_file
>>> img = read_dicom(get_testdata_file("CT_small.dcm"))
>>> img.array.shape, img.unit
((128, 128), 'HU')
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from medldm.errors import (
    DataNotFoundError,
    InvalidInputError,
    MedLDMError,
    SeriesSelectionError,
    UnsupportedFormatError,
)
from medldm.io.geometry import dicom_affine, slice_normal
from medldm.io.image import UNIT_HU, UNIT_MR, UNIT_UNKNOWN, MedImage
from medldm.io.limits import check_declared_size, max_image_bytes

#: Positions closer than this along the normal (mm) are the same slice.
POSITION_TOLERANCE_MM = 0.01
#: Orientation cosines may differ by this much inside one series.
ORIENTATION_TOLERANCE = 1e-4
#: Relative tolerance on pixel spacing inside one series.
SPACING_TOLERANCE = 1e-4
#: A step deviating from the normal by more than this (degrees) is a gantry tilt.
TILT_TOLERANCE_DEG = 0.01
#: Slice gaps differing by more than this (mm) make a series unevenly spaced.
GAP_TOLERANCE_MM = 0.01

_REQUIRED_IMAGE_TAGS = ("Rows", "Columns", "BitsAllocated", "PixelRepresentation")

_PATIENT_STUDY_KEYS = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
    "FrameOfReferenceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "SOPClassUID",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "PatientPosition",
)
_ACQUISITION_KEYS = (
    "SliceThickness",
    "KVP",
    "XRayTubeCurrent",
    "ExposureTime",
    "ConvolutionKernel",
    "GantryDetectorTilt",
    "MagneticFieldStrength",
    "EchoTime",
    "RepetitionTime",
    "InversionTime",
    "FlipAngle",
    "ScanningSequence",
    "SequenceName",
    "MRAcquisitionType",
    "ReceiveCoilName",
    "NumberOfAverages",
    "PixelBandwidth",
    "InPlanePhaseEncodingDirection",
    "AcquisitionMatrix",
    "PhotometricInterpretation",
)


# --------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------
@contextlib.contextmanager
def _blame(path: Path) -> Iterator[None]:
    """Turn any unexpected exception from pydicom's lazy parsing into an error naming
    ``path`` (pydicom decodes element values on first access, far from ``dcmread``)."""
    try:
        yield
    except (MedLDMError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise InvalidInputError(
            f"damaged DICOM header or pixel data ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="re-export the file from the scanner or PACS; it could not be parsed",
        ) from exc


def _dcmread(path: Path, *, headers_only: bool) -> Dataset:
    """Read one file (optionally gzipped) with pydicom; errors name the file."""
    try:
        if path.suffix == ".gz":
            limit = max_image_bytes()
            with gzip.open(path, "rb") as handle:
                data = handle.read(limit + 1)
            # A gzip bomb is refused before it fills memory.
            check_declared_size(len(data), path)
            raw = io.BytesIO(data)
            return pydicom.dcmread(raw, stop_before_pixels=headers_only, force=True)
        try:
            return pydicom.dcmread(path, stop_before_pixels=headers_only)
        except InvalidDicomError:
            # No 128-byte preamble: allowed by some writers; accept if it parses as DICOM.
            ds = pydicom.dcmread(path, stop_before_pixels=headers_only, force=True)
            if len(ds) == 0 or not any(tag.group > 0x0002 for tag in ds):
                raise
            return ds
    except MedLDMError:
        raise
    except (InvalidDicomError, EOFError, OSError, gzip.BadGzipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise DataNotFoundError("file not found", path=path) from exc
        raise InvalidInputError(
            f"not a readable DICOM file ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="check the file is a complete DICOM object (re-export it from the scanner/PACS)",
        ) from exc
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise InvalidInputError(
            f"corrupt DICOM header ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="re-export the file; it could not be parsed",
        ) from exc


def _looks_like_dicom(path: Path) -> bool:
    """Cheap test used when scanning folders: preamble 'DICM', gzip, or a group-8 tag."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if head[:2] == b"\x1f\x8b" and path.name.lower().endswith((".dcm.gz", ".gz")):
        return True
    # Preamble-less files start with a little-endian (0008,xxxx) or (0002,xxxx) group tag.
    return len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00") and head[3:4] == b"\x00"


def _iter_candidate_files(folder: Path) -> list[Path]:
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(root) / name
            if _looks_like_dicom(path):
                files.append(path)
    return sorted(files)


# --------------------------------------------------------------------------------------
# Series listing and selection
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series found in a folder."""

    uid: str
    number: int | None
    description: str
    modality: str
    n_files: int
    files: tuple[Path, ...] = field(repr=False)
    is_image: bool = True

    def __str__(self) -> str:
        number = "?" if self.number is None else self.number
        return (
            f"series {number} ({self.modality}, {self.n_files} files) "
            f"'{self.description}' uid={self.uid}"
        )


def _series_number(ds: Dataset) -> int | None:
    try:
        return int(ds.SeriesNumber)
    except (AttributeError, TypeError, ValueError):
        return None


def _scan_headers(path: Path) -> dict[Path, Dataset]:
    if path.is_file():
        return {path: _dcmread(path, headers_only=True)}
    files = _iter_candidate_files(path)
    headers = {}
    for file in files:
        try:
            headers[file] = _dcmread(file, headers_only=True)
        except InvalidInputError:
            if len(files) == 1:
                raise
            # A folder may hold junk (DIRFILE, reports): skip files that are not DICOM at all.
            continue
    if not headers:
        raise InvalidInputError(
            "no DICOM files found in folder",
            path=path,
            fix="point to a folder holding .dcm files (or a single DICOM file)",
        )
    return headers


_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR, DIRFILE)


def _is_directory_object(ds: Dataset) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop = str(ds.get("SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", "") or "")
    return sop == _DIRECTORY_SOP_CLASS or "DirectoryRecordSequence" in ds


def _group_series(headers: dict[Path, Dataset]) -> list[SeriesInfo]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for file, ds in headers.items():
        with _blame(file):
            if _is_directory_object(ds) and len(headers) > 1:
                continue
            groups[str(ds.get("SeriesInstanceUID", "")) or "<no SeriesInstanceUID>"].append(file)
    infos = []
    for uid, files in groups.items():
        first = headers[files[0]]
        with _blame(files[0]):
            infos.append(
                SeriesInfo(
                    uid=uid,
                    number=_series_number(first),
                    description=str(first.get("SeriesDescription", "")),
                    modality=str(first.get("Modality", "")),
                    n_files=len(files),
                    files=tuple(sorted(files)),
                    is_image="Rows" in first or "Columns" in first,
                )
            )
    return sorted(infos, key=lambda s: (s.number is None, s.number or 0, s.uid))


def list_dicom_series(path: str | Path) -> list[SeriesInfo]:
    """List the series in a DICOM folder (or the one series of a file).

    Example
    -------
    >>> from pydicom.data import get_testdata_file
    >>> [s.modality for s in list_dicom_series(get_testdata_file("CT_small.dcm"))]
    ['CT']
    """
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError("path does not exist", path=path)
    return _group_series(_scan_headers(path))


def _select_series(path: Path, series: list[SeriesInfo], choice: str | int | None) -> SeriesInfo:
    if choice is None:
        if len(series) == 1:
            return series[0]
        images = [s for s in series if s.is_image]
        if len(images) == 1:  # e.g. a CT series beside its dose report
            return images[0]
        listing = "; ".join(str(s) for s in series)
        raise SeriesSelectionError(
            f"folder holds {len(series)} series: {listing}",
            path=path,
            fix="pass series=<SeriesInstanceUID or SeriesNumber> to pick one",
        )
    listing = "; ".join(str(s) for s in series)
    for info in series:
        if str(choice) == info.uid:
            return info
    by_number = [s for s in series if s.number is not None and str(choice) == str(s.number)]
    if len(by_number) == 1:
        return by_number[0]
    if len(by_number) > 1:
        raise SeriesSelectionError(
            f"{len(by_number)} series share the number {choice}: {listing}",
            path=path,
            fix="pick the series by its SeriesInstanceUID instead",
        )
    listing = "; ".join(str(s) for s in series)
    raise SeriesSelectionError(
        f"no series matches {choice!r}; found: {listing}",
        path=path,
        fix="pass one of the listed SeriesInstanceUIDs or SeriesNumbers",
    )


# --------------------------------------------------------------------------------------
# Frames: one 2D plane each, from a single-frame file or a frame of a multi-frame object
# --------------------------------------------------------------------------------------
@dataclass
class _Frame:
    source: Path
    frame_index: int | None
    position: np.ndarray | None  # LPS mm
    orientation: np.ndarray | None  # 6 cosines
    pixel_spacing: np.ndarray | None  # [between rows, between columns] mm
    slope: float
    intercept: float
    order_key: tuple
    sop_uid: str
    pixels: Callable[[], np.ndarray]
    thickness: float | None = None


def _floats(value: Any, n: int, what: str, path: Path) -> np.ndarray | None:
    if value is None:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} is not numeric: {value!r}", path=path) from exc
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise InvalidInputError(
            f"{what} must hold {n} finite numbers, got {value!r}",
            path=path,
            fix="the header is damaged; re-export the series",
        )
    return out


def _float_or(value: Any, default: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if np.isfinite(out) else default


def _check_image_object(ds: Dataset, path: Path, *, has_pixels: bool = True) -> None:
    """Refuse non-image objects and images missing the tags needed to decode them.

    With ``has_pixels=False`` (a header read with ``stop_before_pixels``) an object counts
    as an image when it has Rows and Columns.
    """
    pixel_keys = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
    is_image = any(k in ds for k in pixel_keys) if has_pixels else "Rows" in ds or "Columns" in ds
    if not is_image:
        sop = ds.get("SOPClassUID")
        kind = getattr(sop, "name", None) or str(sop or "unknown SOP class")
        raise UnsupportedFormatError(
            f"not an image: {kind} has no pixel data",
            path=path,
            fix="pass an image series (CT, MR, ...); structured reports, RT plans and "
            "waveforms cannot be reconstructed",
        )
    missing = [tag for tag in _REQUIRED_IMAGE_TAGS if tag not in ds]
    if missing:
        raise InvalidInputError(
            f"missing required image tags: {', '.join(missing)}",
            path=path,
            fix="the file is incomplete; re-export it",
        )
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        raise InvalidInputError(
            "missing Transfer Syntax UID (0002,0010): the pixel encoding is unknown",
            path=path,
            fix="re-export the file with its file meta information (Part 10 format)",
        )


def _decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
    try:
        return np.asarray(ds.pixel_array)
    except MedLDMError:
        raise
    except Exception as exc:
        text = str(exc)
        if "length" in text.lower() or "truncat" in text.lower() or isinstance(exc, EOFError):
            raise InvalidInputError(
                f"truncated or damaged pixel data ({text})",
                path=path,
                fix="the file is incomplete; copy it again from the source",
            ) from exc
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        raise InvalidInputError(
            f"cannot decode pixel data (transfer syntax {getattr(syntax, 'name', syntax)}: {text})",
            path=path,
            fix="install the pydicom plugins (pylibjpeg, pylibjpeg-libjpeg, "
            "pylibjpeg-openjpeg, pylibjpeg-rle) or re-export uncompressed",
        ) from exc


def _declared_bytes(ds: Dataset) -> int:
    frames = int(_float_or(ds.get("NumberOfFrames", 1), 1))
    samples = int(_float_or(ds.get("SamplesPerPixel", 1), 1))
    bits = int(_float_or(ds.get("BitsAllocated", 16), 16))
    return int(ds.Rows) * int(ds.Columns) * max(frames, 1) * max(samples, 1) * max(bits, 8) // 8


def _frames_from_single(path: Path, ds: Dataset) -> list[_Frame]:
    def pixels(ds: Dataset = ds, path: Path = path) -> np.ndarray:
        return _decode_pixels(ds, path)

    order = (
        _float_or(ds.get("TemporalPositionIdentifier"), 0.0),
        _float_or(ds.get("AcquisitionNumber"), 0.0),
        _float_or(ds.get("InstanceNumber"), 0.0),
        str(path),
    )
    return [
        _Frame(
            source=path,
            frame_index=None,
            position=_floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", path),
            orientation=_floats(
                ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", path
            ),
            pixel_spacing=_floats(ds.get("PixelSpacing"), 2, "PixelSpacing", path),
            slope=_float_or(ds.get("RescaleSlope"), 1.0),
            intercept=_float_or(ds.get("RescaleIntercept"), 0.0),
            order_key=order,
            sop_uid=str(ds.get("SOPInstanceUID", "")),
            pixels=pixels,
            thickness=_float_or(ds.get("SliceThickness"), float("nan")),
        )
    ]


def _functional(
    shared: Dataset | None, frame_groups: Dataset | None, sequence: str
) -> Dataset | None:
    """Item of a functional-group macro: per-frame first, then shared."""
    for groups in (frame_groups, shared):
        if groups is not None and sequence in groups and len(groups[sequence].value) > 0:
            return groups[sequence].value[0]
    return None


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    if keyword in ds and ds[keyword].value is not None and len(ds[keyword].value) > 0:
        return ds[keyword].value[0]
    return None


def _frames_from_multiframe(path: Path, ds: Dataset) -> list[_Frame]:
    n_frames = int(_float_or(ds.get("NumberOfFrames", 1), 1))
    cache: dict[str, np.ndarray] = {}

    def all_pixels() -> np.ndarray:
        if "array" not in cache:
            array = _decode_pixels(ds, path)
            if n_frames == 1 or array.shape[0] != n_frames:
                array = array[np.newaxis]
            cache["array"] = array
        return cache["array"]

    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    if per_frame is not None and len(per_frame) < n_frames:
        raise InvalidInputError(
            f"{len(per_frame)} per-frame functional groups for {n_frames} frames",
            path=path,
            fix="the enhanced multi-frame header is inconsistent; re-export it",
        )
    # Classic multi-frame: one position, frames stacked along the normal by a spacing tag.
    base_position = _floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", path)
    base_orientation = _floats(
        ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", path
    )
    base_spacing = _floats(ds.get("PixelSpacing"), 2, "PixelSpacing", path)
    offsets = ds.get("GridFrameOffsetVector")
    classic_step = _float_or(ds.get("SpacingBetweenSlices"), _float_or(ds.get("SliceThickness"), 0))

    frames = []
    for index in range(n_frames):
        groups = per_frame[index] if per_frame is not None else None
        position, orientation, spacing = base_position, base_orientation, base_spacing
        slope = _float_or(ds.get("RescaleSlope"), 1.0)
        intercept = _float_or(ds.get("RescaleIntercept"), 0.0)
        thickness = _float_or(ds.get("SliceThickness"), float("nan"))
        order: tuple = (index,)
        if per_frame is not None:
            plane = _functional(shared, groups, "PlanePositionSequence")
            if plane is not None:
                position = _floats(plane.get("ImagePositionPatient"), 3, "frame position", path)
            orient = _functional(shared, groups, "PlaneOrientationSequence")
            if orient is not None:
                orientation = _floats(
                    orient.get("ImageOrientationPatient"), 6, "frame orientation", path
                )
            measures = _functional(shared, groups, "PixelMeasuresSequence")
            if measures is not None:
                spacing = _floats(measures.get("PixelSpacing"), 2, "frame pixel spacing", path)
                thickness = _float_or(measures.get("SliceThickness"), thickness)
            transform = _functional(shared, groups, "PixelValueTransformationSequence")
            if transform is not None:
                slope = _float_or(transform.get("RescaleSlope"), slope)
                intercept = _float_or(transform.get("RescaleIntercept"), intercept)
            content = _functional(shared, groups, "FrameContentSequence")
            if content is not None:
                dims = content.get("DimensionIndexValues")
                dims = (
                    [int(v) for v in (dims if isinstance(dims, Sequence) else [dims])]
                    if (dims is not None)
                    else []
                )
                order = (_float_or(content.get("TemporalPositionIndex"), 0.0), *dims, index)
        elif position is not None and orientation is not None:
            normal = slice_normal(orientation)
            if offsets is not None and len(offsets) == n_frames:
                position = base_position + normal * float(offsets[index])
            else:
                position = base_position + normal * classic_step * index

        def pixels(index: int = index) -> np.ndarray:
            return all_pixels()[index]

        frames.append(
            _Frame(
                source=path,
                frame_index=index,
                position=position,
                orientation=orientation,
                pixel_spacing=spacing,
                slope=slope,
                intercept=intercept,
                order_key=order,
                sop_uid=str(ds.get("SOPInstanceUID", "")),
                pixels=pixels,
                thickness=thickness,
            )
        )
    return frames


# --------------------------------------------------------------------------------------
# Assembly: frames -> sorted volume + affine
# --------------------------------------------------------------------------------------
def _consistent(frames: list[_Frame], path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Check orientation and pixel spacing agree inside the series; return them."""
    orientation = frames[0].orientation
    spacing = frames[0].pixel_spacing
    for frame in frames[1:]:
        if (frame.orientation is None) != (orientation is None) or (
            orientation is not None
            and np.max(np.abs(frame.orientation - orientation)) > ORIENTATION_TOLERANCE
        ):
            raise InvalidInputError(
                "inconsistent ImageOrientationPatient inside one series "
                f"({_where(frames[0])} vs {_where(frame)}): mixed series or a localizer",
                path=path,
                fix="remove the odd images (e.g. scouts) or pick files of one orientation",
            )
        if (frame.pixel_spacing is None) != (spacing is None) or (
            spacing is not None
            and np.max(np.abs(frame.pixel_spacing - spacing) / np.maximum(spacing, 1e-9))
            > SPACING_TOLERANCE
        ):
            raise InvalidInputError(
                f"inconsistent PixelSpacing inside one series ({_where(frames[0])} vs "
                f"{_where(frame)})",
                path=path,
                fix="pick files with one pixel spacing (they are probably two series)",
            )
    if orientation is None:
        orientation = np.array([1.0, 0, 0, 0, 1.0, 0])
    if spacing is None:
        spacing = np.array([1.0, 1.0])
    return orientation, spacing


def _where(frame: _Frame) -> str:
    return frame.source.name + ("" if frame.frame_index is None else f" frame {frame.frame_index}")


def _sort_into_volume(
    frames: list[_Frame], normal: np.ndarray, path: Path
) -> tuple[list[list[_Frame]], np.ndarray]:
    """Group frames by slice position along ``normal``; return ``slices[z][t]`` and the
    positions (mm along the normal) of the slices."""
    distances = np.array([float(f.position @ normal) for f in frames])
    order = np.argsort(distances, kind="stable")
    slices: list[list[_Frame]] = []
    slice_distances: list[float] = []
    for index in order:
        if slices and abs(distances[index] - slice_distances[-1]) <= POSITION_TOLERANCE_MM:
            slices[-1].append(frames[index])
        else:
            slices.append([frames[index]])
            slice_distances.append(distances[index])
    counts = {len(s) for s in slices}
    if len(counts) != 1:
        raise InvalidInputError(
            f"slice positions repeat unevenly ({sorted(counts)} images per position): "
            "missing or duplicated images",
            path=path,
            fix="check the series is complete; remove duplicated files",
        )
    for group in slices:
        group.sort(key=lambda f: f.order_key)
    return slices, np.array(slice_distances)


def _assemble(
    frames: list[_Frame], path: Path, warnings: list[str]
) -> tuple[np.ndarray, np.ndarray, dict]:
    orientation, pixel_spacing = _consistent(frames, path)
    normal = slice_normal(orientation)
    geometry: dict[str, Any] = {}
    has_positions = all(f.position is not None for f in frames)
    if not has_positions:
        if len({f.source for f in frames}) > 1:
            raise InvalidInputError(
                "ImagePositionPatient missing: the slices cannot be ordered in space",
                path=path,
                fix="use a series whose images carry ImagePositionPatient",
            )
        # One (multi-)frame object without geometry: keep the frames in file order.
        step = frames[0].thickness
        step = step if step is not None and np.isfinite(step) and step > 0 else 1.0
        warnings.append(
            "no ImagePositionPatient: origin set to 0, "
            f"frames stacked in file order {step:g} mm apart"
        )
        for index, frame in enumerate(frames):
            frame.position = normal * step * index
    if all(f.orientation is None for f in frames):
        warnings.append("no ImageOrientationPatient: axial orientation assumed")
    if all(f.pixel_spacing is None for f in frames):
        warnings.append("no PixelSpacing: 1 mm pixels assumed")

    slices, distances = _sort_into_volume(frames, normal, path)
    n_slices, n_volumes = len(slices), len(slices[0])
    first = slices[0][0].position
    if n_slices > 1:
        gaps = np.diff(distances)
        steps = np.diff(np.array([s[0].position for s in slices]), axis=0)
        uneven = float(np.ptp(gaps)) > GAP_TOLERANCE_MM
        step = steps[0] if uneven else (slices[-1][0].position - first) / (n_slices - 1)
        if uneven:
            warnings.append(
                f"uneven slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm; "
                "the affine uses the first gap, metadata['slice_positions_mm'] has them all"
            )
        cos_angle = abs(float(step @ normal)) / float(np.linalg.norm(step))
        tilt = float(np.degrees(np.arccos(np.clip(cos_angle, -1.0, 1.0))))
        if tilt > TILT_TOLERANCE_DEG:
            warnings.append(
                f"gantry tilt of {tilt:.2f} degrees: the affine is sheared so that every voxel "
                "keeps its scanner position"
            )
            geometry["gantry_tilt_deg"] = tilt
        geometry["slice_positions_mm"] = [float(d - distances[0]) for d in distances]
    else:
        thickness = slices[0][0].thickness
        step = normal * (
            thickness if thickness and np.isfinite(thickness) and thickness > 0 else 1.0
        )
    affine = dicom_affine(orientation, pixel_spacing, first, step)

    planes = []
    for group in slices:
        volume_planes = []
        for frame in group:
            pixels = frame.pixels()
            values = pixels.astype(np.float32, copy=False)
            if frame.slope != 1.0 or frame.intercept != 0.0:
                values = values * np.float32(frame.slope) + np.float32(frame.intercept)
            volume_planes.append(values)
        planes.append(volume_planes)
    shapes = {p.shape for group in planes for p in group}
    if len(shapes) != 1:
        raise InvalidInputError(
            f"images of different sizes in one series: {sorted(shapes)}",
            path=path,
            fix="pick files of one series (Rows/Columns must agree)",
        )
    # planes[z][t] has shape (rows, columns[, samples]) -> array[x=column, y=row, z, t, ...]
    stacked = np.stack([np.stack(group, axis=-1) for group in planes], axis=-2)
    # stacked: (rows, columns, [samples,] z, t)
    if stacked.ndim == 5:  # colour: move samples after the spatial axes
        stacked = np.moveaxis(stacked, 2, -1)  # rows, cols, z, t, samples
    array = np.swapaxes(stacked, 0, 1)
    geometry["n_volumes"] = n_volumes
    geometry["source_frames"] = (
        [[_where(f) for f in group] for group in slices] if len(frames) <= 4096 else None
    )
    geometry["SOPInstanceUIDs"] = [group[0].sop_uid for group in slices]
    return array, affine, geometry


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def _metadata(ds: Dataset, path: Path, files: Sequence[Path]) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom", "source": str(path)}
    for key in (*_PATIENT_STUDY_KEYS, *_ACQUISITION_KEYS):
        value = ds.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            meta[key] = [str(v) for v in value]
        elif isinstance(value, (int, float)):
            meta[key] = value
        else:
            meta[key] = str(value)
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None:
        meta["TransferSyntaxUID"] = str(syntax)
        meta["TransferSyntax"] = getattr(syntax, "name", str(syntax))
    meta["source_files"] = [str(f) for f in files]
    return meta


def _unit(ds: Dataset, modality: str) -> str:
    rescale_type = str(ds.get("RescaleType", "")).upper()
    if modality == "CT" and rescale_type in ("", "HU"):
        return UNIT_HU
    if modality == "MR":
        return UNIT_MR
    if modality == "PT" and "Units" in ds:
        return str(ds.Units)
    return rescale_type.lower() if rescale_type and rescale_type != "US" else UNIT_UNKNOWN


def read_dicom(
    path: str | Path,
    series: str | int | None = None,
    *,
    max_bytes: int | None = None,
) -> MedImage:
    """Read a DICOM file or series folder into a :class:`MedImage`.

    Parameters
    ----------
    path:
        A DICOM file (``.dcm``, no suffix, or ``.gz``) or a folder (searched recursively).
    series:
        SeriesInstanceUID or SeriesNumber, needed when the folder holds several series.
    max_bytes:
        Refuse images whose declared pixel data exceeds this many bytes (default from
        ``MEDLDM_MAX_IMAGE_BYTES`` or 8 GiB) before anything is decoded.

    Returns
    -------
    MedImage
        ``array[x, y]`` for one slice, ``array[x, y, z]`` for a volume and
        ``array[x, y, z, t]`` for several volumes, float32 in physical units (HU for CT)
        with a ``"c"`` axis last for colour images; RAS+ affine in mm.

    Raises
    ------
    InvalidInputError, UnsupportedFormatError, SeriesSelectionError
        With the file named and a fix: corrupt files, non-image objects, mixed series,
        inconsistent geometry, truncated pixel data, missing tags.
    """
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError("path does not exist", path=path, fix="check the path")
    headers = _scan_headers(path)
    chosen = _select_series(path, _group_series(headers), series)
    frames: list[_Frame] = []
    first_ds: Dataset | None = None
    multiframe_files = 0
    for file in chosen.files:
        with _blame(file):
            header = headers[file]
            _check_image_object(header, file, has_pixels=False)
            check_declared_size(_declared_bytes(header), file, max_bytes=max_bytes)
            ds = _dcmread(file, headers_only=False)
            _check_image_object(ds, file)
            first_ds = first_ds or ds
            if int(_float_or(ds.get("NumberOfFrames", 1), 1)) > 1 or (
                "PerFrameFunctionalGroupsSequence" in ds
            ):
                multiframe_files += 1
                frames.extend(_frames_from_multiframe(file, ds))
            else:
                frames.extend(_frames_from_single(file, ds))
    assert first_ds is not None
    with _blame(path if len(chosen.files) > 1 else chosen.files[0]):
        return _to_image(path, chosen, frames, first_ds, multiframe_files)


def _to_image(
    path: Path, chosen: SeriesInfo, frames: list[_Frame], first_ds: Dataset, multiframe_files: int
) -> MedImage:
    if multiframe_files and len(chosen.files) > 1:
        raise InvalidInputError(
            f"series mixes {multiframe_files} multi-frame objects with other files",
            path=path,
            fix="read each multi-frame file on its own",
        )
    warnings: list[str] = []
    array, affine, geometry = _assemble(frames, path, warnings)
    n_spatial_z = array.shape[2]
    n_volumes = geometry["n_volumes"]
    colour = array.ndim == 5
    axes = ["x", "y", "z", "t"]
    if n_volumes == 1:
        array = array[:, :, :, 0]
        axes.remove("t")
    if n_spatial_z == 1 and n_volumes == 1:
        array = array[:, :, 0]
        axes.remove("z")
    if colour:
        axes.append("c")
    modality = str(first_ds.get("Modality", "OT")) or "OT"
    metadata = _metadata(first_ds, path, chosen.files)
    metadata.update({k: v for k, v in geometry.items() if v is not None})
    if "MOSAIC" in [str(v).upper() for v in first_ds.get("ImageType", [])]:
        warnings.append(
            "Siemens mosaic: slices are tiled in each image and are not unpacked; "
            "convert with dcm2niix first"
        )
    if str(first_ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        warnings.append("MONOCHROME1: low values display white; values are kept as stored")
    metadata["warnings"] = warnings
    return MedImage(
        array=array,
        affine=affine,
        axes=tuple(axes),
        modality=modality,
        unit=_unit(first_ds, modality),
        metadata=metadata,
    )
