"""Reading and writing images with their geometry: DICOM, NIfTI, microscopy TIFF.

Everything goes through one record, :class:`MedImage`. :func:`load` detects the format;
:func:`save` writes in the format the destination's name asks for.

Example
-------
>>> import tempfile, pathlib
>>> from pydicom.data import get_testdata_file
>>> image = load(get_testdata_file("CT_small.dcm"))
>>> image.modality, image.unit
('CT', 'HU')
>>> out = pathlib.Path(tempfile.mkdtemp()) / "ct.nii.gz"
>>> _ = save(image, out)
>>> bool(abs(load(out).array - image.array).max() < 1e-3)
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medldm.io.dicom_read import SeriesInfo, list_dicom_series, read_dicom
from medldm.io.dicom_write import write_dicom_series
from medldm.io.formats import detect_format
from medldm.io.image import MedImage
from medldm.io.microscopy import read_microscopy, write_tiff
from medldm.io.nifti import read_nifti, write_nifti
from medldm.io.provenance import read_provenance, write_provenance

__all__ = [
    "MedImage",
    "SeriesInfo",
    "detect_format",
    "list_dicom_series",
    "load",
    "read_dicom",
    "read_microscopy",
    "read_nifti",
    "read_provenance",
    "save",
    "write_dicom_series",
    "write_nifti",
    "write_provenance",
    "write_tiff",
]


def load(path: str | Path, **options: Any) -> MedImage:
    """Read a DICOM file or folder, a NIfTI file or a (OME-)TIFF into a :class:`MedImage`.

    ``options`` go to the format's reader (e.g. ``series=`` for DICOM folders,
    ``canonical=True`` for NIfTI, ``nan_policy="zero"`` for microscopy).
    """
    kind = detect_format(path)
    reader = {"dicom": read_dicom, "nifti": read_nifti, "tiff": read_microscopy}[kind]
    return reader(path, **options)


def save(image: MedImage, path: str | Path, **options: Any) -> Path | list[Path]:
    """Write ``image`` in the format named by ``path``: ``.nii``/``.nii.gz`` (NIfTI),
    ``.tif``/``.ome.tif`` (TIFF), or a folder / ``.dcm`` name (DICOM derived series)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return write_nifti(image, path, **options)
    if name.endswith((".tif", ".tiff")):
        return write_tiff(image, path, **options)
    if name.endswith(".dcm"):
        path = path.with_suffix("")
    return write_dicom_series(image, path, **options)
