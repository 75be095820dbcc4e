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

import importlib
from pathlib import Path
from typing import Any

from medldm.io.formats import detect_format
from medldm.io.image import MedImage

# The readers and writers load their libraries (pydicom, nibabel, tifffile) on first use,
# so code that needs only MedImage (training from packed arrays on a bare GPU machine, say)
# does not import them.
_LAZY = {
    "SeriesInfo": "dicom_read",
    "list_dicom_series": "dicom_read",
    "read_dicom": "dicom_read",
    "write_dicom_series": "dicom_write",
    "read_microscopy": "microscopy",
    "write_tiff": "microscopy",
    "read_nifti": "nifti",
    "write_nifti": "nifti",
    "read_provenance": "provenance",
    "write_provenance": "provenance",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"medldm.io.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'medldm.io' has no attribute {name!r}")


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
    reader = {"dicom": "read_dicom", "nifti": "read_nifti", "tiff": "read_microscopy"}[kind]
    return __getattr__(reader)(path, **options)


def save(image: MedImage, path: str | Path, **options: Any) -> Path | list[Path]:
    """Write ``image`` in the format named by ``path``: ``.nii``/``.nii.gz`` (NIfTI),
    ``.tif``/``.ome.tif`` (TIFF), or a folder / ``.dcm`` name (DICOM derived series)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return __getattr__("write_nifti")(image, path, **options)
    if name.endswith((".tif", ".tiff")):
        return __getattr__("write_tiff")(image, path, **options)
    if name.endswith(".dcm"):
        path = path.with_suffix("")
    return __getattr__("write_dicom_series")(image, path, **options)
