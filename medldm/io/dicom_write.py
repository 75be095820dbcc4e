"""Write a :class:`~medldm.io.image.MedImage` as a DICOM *derived* series.

One file per slice (``IM_00001.dcm``, ``IM_00002.dcm``...), Explicit VR Little Endian,
with a proper file meta header, so the series reads back with medldm, pydicom, dcm2niix
and PACS viewers, and passes dciodvfy without errors.

SOP class
---------
* ``CT``: CT Image Storage; ``MR``: MR Image Storage. Type 1 attributes the source does
  not give are filled with neutral values (MR ``ScanningSequence`` ``RM`` (research mode),
  ``SequenceVariant`` ``NONE``); type 2 attributes (``KVP``, ``EchoTime``...) are copied
  from the source metadata or left empty.
* any other modality: Secondary Capture Image Storage, still with the Image Plane
  attributes (position, orientation, spacing: a standard extended SOP class), so the
  geometry survives; dciodvfy lists them as warnings, not errors.

Identity
--------
By default a new study, series and instances (``pydicom.uid.generate_uid``). With a
``source`` image that came from DICOM (its ``metadata`` holds ``StudyInstanceUID``...),
the derived series joins the source's study (``same_study=None`` or ``True``): patient and
study attributes are copied and the Frame of Reference is shared. The patient attributes
are copied from the source in both cases (a derived image is of the same patient). Every
file references its source slice (or all source slices when the slice counts differ) in
SourceImageSequence and ReferencedImageSequence.

Values
------
Pixels are stored as 16-bit integers with ``value = stored * RescaleSlope +
RescaleIntercept`` (see :func:`choose_rescale`):

* integer values (any dtype, e.g. CT in HU) that fit int16 or uint16: slope 1, intercept
  0, stored exactly; integer values spanning at most 65535: uint16, slope 1, intercept =
  the minimum; stored exactly.
* anything else (float MR data, fractional values): uint16 over the full range, slope =
  (max - min) / 65534, intercept = min, so reading back is within ``slope / 2``.

RescaleType is ``HU`` for CT in Hounsfield units and ``US`` (unspecified) otherwise.
Window centre/width come from the 1st-99th percentiles of the values.

Geometry
--------
From the affine via :func:`~medldm.io.geometry.affine_to_dicom`: ImageOrientationPatient
(columns 0 and 1, normalised), PixelSpacing, ImagePositionPatient of voxel ``(0, 0, k)``
for slice ``k``, SliceLocation (position along the slice normal), SliceThickness and
SpacingBetweenSlices (distance between slices along the normal). Pixel data of slice
``k`` is ``array[:, :, k].T`` (DICOM rows run along ``y``, columns along ``x``).

.. warning::
   A sheared affine (CT gantry tilt: the slice step is not parallel to the normal) is
   written exactly: every slice's ImagePositionPatient follows the affine, while the
   orientation stays the (orthonormal) in-plane directions. DICOM has no field for the
   shear, so readers that assume a slice stack along the normal (rather than using the
   positions) misplace the slices; medldm and dcm2niix read them back correctly.

Example
-------
>>> import numpy as np, tempfile, pathlib, pydicom
>>> img = MedImage(np.arange(24.0).reshape(2, 3, 4), np.diag([-0.5, -0.5, 2.0, 1]), modality="MR")
>>> files = write_dicom_series(img, pathlib.Path(tempfile.mkdtemp()) / "series")
>>> [f.name for f in files][:2], len(files)
(['IM_00001.dcm', 'IM_00002.dcm'], 4)
>>> ds = pydicom.dcmread(files[1])
>>> ds.Rows, ds.Columns, list(ds.ImageType)
(3, 2, ['DERIVED', 'SECONDARY', 'OTHER'])
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import format_number_as_ds

from medldm._version import __version__
from medldm.errors import InvalidInputError, OutputExistsError
from medldm.io.geometry import affine_to_dicom, slice_normal
from medldm.io.image import UNIT_HU, UNIT_UNKNOWN, MedImage
from medldm.utils.files import atomic_output

__all__ = ["Rescale", "choose_rescale", "write_dicom_series"]

#: File name pattern of the written slices (1-based instance number).
FILE_PATTERN = "IM_{:05d}.dcm"

#: SOP class per modality; any other modality is written as Secondary Capture.
SOP_CLASS_BY_MODALITY = {
    "CT": pydicom.uid.CTImageStorage,
    "MR": pydicom.uid.MRImageStorage,
}

#: Largest stored code used when scaling to the uint16 range (one code of margin, so the
#: maximum never rounds past 65535 after the slope is written with 16 characters).
_MAX_CODE = 65534

#: In-plane axes whose cosines differ from orthogonal by more than this cannot be DICOM.
_ORTHOGONALITY_TOLERANCE = 1e-4

#: Purpose of reference of SourceImageSequence items (DICOM CID 7202).
_SOURCE_PURPOSE = ("DCM", "121322", "Source image for image processing operation")


def _version() -> str:
    return str(__version__)


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rescale:
    """How real values map to stored 16-bit codes: ``value = stored * slope + intercept``.

    ``signed`` selects int16 (PixelRepresentation 1) over uint16 (0). ``slope`` and
    ``intercept`` are exactly the numbers written as DS (at most 16 characters), so a
    reader recomputes the same values.
    """

    slope: float
    intercept: float
    signed: bool

    @property
    def dtype(self) -> np.dtype:
        """Little-endian NumPy dtype of the stored codes."""
        return np.dtype("<i2" if self.signed else "<u2")

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored codes of ``values`` (rounded to nearest, clipped to the dtype range).

        >>> Rescale(0.5, -1.0, False).encode(np.array([-1.0, 0.0, 1.2])).tolist()
        [0, 2, 4]
        """
        info = np.iinfo(self.dtype)
        codes = np.rint((np.asarray(values, np.float64) - self.intercept) / self.slope)
        return np.clip(codes, info.min, info.max).astype(self.dtype)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Real values (float64) of stored ``codes``."""
        return np.asarray(codes, np.float64) * self.slope + self.intercept


def _ds_number(value: float) -> float:
    """``value`` as it reads back from a DS string of at most 16 characters."""
    return float(format_number_as_ds(float(value)))


def choose_rescale(values: np.ndarray) -> Rescale:
    """Pick the 16-bit storage (int16/uint16, slope, intercept) losing least precision.

    Integer-valued data that fit 16 bits are stored exactly with slope 1; anything else is
    spread over the uint16 range, with a quantisation error of at most ``slope / 2``.

    >>> choose_rescale(np.array([-1024.0, 3071.0]))
    Rescale(slope=1.0, intercept=0.0, signed=True)
    >>> choose_rescale(np.array([-2000, 60000]))
    Rescale(slope=1.0, intercept=-2000.0, signed=False)
    >>> r = choose_rescale(np.array([0.0, 0.25, 655.34]))
    >>> r.slope, r.intercept, r.signed
    (0.01, 0.0, False)
    """
    values = np.asarray(values)
    if values.size == 0:
        return Rescale(1.0, 0.0, False)
    low, high = float(np.min(values)), float(np.max(values))
    integral = values.dtype.kind in "biu" or bool(np.all(values == np.round(values)))
    if integral:
        if low >= 0 and high <= 65535:
            return Rescale(1.0, 0.0, False)
        if low >= -32768 and high <= 32767:
            return Rescale(1.0, 0.0, True)
        if high - low <= 65535 and _ds_number(low) == low:
            return Rescale(1.0, low, False)
    if high == low:
        return Rescale(1.0, _ds_number(low), False)
    intercept = _ds_number(low)
    slope = _ds_number((high - intercept) / _MAX_CODE)
    if (high - intercept) / slope > _MAX_CODE + 0.5:  # DS rounding made the slope too small
        slope = _ds_number(slope * (1 + 1e-9))
    return Rescale(slope, intercept, False)


def _window(values: np.ndarray) -> tuple[float, float]:
    """Window centre and width (value units) from the 1st and 99th percentiles.

    The width is at least 1 (DICOM requires ``WindowWidth >= 1``).

    >>> _window(np.arange(101.0))
    (50.0, 98.0)
    """
    flat = np.asarray(values, np.float64).ravel()
    if flat.size > 1_000_000:  # percentiles of a regular subsample are close enough
        flat = flat[:: flat.size // 1_000_000]
    low, high = np.percentile(flat, [1.0, 99.0])
    return float((low + high) / 2), float(max(high - low, 1.0))


# --------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Geometry:
    orientation: list[float]  # ImageOrientationPatient (row cosine, column cosine), LPS
    pixel_spacing: list[float]  # [between rows, between columns] mm
    positions: list[list[float]]  # ImagePositionPatient per slice, LPS mm
    normal: np.ndarray  # unit slice normal, LPS
    thickness: float  # mm
    spacing_between: float | None  # mm along the normal, None for one slice


def _geometry(image: MedImage, n_slices: int) -> _Geometry:
    """DICOM Image Plane values of every slice of ``image`` (see module docstring)."""
    geo = affine_to_dicom(image.affine)
    row_cos = np.asarray(geo["ImageOrientationPatient"][:3])
    col_cos = np.asarray(geo["ImageOrientationPatient"][3:])
    if not all(np.isfinite(geo["PixelSpacing"])) or min(geo["PixelSpacing"]) <= 0:
        raise InvalidInputError(
            "the affine has a zero in-plane axis", fix="pass a non-singular affine"
        )
    if abs(float(row_cos @ col_cos)) > _ORTHOGONALITY_TOLERANCE:
        raise InvalidInputError(
            f"the in-plane axes are not orthogonal (cosine {float(row_cos @ col_cos):.3g}); "
            "DICOM cannot store such a slice",
            fix="resample the image onto an orthogonal grid before writing DICOM",
        )
    normal = slice_normal(geo["ImageOrientationPatient"])
    step = np.asarray(geo["SliceStep"])
    first = np.asarray(geo["ImagePositionPatient"])
    positions = [(first + k * step).tolist() for k in range(n_slices)]
    along_normal = abs(float(step @ normal))
    if n_slices > 1 and along_normal < 1e-6:
        raise InvalidInputError(
            "the slices of this volume lie in one plane (the affine's slice step has no "
            "component along the slice normal)",
            fix="pass an affine whose third column points out of the slice plane",
        )
    thickness = (
        along_normal if along_normal > 0 else float(image.metadata.get("SliceThickness", 0) or 0)
    )
    return _Geometry(
        orientation=[*row_cos.tolist(), *col_cos.tolist()],
        pixel_spacing=list(geo["PixelSpacing"]),
        positions=positions,
        normal=normal,
        thickness=thickness,
        spacing_between=along_normal if n_slices > 1 and along_normal > 0 else None,
    )


def _direction_code(cosine: Sequence[float]) -> str:
    """Patient-orientation code of an LPS direction, main component first (e.g. ``"LP"``).

    >>> _direction_code([0.0, -0.2, -0.98])
    'FA'
    """
    letters = [("L", "R"), ("P", "A"), ("H", "F")]
    order = np.argsort(-np.abs(np.asarray(cosine, np.float64)))
    code = ""
    for axis in order:
        value = float(cosine[axis])
        if abs(value) > 1e-4:
            code += letters[axis][0 if value > 0 else 1]
    return code


def _patient_orientation(orientation: Sequence[float]) -> list[str]:
    """PatientOrientation (row direction, column direction) from ImageOrientationPatient.

    >>> _patient_orientation([1, 0, 0, 0, 1, 0])
    ['L', 'P']
    """
    return [_direction_code(orientation[:3]), _direction_code(orientation[3:])]


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------
def _slices_array(image: MedImage) -> np.ndarray:
    """``image.array`` as ``[x, y, z]`` (2D images get one slice); refuse the rest."""
    array = image.array
    axes = list(image.axes)
    for axis in ("t", "c"):
        if axis in axes and array.shape[axes.index(axis)] == 1:
            array = np.take(array, 0, axis=axes.index(axis))
            axes.remove(axis)
    if "t" in axes:
        raise InvalidInputError(
            f"cannot write a 4D image (axes {image.axes}, shape {image.array.shape}) as one "
            "DICOM series",
            fix="split it into volumes, e.g. image.replace(array=image.array[..., t], "
            "axes=('x', 'y', 'z')), and write each as its own series",
        )
    if "c" in axes:
        raise InvalidInputError(
            f"cannot write a multi-channel image (axes {image.axes}) as a DICOM series",
            fix="write each channel separately (greyscale only)",
        )
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.size == 0:
        raise InvalidInputError(f"image is empty (shape {image.array.shape})")
    if array.shape[0] > 65535 or array.shape[1] > 65535:
        raise InvalidInputError(
            f"slices of {array.shape[0]} x {array.shape[1]} pixels exceed DICOM's 65535 limit",
            fix="crop or tile the image",
        )
    if array.dtype.kind not in "biuf":
        raise InvalidInputError(
            f"cannot write {array.dtype} pixels to DICOM", fix="convert to a real dtype"
        )
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InvalidInputError(
            f"image has {bad} non-finite voxel(s) (NaN/Inf)",
            fix="replace them first, e.g. np.nan_to_num(image.array)",
        )
    return array


def _existing_dicom_files(folder: Path) -> list[Path]:
    """Files directly in ``folder`` that look like DICOM (``.dcm`` name or DICM magic)."""
    found = []
    for entry in sorted(folder.iterdir()):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        if entry.suffix.lower() == ".dcm":
            found.append(entry)
            continue
        with contextlib.suppress(OSError), open(entry, "rb") as handle:
            if handle.read(132)[128:] == b"DICM":
                found.append(entry)
    return found


def _prepare_folder(folder: Path, overwrite: bool) -> list[Path]:
    """Check the output folder; return the DICOM files already in it (to replace)."""
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(
            "output is a file, a DICOM series needs a folder",
            path=folder,
            fix="give a folder name",
        )
    existing = _existing_dicom_files(folder) if folder.is_dir() else []
    if existing and not overwrite:
        raise OutputExistsError(
            f"folder already holds {len(existing)} DICOM file(s) (e.g. {existing[0].name})",
            path=folder,
            fix="choose an empty folder or pass overwrite=True to replace them",
        )
    return existing


# --------------------------------------------------------------------------------------
# Dataset building
# --------------------------------------------------------------------------------------
def _meta_str(meta: Mapping[str, Any], key: str, default: str = "") -> str:
    """A metadata value as a DICOM string (multi-values joined with a backslash)."""
    value = meta.get(key)
    if value is None:
        return default
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _meta_ds(meta: Mapping[str, Any], key: str) -> str | None:
    """A numeric metadata value as a DS string (first value), ``None`` when absent/invalid.

    >>> _meta_ds({"EchoTime": 12.300000000000001}, "EchoTime")
    '12.3'
    """
    value = meta.get(key)
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return format_number_as_ds(number) if np.isfinite(number) else None


def _code_item(scheme: str, value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


@dataclass
class _Identity:
    """UIDs and copied attributes shared by every file of the written series."""

    modality: str
    sop_class: str
    study_uid: str
    series_uid: str
    frame_uid: str
    same_study: bool
    series_number: int
    source_meta: Mapping[str, Any]
    source_class: str | None
    source_sops: list[str]


def _modality(image: MedImage, source: MedImage | None, modality: str | None) -> str:
    """The modality code to write: the argument, else the image's (unless ``OT``), else
    the source's, else ``OT``."""
    if modality:
        code = modality
    elif image.modality and image.modality.upper() != "OT":
        code = image.modality
    elif source is not None:
        code = source.modality or source.metadata.get("Modality") or "OT"
    else:
        code = "OT"
    code = str(code).strip().upper()
    if not re.fullmatch(r"[A-Z0-9_]{1,16}", code):
        raise InvalidInputError(
            f"invalid modality code {code!r}", fix="use a DICOM code such as CT, MR or OT"
        )
    return code


def _identity(
    image: MedImage,
    source: MedImage | None,
    same_study: bool | None,
    series_number: int | None,
    modality: str | None,
) -> _Identity:
    meta: Mapping[str, Any] = source.metadata if source is not None else {}
    source_study = _meta_str(meta, "StudyInstanceUID")
    if same_study is None:
        same_study = bool(source_study)
    if same_study and not source_study:
        raise InvalidInputError(
            "same_study=True needs a source image with a StudyInstanceUID in its metadata",
            fix="pass source= (an image read from DICOM) or same_study=False",
        )
    code = _modality(image, source, modality)
    if series_number is None:
        try:
            base = int(float(meta.get("SeriesNumber", 0) or 0))
        except (TypeError, ValueError):
            base = 0
        series_number = base + 1000 if same_study else 1
    source_class = _meta_str(meta, "SOPClassUID") or None
    if source_class is None and source is not None:
        source_class = SOP_CLASS_BY_MODALITY.get(str(source.modality).upper())
    sops = meta.get("SOPInstanceUIDs") or []
    return _Identity(
        modality=code,
        sop_class=SOP_CLASS_BY_MODALITY.get(code, pydicom.uid.SecondaryCaptureImageStorage),
        study_uid=source_study if same_study else pydicom.uid.generate_uid(),
        series_uid=pydicom.uid.generate_uid(),
        frame_uid=_meta_str(meta, "FrameOfReferenceUID") or pydicom.uid.generate_uid(),
        same_study=same_study,
        series_number=int(series_number),
        source_meta=meta,
        source_class=source_class,
        source_sops=[str(s) for s in sops] if isinstance(sops, (list, tuple)) else [str(sops)],
    )


def _base_dataset(
    ident: _Identity,
    rescale: Rescale,
    window: tuple[float, float],
    unit: str,
    series_description: str,
    derivation: str,
    now: _dt.datetime,
) -> Dataset:
    """Attributes shared by every slice: patient, study, series, equipment, pixels."""
    meta = ident.source_meta
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL" if ident.modality == "CT" else "OTHER"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = ident.sop_class
    # Patient (type 2: present, possibly empty)
    ds.PatientName = _meta_str(meta, "PatientName")
    ds.PatientID = _meta_str(meta, "PatientID")
    ds.PatientBirthDate = _meta_str(meta, "PatientBirthDate")
    ds.PatientSex = _meta_str(meta, "PatientSex")
    # Study
    ds.StudyInstanceUID = ident.study_uid
    if ident.same_study:
        ds.StudyDate = _meta_str(meta, "StudyDate")
        ds.StudyTime = _meta_str(meta, "StudyTime")
        ds.StudyID = _meta_str(meta, "StudyID")
        ds.AccessionNumber = _meta_str(meta, "AccessionNumber")
        ds.ReferringPhysicianName = _meta_str(meta, "ReferringPhysicianName")
        if meta.get("StudyDescription"):
            ds.StudyDescription = _meta_str(meta, "StudyDescription")
    else:
        ds.StudyDate, ds.StudyTime = date, time
        ds.StudyID = ""
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
    # Series
    ds.Modality = ident.modality
    ds.SeriesInstanceUID = ident.series_uid
    ds.SeriesNumber = ident.series_number
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.SeriesDescription = series_description
    if meta.get("BodyPartExamined"):
        ds.BodyPartExamined = _meta_str(meta, "BodyPartExamined")
    if meta.get("Laterality") or not meta.get("BodyPartExamined"):
        # Type 2C: required (empty = unknown) unless the body part is known to be unpaired.
        ds.Laterality = _meta_str(meta, "Laterality")
    if ident.modality in SOP_CLASS_BY_MODALITY:
        ds.PatientPosition = _meta_str(meta, "PatientPosition")
    # Frame of reference
    ds.FrameOfReferenceUID = ident.frame_uid
    ds.PositionReferenceIndicator = ""
    # Equipment
    ds.Manufacturer = "medldm"
    ds.ManufacturerModelName = "medldm"
    ds.SoftwareVersions = _version()
    if ident.sop_class == pydicom.uid.SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"  # workstation
        ds.DateOfSecondaryCapture, ds.TimeOfSecondaryCapture = date, time
    # General image
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionNumber = None
    ds.DerivationDescription = derivation[:1024]
    ds.BurnedInAnnotation = "NO"
    # Image pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if rescale.signed else 0
    identity = rescale.slope == 1 and rescale.intercept == 0
    if not (identity and ident.modality == "MR"):  # the MR IOD has no Modality LUT
        ds.RescaleIntercept = format_number_as_ds(rescale.intercept)
        ds.RescaleSlope = format_number_as_ds(rescale.slope)
        hounsfield = ident.modality == "CT" and unit in (UNIT_HU, UNIT_UNKNOWN)
        ds.RescaleType = "HU" if hounsfield else "US"
    ds.WindowCenter = format_number_as_ds(window[0])
    ds.WindowWidth = format_number_as_ds(window[1])
    _modality_attributes(ds, ident.modality, meta)
    return ds


def _modality_attributes(ds: Dataset, modality: str, meta: Mapping[str, Any]) -> None:
    """CT / MR Image module attributes: type 1 with neutral values, type 2 copied or empty."""
    if modality == "CT":
        ds.KVP = _meta_ds(meta, "KVP")
        if meta.get("ConvolutionKernel"):
            ds.ConvolutionKernel = _meta_str(meta, "ConvolutionKernel")
    elif modality == "MR":
        ds.ScanningSequence = _meta_str(meta, "ScanningSequence") or "RM"
        ds.SequenceVariant = _meta_str(meta, "SequenceVariant") or "NONE"
        ds.ScanOptions = _meta_str(meta, "ScanOptions")
        ds.MRAcquisitionType = _meta_str(meta, "MRAcquisitionType")
        ds.RepetitionTime = _meta_ds(meta, "RepetitionTime")
        ds.EchoTime = _meta_ds(meta, "EchoTime")
        train = _meta_ds(meta, "EchoTrainLength")
        ds.EchoTrainLength = int(float(train)) if train is not None else None
        if "IR" in str(ds.ScanningSequence):
            ds.InversionTime = _meta_ds(meta, "InversionTime")
        for key in ("MagneticFieldStrength", "FlipAngle"):
            if _meta_ds(meta, key) is not None:
                setattr(ds, key, _meta_ds(meta, key))
        if meta.get("SequenceName"):
            ds.SequenceName = _meta_str(meta, "SequenceName")[:16]


def _reference_items(ident: _Identity, k: int, n_slices: int, purpose: bool) -> DicomSequence:
    """Items referencing the source slice ``k`` (or all source slices when counts differ)."""
    if not ident.source_sops or not ident.source_class:
        return DicomSequence([])
    uids = [ident.source_sops[k]] if len(ident.source_sops) == n_slices else ident.source_sops
    items = []
    for uid in uids:
        item = Dataset()
        item.ReferencedSOPClassUID = ident.source_class
        item.ReferencedSOPInstanceUID = uid
        if purpose:
            item.PurposeOfReferenceCodeSequence = [_code_item(*_SOURCE_PURPOSE)]
        items.append(item)
    return DicomSequence(items)


def _add_references(ds: Dataset, ident: _Identity, k: int, n_slices: int) -> None:
    """SourceImageSequence, ReferencedImageSequence and the Common Instance Reference."""
    source_items = _reference_items(ident, k, n_slices, purpose=True)
    if not source_items:
        return
    ds.SourceImageSequence = source_items
    ds.ReferencedImageSequence = _reference_items(ident, k, n_slices, purpose=False)
    source_series = _meta_str(ident.source_meta, "SeriesInstanceUID")
    if not source_series:
        return
    series_item = Dataset()
    series_item.SeriesInstanceUID = source_series
    series_item.ReferencedInstanceSequence = _reference_items(ident, k, n_slices, purpose=False)
    if ident.same_study:
        ds.ReferencedSeriesSequence = [series_item]
        return
    source_study = _meta_str(ident.source_meta, "StudyInstanceUID")
    if source_study:
        study_item = Dataset()
        study_item.StudyInstanceUID = source_study
        study_item.ReferencedSeriesSequence = [series_item]
        ds.StudiesContainingOtherReferencedInstancesSequence = [study_item]


def _slice_dataset(
    base: Dataset,
    ident: _Identity,
    geometry: _Geometry,
    codes: np.ndarray,
    k: int,
    n_slices: int,
) -> Dataset:
    """The dataset of slice ``k``: a copy of ``base`` with position, UID and pixels."""
    ds = copy.deepcopy(base)
    sop_uid = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = k + 1
    position = geometry.positions[k]
    ds.ImagePositionPatient = [format_number_as_ds(v) for v in position]
    ds.ImageOrientationPatient = [format_number_as_ds(v) for v in geometry.orientation]
    ds.PixelSpacing = [format_number_as_ds(v) for v in geometry.pixel_spacing]
    ds.SliceThickness = format_number_as_ds(geometry.thickness) if geometry.thickness else None
    if geometry.spacing_between is not None:
        ds.SpacingBetweenSlices = format_number_as_ds(geometry.spacing_between)
    ds.SliceLocation = format_number_as_ds(float(np.dot(position, geometry.normal)))
    if ident.sop_class not in SOP_CLASS_BY_MODALITY.values():  # no Image Plane module
        ds.PatientOrientation = _patient_orientation(geometry.orientation)
    _add_references(ds, ident, k, n_slices)
    plane = np.ascontiguousarray(codes.T)  # rows = y, columns = x
    ds.Rows, ds.Columns = int(plane.shape[0]), int(plane.shape[1])
    info = np.iinfo(plane.dtype)
    ds["SmallestImagePixelValue"] = pydicom.DataElement(
        0x00280106, "SS" if info.min < 0 else "US", int(plane.min())
    )
    ds["LargestImagePixelValue"] = pydicom.DataElement(
        0x00280107, "SS" if info.min < 0 else "US", int(plane.max())
    )
    ds.PixelData = plane.tobytes()
    ds["PixelData"].VR = "OW"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ident.sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"MEDLDM_{_version()}"[:16]
    ds.file_meta = meta
    return ds


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def write_dicom_series(
    image: MedImage,
    folder: str | Path,
    *,
    source: MedImage | None = None,
    series_description: str = "medldm derived",
    series_number: int | None = None,
    same_study: bool | None = None,
    overwrite: bool = False,
    modality: str | None = None,
    derivation_description: str | None = None,
) -> list[Path]:
    """Write ``image`` as a derived DICOM series, one file per slice, into ``folder``.

    Parameters
    ----------
    image:
        2D (``array[x, y]``) or 3D (``array[x, y, z]``) image; values in physical units
        (HU for CT). Axes ``t``/``c`` of size 1 are dropped; larger ones are refused.
    folder:
        Output folder (created). It must hold no DICOM files unless ``overwrite``.
    source:
        The image this one was derived from, as read from DICOM: its metadata gives the
        patient, study, Frame of Reference and the SOP instances to reference.
    series_description:
        SeriesDescription (LO, at most 64 characters).
    series_number:
        SeriesNumber; default: the source's + 1000 in the same study, else 1.
    same_study:
        ``True``: a new series in the source's study; ``False``: a new study; ``None``
        (default): the source's study when the source has a StudyInstanceUID.
    overwrite:
        Replace the DICOM files already in ``folder``: after every new file is written,
        the folder's other DICOM files (top level only) are deleted, so it holds one series.
    modality:
        ``"CT"``, ``"MR"`` or another code (Secondary Capture); default: the image's
        modality, else the source's.
    derivation_description:
        DerivationDescription text (default names medldm and its version).

    Returns
    -------
    list[Path]
        The written files in slice order (``IM_00001.dcm`` is slice ``z = 0``).

    Raises
    ------
    InvalidInputError
        4D or multi-channel images, non-finite values, non-orthogonal in-plane axes.
    OutputExistsError
        ``folder`` holds DICOM files and ``overwrite`` is false, or is a file.

    Nothing is left behind on failure: slices are written to hidden temporary files and
    renamed into place only when all of them have been written.
    """
    folder = Path(folder)
    array = _slices_array(image)
    if len(series_description) > 64:
        raise InvalidInputError("series_description is longer than 64 characters", fix="shorten it")
    existing = _prepare_folder(folder, overwrite)
    n_slices = int(array.shape[2])
    ident = _identity(image, source, same_study, series_number, modality)
    geometry = _geometry(image, n_slices)
    rescale = choose_rescale(array)
    derivation = derivation_description or (
        f"medldm {_version()}: {series_description}; values stored as 16-bit integers with "
        f"RescaleSlope {format_number_as_ds(rescale.slope)}"
    )
    now = _dt.datetime.now()
    base = _base_dataset(
        ident, rescale, _window(array), image.unit, series_description, derivation, now
    )
    paths = [folder / FILE_PATTERN.format(k + 1) for k in range(n_slices)]
    created_folder = not folder.exists()
    preexisting = {p for p in paths if p.exists()}
    try:
        with contextlib.ExitStack() as stack:
            for k, path in enumerate(paths):
                tmp = stack.enter_context(atomic_output(path, overwrite=overwrite))
                ds = _slice_dataset(
                    base, ident, geometry, rescale.encode(array[:, :, k]), k, n_slices
                )
                ds.save_as(tmp, enforce_file_format=True)
    except BaseException:
        for path in paths:  # a failure while renaming: remove what this call created
            if path not in preexisting:
                with contextlib.suppress(OSError):
                    path.unlink()
        if created_folder:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        raise
    for stale in set(existing) - set(paths):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    return paths
