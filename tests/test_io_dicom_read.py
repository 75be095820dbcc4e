"""DICOM reading: geometry, sorting, transfer syntaxes, multi-frame and bad input."""

from __future__ import annotations

import copy
import gzip
import random
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.pixels import pixel_array

from medldm.errors import (
    InvalidInputError,
    MedLDMError,
    SeriesSelectionError,
    UnsupportedFormatError,
)
from medldm.io.dicom_read import list_dicom_series, read_dicom
from medldm.io.geometry import LPS_TO_RAS


def _expected_values(ds: pydicom.Dataset) -> np.ndarray:
    """What a slice should read as: stored values rescaled, as array[x, y]."""
    values = ds.pixel_array.astype(np.float32)
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = values * np.float32(slope) + np.float32(intercept)
    return np.swapaxes(values, 0, 1)


def test_single_ct_file_is_read_in_hounsfield_units():
    path = get_testdata_file("CT_small.dcm")
    image = read_dicom(path)
    ds = pydicom.dcmread(path)
    assert image.unit == "HU" and image.modality == "CT"
    assert image.axes == ("x", "y")
    np.testing.assert_array_equal(image.array, _expected_values(ds))
    assert float(ds.RescaleIntercept) != 0  # the test means something
    # voxel (0, 0) sits at ImagePositionPatient (LPS -> RAS)
    ipp = np.array([*map(float, ds.ImagePositionPatient), 1.0])
    np.testing.assert_allclose(image.affine[:, 3], LPS_TO_RAS @ ipp, atol=1e-6)
    np.testing.assert_allclose(image.spacing[:2], [float(v) for v in ds.PixelSpacing][::-1])
    assert image.metadata["StudyInstanceUID"] == ds.StudyInstanceUID


def _decodable_test_files() -> list[str]:
    """pydicom's and pydicom-data's image files whose pixel data pydicom decodes (its
    first frame: decoding every frame of every file took 28 s of the suite's collection)."""
    files = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files("*")):
            if Path(path).suffix not in (".dcm", "") or "DICOMDIR" in path:
                continue
            try:
                ds = pydicom.dcmread(path)
                _ = pixel_array(ds, index=0)
                _ = ds.file_meta.TransferSyntaxUID
            except Exception:
                continue
            files.append(path)
    return files


DECODABLE = _decodable_test_files()


def test_every_transfer_syntax_family_is_among_the_decodable_files():
    syntaxes = {
        str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for f in DECODABLE
    }
    expected = {
        "1.2.840.10008.1.2.4.50": "JPEG baseline",
        "1.2.840.10008.1.2.4.51": "JPEG extended",
        "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
        "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
        "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
        "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
        "1.2.840.10008.1.2.4.91": "JPEG 2000",
        "1.2.840.10008.1.2.5": "RLE",
        "1.2.840.10008.1.2.1.99": "deflate",
        "1.2.840.10008.1.2.2": "big endian",
        "1.2.840.10008.1.2": "implicit little endian",
    }
    missing = {name for uid, name in expected.items() if uid not in syntaxes}
    assert not missing, f"no decodable test file for {missing}: are the plugins installed?"


@pytest.mark.parametrize("path", DECODABLE, ids=lambda p: Path(p).name)
def test_every_decodable_test_file_reads_with_rescaled_values(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        try:
            image = read_dicom(path)
        except MedLDMError as exc:
            # Only our deliberate refusals are acceptable, and they must name the file.
            assert str(Path(path)) in str(exc)
            pytest.skip(f"refused on purpose: {exc}")
    assert np.all(np.isfinite(image.array))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        # frames may be reordered in space; every decoded value is there (the header's
        # count: decoding the frames a second time, as pixel_array, took 11 s for one file)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        assert image.array.size == frames * ds.Rows * ds.Columns * samples
        return
    np.testing.assert_array_equal(image.array, _expected_values(ds))


def test_lossless_compressed_files_decode_to_the_uncompressed_pixels():
    reference = read_dicom(get_testdata_file("MR_small.dcm")).array
    for name in (
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
        "MR_small_deflate.dcm",
    ):
        path = get_testdata_file(name)
        if path is None:
            continue
        np.testing.assert_array_equal(read_dicom(path).array, reference, err_msg=name)


def test_gzipped_file_reads_like_the_plain_file(tmp_path):
    plain = get_testdata_file("MR_small.dcm")
    packed = tmp_path / "MR_small.dcm.gz"
    packed.write_bytes(gzip.compress(Path(plain).read_bytes()))
    np.testing.assert_array_equal(read_dicom(packed).array, read_dicom(plain).array)


def _copy_series(names: list[str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(get_testdata_file(name), folder / name)


def test_folder_with_several_series_lists_them_and_requires_a_choice(tmp_path):
    _copy_series(["CT_small.dcm", "MR_small.dcm"], tmp_path)
    with pytest.raises(SeriesSelectionError, match="share the number"):
        read_dicom(tmp_path, series=pydicom.dcmread(tmp_path / "MR_small.dcm").SeriesNumber)
    ds = pydicom.dcmread(tmp_path / "MR_small.dcm")
    ds.SeriesNumber = 7
    ds.save_as(tmp_path / "MR_small.dcm")
    series = list_dicom_series(tmp_path)
    assert sorted(s.modality for s in series) == ["CT", "MR"]
    with pytest.raises(SeriesSelectionError, match="2 series") as info:
        read_dicom(tmp_path)
    assert str(tmp_path) in str(info.value)
    mr = next(s for s in series if s.modality == "MR")
    assert read_dicom(tmp_path, series=mr.uid).modality == "MR"
    assert read_dicom(tmp_path, series=mr.number).modality == "MR"
    with pytest.raises(SeriesSelectionError, match="no series matches"):
        read_dicom(tmp_path, series="1.2.3.4")


def test_folder_ignores_non_dicom_files(tmp_path):
    _copy_series(["CT_small.dcm"], tmp_path)
    (tmp_path / "README.txt").write_text("notes about this study")
    assert read_dicom(tmp_path).modality == "CT"


def _make_volume(tmp_path: Path, n_slices: int = 5, gap: float = 2.5) -> list[Path]:
    """A small axial CT series written from CT_small.dcm with known positions."""
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = pydicom.uid.generate_uid()
    paths = []
    order = list(range(n_slices))
    random.Random(0).shuffle(order)  # instance numbers and names not in spatial order
    for k in range(n_slices):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = order[k] + 1
        position = [float(v) for v in source.ImagePositionPatient]
        position[2] += gap * k
        ds.ImagePositionPatient = position
        arr = source.pixel_array.copy()
        arr[0, 0] = k  # marks the slice
        ds.PixelData = arr.tobytes()
        path = tmp_path / f"file_{order[k]:03d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_slices_are_sorted_by_position_not_instance_number_or_name(tmp_path):
    _make_volume(tmp_path, n_slices=5, gap=2.5)
    image = read_dicom(tmp_path)
    assert image.array.shape == (128, 128, 5)
    intercept = float(pydicom.dcmread(get_testdata_file("CT_small.dcm")).RescaleIntercept)
    np.testing.assert_array_equal(image.array[0, 0, :], np.arange(5) + intercept)
    assert image.spacing[2] == pytest.approx(2.5)
    assert not image.metadata["warnings"]


def test_uneven_slice_gaps_are_reported_with_true_positions(tmp_path):
    paths = _make_volume(tmp_path, n_slices=4, gap=2.0)
    ds = pydicom.dcmread(paths[3])
    ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 3]
    ds.save_as(paths[3])
    image = read_dicom(tmp_path)
    assert any("uneven slice spacing" in w for w in image.metadata["warnings"])
    np.testing.assert_allclose(image.metadata["slice_positions_mm"], [0, 2, 4, 9])


def test_mixed_orientation_inside_a_series_raises_naming_the_folder(tmp_path):
    paths = _make_volume(tmp_path, n_slices=3)
    ds = pydicom.dcmread(paths[1])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(paths[1])
    with pytest.raises(InvalidInputError, match="inconsistent ImageOrientationPatient") as info:
        read_dicom(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_inconsistent_pixel_spacing_inside_a_series_raises(tmp_path):
    paths = _make_volume(tmp_path, n_slices=3)
    ds = pydicom.dcmread(paths[2])
    ds.PixelSpacing = [0.9, 0.9]
    ds.save_as(paths[2])
    with pytest.raises(InvalidInputError, match="inconsistent PixelSpacing"):
        read_dicom(tmp_path)


def test_different_image_sizes_in_one_series_raise(tmp_path):
    paths = _make_volume(tmp_path, n_slices=3)
    ds = pydicom.dcmread(paths[0])
    ds.Rows, ds.Columns = 64, 64
    ds.PixelData = ds.pixel_array[:64, :64].tobytes()
    ds.save_as(paths[0])
    with pytest.raises(InvalidInputError, match="different sizes"):
        read_dicom(tmp_path)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("test-SR.dcm", "Comprehensive SR"),
        ("reportsi.dcm", "Basic Text SR"),
        ("rtplan.dcm", "RT Plan"),
        ("waveform_ecg.dcm", "ECG"),
    ],
)
def test_non_image_objects_are_refused_with_their_kind(name, kind):
    path = get_testdata_file(name)
    with pytest.raises(UnsupportedFormatError, match=kind) as info:
        read_dicom(path)
    assert str(Path(path)) in str(info.value)


def test_truncated_pixel_data_raises_naming_the_file():
    path = get_testdata_file("MR_truncated.dcm")
    with pytest.raises(InvalidInputError, match="truncated") as info:
        read_dicom(path)
    assert str(Path(path)) in str(info.value)


def test_missing_transfer_syntax_raises(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "no_syntax.dcm"
    ds.save_as(path, enforce_file_format=False)
    with pytest.raises(InvalidInputError, match="Transfer Syntax") as info:
        read_dicom(path)
    assert "no_syntax.dcm" in str(info.value)


def test_missing_required_tag_raises(tmp_path):
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.BitsAllocated
    path = tmp_path / "no_bits.dcm"
    ds.save_as(path)
    with pytest.raises(InvalidInputError, match="BitsAllocated"):
        read_dicom(path)


def test_volume_without_positions_raises(tmp_path):
    paths = _make_volume(tmp_path, n_slices=2)
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient
        ds.save_as(path)
    with pytest.raises(InvalidInputError, match="ImagePositionPatient missing"):
        read_dicom(tmp_path)


def test_declared_size_above_the_limit_is_refused_before_decoding():
    with pytest.raises(InvalidInputError, match="exceeds the limit"):
        read_dicom(get_testdata_file("CT_small.dcm"), max_bytes=1000)


def test_garbage_and_empty_files_raise_medldm_errors(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x00" * 128 + b"DICM" + bytes(range(256)) * 4)
    for path in (empty, junk):
        with pytest.raises(InvalidInputError) as info:
            read_dicom(path)
        assert path.name in str(info.value)


def test_empty_folder_raises(tmp_path):
    with pytest.raises(InvalidInputError, match="no DICOM files"):
        read_dicom(tmp_path)
