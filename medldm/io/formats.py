"""Detect an image file's format from its name and first bytes.

Example
-------
>>> detect_format("scan.nii.gz")
'nifti'
>>> detect_format("cells.ome.tif")
'tiff'
"""

from __future__ import annotations

import gzip
from pathlib import Path

from medldm.errors import DataNotFoundError, UnsupportedFormatError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", ".dcm.gz")


def _by_name(name: str) -> str | None:
    name = name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    return None


def _by_content(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(352)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as handle:
                head = handle.read(352)
    except (OSError, EOFError):
        return None
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 8 and head[:2] in (b"\x08\x00", b"\x02\x00") and head[3:4] == b"\x00":
        return "dicom"  # DICOM without preamble
    return None


def detect_format(path: str | Path) -> str:
    """Return ``"dicom"``, ``"nifti"`` or ``"tiff"`` for a path (a folder is DICOM).

    The name decides when its suffix is known (the file need not exist yet); otherwise
    the first bytes are inspected.
    """
    path = Path(path)
    by_name = _by_name(path.name)
    if by_name:
        return by_name
    if path.is_dir():
        return "dicom"
    if not path.exists():
        raise DataNotFoundError("path does not exist", path=path, fix="check the path")
    by_content = _by_content(path)
    if by_content:
        return by_content
    raise UnsupportedFormatError(
        "unknown image format",
        path=path,
        fix="medldm reads DICOM (file or folder), NIfTI (.nii, .nii.gz) and TIFF/OME-TIFF",
    )
