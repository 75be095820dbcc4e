"""NIfTI reading/writing (medldm.io.nifti) and the shared NaN/size checks (medldm.io.finite).

Real files: nibabel's bundled test images, nilearn's MNI152 template and the IXI T1
volumes under the shared data folder (skipped when absent).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path as nibabel_data_path

from medldm.errors import (
    DataNotFoundError,
    InvalidInputError,
    OutputExistsError,
    UnsupportedFormatError,
)
from medldm.io.finite import check_finite, check_size
from medldm.io.image import MedImage
from medldm.io.nifti import read_nifti, write_nifti

NIB = Path(nibabel_data_path)


def _save(tmp_path: Path, name: str, data: np.ndarray, affine=None, **header) -> Path:
    """Write a NIfTI file with nibabel directly (independent of write_nifti)."""
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        img.header[key] = value
    path = tmp_path / name
    nib.save(img, path)
    return path


def _world(affine: np.ndarray, ijk) -> np.ndarray:
    return (affine @ np.r_[np.asarray(ijk, float), 1.0])[:3]


# --- reading real files -------------------------------------------------------------------
def test_nifti_3d_file_matches_nibabel():
    path = NIB / "anatomical.nii"  # big-endian int16, sform
    ref = nib.load(path)
    img = read_nifti(path)
    assert img.axes == ("x", "y", "z")
    assert img.array.shape == ref.shape
    assert img.array.dtype == np.int16 and img.array.dtype.isnative
    np.testing.assert_array_equal(img.array, np.asarray(ref.dataobj))
    np.testing.assert_allclose(img.affine, ref.affine)
    assert img.metadata["format"] == "nifti"
    assert img.metadata["source_path"] == str(path)
    assert img.metadata["affine_source"] == "sform"


def test_nifti_4d_file_has_time_axis_and_repetition_time():
    path = NIB / "example4d.nii.gz"
    img = read_nifti(path)
    assert img.axes == ("x", "y", "z", "t")
    assert img.array.shape == (128, 96, 24, 2)
    assert img.metadata["repetition_time_s"] == pytest.approx(
        float(nib.load(path).header["pixdim"][4])
    )
    assert img.metadata["description"] == "FSL3.3"  # C string: text after the NUL is junk


def test_nifti2_file_is_read():
    img = read_nifti(NIB / "example_nifti2.nii.gz")
    assert img.metadata["nifti_version"] == 2
    assert img.axes == ("x", "y", "z", "t")


def test_nifti_modality_mr_gives_mr_units_and_default_is_other():
    assert read_nifti(NIB / "anatomical.nii", modality="MR").unit == "arbitrary MR units"
    default = read_nifti(NIB / "anatomical.nii")
    assert (default.modality, default.unit) == ("OT", "unknown")


def test_nifti_mni152_template_round_trips(tmp_path):
    nilearn_datasets = pytest.importorskip("nilearn.datasets")
    template = nilearn_datasets.load_mni152_template(resolution=2)
    path = tmp_path / "mni.nii.gz"
    nib.save(template, path)
    img = read_nifti(path)
    stored = nib.load(path)
    np.testing.assert_allclose(img.array, stored.get_fdata(), rtol=1e-6)
    np.testing.assert_allclose(img.affine, template.affine)
    assert img.array.shape == template.shape
    assert img.orientation == "RAS"


def test_nifti_scl_slope_is_applied_to_ixi_uint8(data_root):
    path = sorted((data_root / "ixi_t1").glob("*.nii.gz"))[0]
    ref = nib.load(path)
    img = read_nifti(path, modality="MR")
    assert ref.get_data_dtype() == np.uint8
    assert img.array.dtype == np.float32
    assert img.metadata["scl_slope"] == pytest.approx(ref.dataobj.slope)
    np.testing.assert_allclose(img.array, ref.get_fdata(), rtol=1e-6)
    assert img.array.max() > 255  # scaled beyond the stored uint8 range
    assert img.spacing == pytest.approx((2.0, 2.0, 2.0))


def test_nifti_scl_slope_and_inter_applied_as_float32(tmp_path):
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = _save(tmp_path, "scaled.nii", raw, scl_slope=0.5, scl_inter=-3.0)
    img = read_nifti(path)
    assert img.array.dtype == np.float32
    np.testing.assert_allclose(img.array, raw * 0.5 - 3.0)
    assert (img.metadata["scl_slope"], img.metadata["scl_inter"]) == (0.5, -3.0)


def test_nifti_integer_dtype_is_kept_without_scaling(tmp_path):
    raw = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
    img = read_nifti(_save(tmp_path, "plain.nii", raw))
    assert img.array.dtype == np.uint16
    assert "scl_slope" not in img.metadata


def test_nifti_float64_data_is_read_as_float32(tmp_path):
    raw = np.linspace(0, 1, 24).reshape(2, 3, 4)
    img = read_nifti(_save(tmp_path, "f64.nii", raw))
    assert img.array.dtype == np.float32
    np.testing.assert_allclose(img.array, raw, rtol=1e-6)


# --- geometry -----------------------------------------------------------------------------
def _coded(tmp_path: Path, sform_code: int, qform_code: int) -> tuple[Path, np.ndarray, np.ndarray]:
    sform = np.array([[0, 0, 3.0, -10], [-2.0, 0, 0, 20], [0, 2.5, 0, 5], [0, 0, 0, 1]])
    qform = np.diag([1.5, 1.5, 4.0, 1.0])
    qform[:3, 3] = [1, 2, 3]
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), None)
    img.header.set_sform(sform, code=sform_code)
    img.header.set_qform(qform, code=qform_code)
    path = tmp_path / f"s{sform_code}q{qform_code}.nii"
    nib.save(img, path)
    return path, sform, qform


def test_nifti_sform_is_preferred_when_both_are_coded(tmp_path):
    path, sform, _ = _coded(tmp_path, sform_code=2, qform_code=1)
    img = read_nifti(path)
    np.testing.assert_allclose(img.affine, sform)
    assert img.metadata["affine_source"] == "sform"
    assert img.metadata["affine_code"] == "aligned"


def test_nifti_qform_is_used_when_sform_code_is_zero(tmp_path):
    path, _, qform = _coded(tmp_path, sform_code=0, qform_code=1)
    img = read_nifti(path)
    np.testing.assert_allclose(img.affine, qform, atol=1e-6)
    assert img.metadata["affine_source"] == "qform"


def test_nifti_base_affine_with_warning_when_no_transform_is_coded(tmp_path):
    path, _, _ = _coded(tmp_path, sform_code=0, qform_code=0)
    img = read_nifti(path)
    assert img.metadata["affine_source"] == "base"
    assert img.spacing == pytest.approx((1.5, 1.5, 4.0))  # pixdim from the qform zooms
    assert any("no sform or qform" in w for w in img.metadata["warnings"])


@pytest.mark.parametrize(("unit", "factor"), [("meter", 1000.0), ("micron", 0.001)])
def test_nifti_spatial_units_are_converted_to_mm(tmp_path, unit, factor):
    affine = np.diag([0.002, 0.002, 0.004, 1.0])
    affine[:3, 3] = [0.1, 0.2, 0.3]
    img = nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), affine)
    img.header.set_xyzt_units(xyz=unit)
    path = tmp_path / f"{unit}.nii"
    nib.save(img, path)
    out = read_nifti(path)
    expected = affine.copy()
    expected[:3, :] *= factor
    np.testing.assert_allclose(out.affine, expected, rtol=1e-6)
    assert out.metadata["spatial_unit_in_file"] == unit


def test_nifti_single_slice_volume_stays_3d(tmp_path):
    img = read_nifti(_save(tmp_path, "slice.nii", np.ones((5, 6, 1), np.int16)))
    assert img.axes == ("x", "y", "z") and img.array.shape == (5, 6, 1)


def test_nifti_2d_file_reads_as_xy(tmp_path):
    img = read_nifti(_save(tmp_path, "flat.nii", np.ones((5, 6), np.int16)))
    assert img.axes == ("x", "y") and img.array.shape == (5, 6)


def test_nifti_5d_vector_field_gets_channel_axis(tmp_path):
    field = np.random.default_rng(0).random((3, 4, 5, 1, 3)).astype(np.float32)
    img = read_nifti(_save(tmp_path, "warp.nii.gz", field))
    assert img.axes == ("x", "y", "z", "c")
    np.testing.assert_array_equal(img.array, field[:, :, :, 0, :])


def test_nifti_canonical_keeps_world_coordinates_of_a_voxel(tmp_path):
    affine = np.array(
        [[0, 0, -3.0, 40], [-2.0, 0, 0, 20], [0, 2.5, 0, -5], [0, 0, 0, 1]]
    )  # index axes point to L... P... S, permuted: far from RAS
    data = np.random.default_rng(1).random((4, 5, 6, 2)).astype(np.float32)
    path = _save(tmp_path, "oblique.nii.gz", data, affine)
    native = read_nifti(path)
    canon = read_nifti(path, canonical=True)
    assert native.orientation != "RAS" and canon.orientation == "RAS"
    assert canon.metadata["canonical"] is True
    assert canon.array.flags.c_contiguous
    ref = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_allclose(canon.affine, ref.affine)
    for ijk in [(0, 0, 0), (3, 1, 4), (1, 4, 5)]:
        world = _world(native.affine, ijk)
        new_ijk = np.linalg.solve(canon.affine, np.r_[world, 1.0])[:3]
        new_idx = tuple(int(v) for v in np.round(new_ijk))
        np.testing.assert_allclose(new_ijk, new_idx, atol=1e-6)
        np.testing.assert_array_equal(canon.array[new_idx], native.array[ijk])


def test_nifti_canonical_ixi_matches_nibabel(data_root):
    path = sorted((data_root / "ixi_t1").glob("*.nii.gz"))[0]
    canon = read_nifti(path, canonical=True)
    ref = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_allclose(canon.affine, ref.affine)
    np.testing.assert_allclose(canon.array, ref.get_fdata(), rtol=1e-6)


# --- NaN / Inf -----------------------------------------------------------------------------
def _nan_file(tmp_path: Path) -> Path:
    data = np.ones((3, 3, 3), np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, np.inf, -np.inf
    return _save(tmp_path, "nan.nii", data)


def test_nifti_nan_raises_by_default_with_count_and_fix(tmp_path):
    path = _nan_file(tmp_path)
    with pytest.raises(InvalidInputError, match="3 of 27 voxels are NaN or Inf") as info:
        read_nifti(path)
    assert info.value.path == path and "nan_policy='zero'" in info.value.fix


def test_nifti_nan_policy_zero_replaces_and_warns(tmp_path):
    img = read_nifti(_nan_file(tmp_path), nan_policy="zero")
    assert np.isfinite(img.array).all() and img.array.sum() == 24
    assert any("3 non-finite" in w for w in img.metadata["warnings"])


def test_nifti_nan_policy_ignore_keeps_values(tmp_path):
    img = read_nifti(_nan_file(tmp_path), nan_policy="ignore")
    assert np.isnan(img.array).sum() == 1 and np.isinf(img.array).sum() == 2


def test_check_finite_rejects_unknown_policy():
    with pytest.raises(InvalidInputError, match="nan_policy"):
        check_finite(np.zeros(2), "a.nii", "drop")


def test_check_finite_zero_copies_read_only_arrays():
    data = np.array([np.nan, 1.0])
    data.flags.writeable = False
    fixed, warnings = check_finite(data, "a.nii", "zero")
    assert fixed.tolist() == [0.0, 1.0] and np.isnan(data[0]) and len(warnings) == 1


# --- broken and foreign files ------------------------------------------------------------
def test_nifti_missing_file_raises_data_not_found(tmp_path):
    with pytest.raises(DataNotFoundError):
        read_nifti(tmp_path / "absent.nii.gz")


def test_nifti_truncated_gz_raises_invalid_input_naming_the_file(tmp_path):
    whole = (NIB / "example4d.nii.gz").read_bytes()
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InvalidInputError) as info:
        read_nifti(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_nifti_truncated_uncompressed_data_raises_invalid_input(tmp_path):
    path = _save(tmp_path, "cut.nii", np.ones((20, 20, 20), np.float32))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(InvalidInputError) as info:
        read_nifti(path)
    assert info.value.path == path


def test_nifti_truncated_header_raises_invalid_input(tmp_path):
    path = _save(tmp_path, "hdr.nii", np.ones((2, 2, 2), np.float32))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InvalidInputError, match="truncated"):
        read_nifti(path)


def test_nifti_random_bytes_raise_unsupported_format(tmp_path):
    path = tmp_path / "noise.nii"
    path.write_bytes(np.random.default_rng(2).bytes(2000))
    with pytest.raises(UnsupportedFormatError) as info:
        read_nifti(path)
    assert isinstance(info.value, InvalidInputError) and info.value.path == path


def test_nifti_random_gzip_payload_raises_unsupported_format(tmp_path):
    path = tmp_path / "noise.nii.gz"
    path.write_bytes(gzip.compress(np.random.default_rng(3).bytes(2000)))
    with pytest.raises(UnsupportedFormatError):
        read_nifti(path)


def test_nifti_analyze_header_is_unsupported(tmp_path):
    img = nib.AnalyzeImage(np.zeros((2, 2, 2), np.int16), np.eye(4))
    nib.save(img, tmp_path / "old.hdr")
    with pytest.raises(UnsupportedFormatError, match="Analyze"):
        read_nifti(tmp_path / "old.hdr")


def test_nifti_gzip_content_with_plain_name_is_explained(tmp_path):
    path = tmp_path / "wrong.nii"
    path.write_bytes((NIB / "standard.nii.gz").read_bytes())
    with pytest.raises(InvalidInputError, match=r"rename it to \.nii\.gz"):
        read_nifti(path)


def _huge_header(tmp_path: Path) -> Path:
    """A valid header declaring 30000 cubed float32 (98 TiB), followed by 64 bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    path = tmp_path / "huge.nii"
    path.write_bytes(header.binaryblock + b"\x00" * 4 + b"\x00" * 64)
    return path


def test_nifti_size_limit_refuses_huge_header_before_reading(tmp_path, monkeypatch):
    path = _huge_header(tmp_path)

    def no_read(*args, **kwargs):  # pixels must never be requested
        raise AssertionError("pixel data was read despite the size limit")

    monkeypatch.setattr(nib.arrayproxy.ArrayProxy, "get_unscaled", no_read)
    with pytest.raises(InvalidInputError, match="above the limit") as info:
        read_nifti(path)
    assert info.value.path == path and "max_bytes" in info.value.fix


def test_nifti_size_limit_from_environment_and_keyword(tmp_path, monkeypatch):
    path = _save(
        tmp_path, "small.nii", np.zeros((10, 10, 10), np.uint8), scl_slope=2.0, scl_inter=0.0
    )
    monkeypatch.setenv("MEDLDM_MAX_IMAGE_BYTES", "3000")  # 4000 bytes as float32
    with pytest.raises(InvalidInputError, match="above the limit"):
        read_nifti(path)
    assert read_nifti(path, max_bytes=4000).array.shape == (10, 10, 10)


def test_check_size_counts_output_itemsize():
    assert check_size((10, 10), np.uint8, "a.nii", max_bytes=100) == 100
    with pytest.raises(InvalidInputError):
        check_size((10, 10), np.uint8, "a.nii", max_bytes=100, out_itemsize=4)


# --- writing ------------------------------------------------------------------------------
def _oblique_affine() -> np.ndarray:
    angle = np.deg2rad(20)
    rot = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-50.0, 12.5, 30.0]
    return affine


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_write_read_round_trip_keeps_affine_and_values(tmp_path, name):
    data = np.random.default_rng(4).normal(size=(6, 7, 8)).astype(np.float32)
    image = MedImage(data, _oblique_affine(), metadata={"description": "round trip"})
    path = write_nifti(image, tmp_path / name)
    back = read_nifti(path)
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-5)
    assert back.metadata["description"] == "round trip"
    header = nib.load(path).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
    np.testing.assert_allclose(header.get_qform(), image.affine, atol=1e-5)
    assert header.get_xyzt_units() == ("mm", "sec")


def test_nifti_write_2d_image_round_trips_as_2d_with_modality_and_unit(tmp_path):
    data = np.arange(12, dtype=np.int16).reshape(3, 4)
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    image = MedImage(data, affine, modality="CT", unit="HU", metadata={"description": "slice"})
    back = read_nifti(write_nifti(image, tmp_path / "flat.nii.gz"))
    assert back.axes == ("x", "y") and back.array.shape == (3, 4)
    assert (back.modality, back.unit, back.metadata["description"]) == ("CT", "HU", "slice")
    np.testing.assert_array_equal(back.array, data)
    np.testing.assert_allclose(back.affine, affine)


def test_nifti_write_4d_keeps_time_axis_and_repetition_time(tmp_path):
    data = np.random.default_rng(5).integers(0, 1000, (4, 5, 3, 6)).astype(np.int16)
    image = MedImage(
        data, np.diag([3, 3, 4, 1]), ("x", "y", "z", "t"), metadata={"repetition_time_s": 2.5}
    )
    back = read_nifti(write_nifti(image, tmp_path / "bold.nii.gz"))
    assert back.axes == ("x", "y", "z", "t")
    assert back.array.dtype == np.int16
    np.testing.assert_array_equal(back.array, data)
    assert back.metadata["repetition_time_s"] == pytest.approx(2.5)


@pytest.mark.parametrize("axes", [("x", "y", "z", "c"), ("x", "y", "z", "c", "t"), ("x", "y", "t")])
def test_nifti_write_channel_and_time_axes_round_trip(tmp_path, axes):
    shape = (3, 4, 5, 2, 3)[: len(axes)]
    data = np.random.default_rng(6).random(shape).astype(np.float32)
    image = MedImage(data, np.eye(4), axes)
    back = read_nifti(write_nifti(image, tmp_path / "multi.nii"))
    if "z" in axes:
        assert back.axes == axes
        np.testing.assert_array_equal(back.array, data)
    else:  # 2D + t gains a singleton z
        assert back.axes == ("x", "y", "z", "t")
        np.testing.assert_array_equal(back.array[:, :, 0, :], data)


def test_nifti_write_sheared_affine_keeps_exact_sform_and_rigid_qform(tmp_path):
    affine = _oblique_affine()
    affine[0, 1] += 0.3  # shear: not representable by a quaternion
    path = write_nifti(MedImage(np.zeros((3, 3, 3), np.float32), affine), tmp_path / "shear.nii")
    header = nib.load(path).header
    np.testing.assert_allclose(header.get_sform(), affine, atol=1e-5)
    qform = header.get_qform()
    zooms = np.linalg.norm(qform[:3, :3], axis=0)
    rotation = qform[:3, :3] / zooms
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(read_nifti(path).affine, affine, atol=1e-5)


def test_nifti_write_float_as_int16_is_scaled(tmp_path):
    data = np.linspace(-1.0, 1.0, 60, dtype=np.float32).reshape(3, 4, 5)
    path = write_nifti(MedImage(data, np.eye(4)), tmp_path / "q.nii", dtype=np.int16)
    assert nib.load(path).get_data_dtype() == np.int16
    np.testing.assert_allclose(read_nifti(path).array, data, atol=1e-4)


def test_nifti_write_bool_and_int64_get_nifti_friendly_dtypes(tmp_path):
    mask = MedImage(np.eye(3, dtype=bool)[:, :, None], np.eye(4))
    assert nib.load(write_nifti(mask, tmp_path / "m.nii")).get_data_dtype() == np.uint8
    labels = MedImage(np.arange(27, dtype=np.int64).reshape(3, 3, 3), np.eye(4))
    back = read_nifti(write_nifti(labels, tmp_path / "l.nii"))
    assert back.array.dtype == np.int32 and back.array.max() == 26


def test_nifti_write_refuses_to_overwrite_unless_asked(tmp_path):
    image = MedImage(np.zeros((2, 2, 2), np.float32), np.eye(4))
    path = write_nifti(image, tmp_path / "a.nii.gz")
    with pytest.raises(OutputExistsError):
        write_nifti(image.with_array(np.ones((2, 2, 2), np.float32)), path)
    assert read_nifti(path).array.sum() == 0
    write_nifti(image.with_array(np.ones((2, 2, 2), np.float32)), path, overwrite=True)
    assert read_nifti(path).array.sum() == 8


def test_nifti_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a header")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    image = MedImage(np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(OSError, match="disk full"):
        write_nifti(image, tmp_path / "a.nii.gz")
    assert os.listdir(tmp_path) == []


def test_nifti_write_2d_image_with_zero_normal_gets_unit_normal(tmp_path):
    image = MedImage(np.ones((3, 4), np.float32), np.diag([0.5, 0.5, 0.0, 1.0]))
    back = read_nifti(write_nifti(image, tmp_path / "flat.nii"))
    np.testing.assert_allclose(back.affine, np.diag([0.5, 0.5, 1.0, 1.0]))


def test_nifti_write_singular_affine_is_refused(tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 2] = affine[:3, 0]  # z parallel to x
    with pytest.raises(InvalidInputError, match="singular"):
        write_nifti(MedImage(np.ones((2, 2, 2)), affine), tmp_path / "bad.nii")
    assert not (tmp_path / "bad.nii").exists()


def test_nifti_pair_header_is_read(tmp_path):
    data = np.arange(8, dtype=np.int16).reshape(2, 2, 2)
    nib.save(nib.Nifti1Pair(data, np.diag([2, 2, 2, 1])), tmp_path / "pair.hdr")
    img = read_nifti(tmp_path / "pair.hdr")
    np.testing.assert_array_equal(img.array, data)
    assert img.spacing == (2.0, 2.0, 2.0)


def test_nifti_write_rejects_other_suffixes(tmp_path):
    image = MedImage(np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(InvalidInputError, match=r"\.nii"):
        write_nifti(image, tmp_path / "a.tif")
