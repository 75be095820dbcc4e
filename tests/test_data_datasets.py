"""Datasets on disk: subject-level splits, image iterators, central slices, crop/pad."""

from __future__ import annotations

import numpy as np
import pytest

from medldm.data.cards import SPLITS, load_card
from medldm.data.datasets import (
    iter_images,
    list_datasets,
    mednist_block,
    mednist_block_range,
    subjects,
)
from medldm.data.root import ENV_VAR
from medldm.data.slices import central_slices, crop_or_pad, plane_axis
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.io.image import MedImage


# --- splits (from the cards; no data needed) ---------------------------------------------
def test_ixi_splits_are_28_3_3_disjoint_and_deterministic():
    parts = {split: subjects("ixi_t1", split) for split in SPLITS}
    assert [len(parts[s]) for s in SPLITS] == [28, 3, 3]
    assert len(set().union(*parts.values())) == 34
    assert parts == {split: subjects("ixi_t1", split) for split in SPLITS}
    assert max(parts["train"]) < min(parts["validation"]) <= max(parts["validation"])
    assert max(parts["validation"]) < min(parts["test"])


@pytest.mark.parametrize("class_name", ["HeadCT", "ChestCT", "AbdomenCT", "BreastMRI"])
def test_mednist_blocks_are_contiguous_disjoint_and_cover_each_class(class_name):
    n = load_card("mednist").classes[class_name]
    ranges = [mednist_block_range("mednist", class_name, split) for split in SPLITS]
    assert ranges[0].start == 0 and ranges[-1].stop == n
    assert ranges[0].stop == ranges[1].start and ranges[1].stop == ranges[2].start
    assert [len(r) for r in ranges] == [n * 8 // 10, n * 9 // 10 - n * 8 // 10, n - n * 9 // 10]


def test_mednist_case_ids_are_disjoint_across_splits():
    parts = [set(subjects("mednist", split)) for split in SPLITS]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 34954
    assert "HeadCT/007200" in parts[1] and "BreastMRI/007953" in parts[2]


def test_unknown_split_and_dataset_raise():
    with pytest.raises(InvalidInputError, match="unknown split"):
        subjects("ixi_t1", "val")
    with pytest.raises(DataNotFoundError, match="ixi_t1"):
        subjects("ixi_t2", "train")


# --- data root handling --------------------------------------------------------------------
def test_missing_data_root_from_env_raises_data_not_found(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "does-not-exist"))
    assert list_datasets() == []
    with pytest.raises(DataNotFoundError, match=ENV_VAR):
        iter_images("ixi_t1", "train")


def test_root_without_the_dataset_folder_raises_with_the_path(tmp_path):
    with pytest.raises(DataNotFoundError, match="ixi_t1"):
        iter_images("ixi_t1", "test", root=tmp_path)
    assert list_datasets(tmp_path) == []


# --- against the real data -------------------------------------------------------------------
def test_native_brain_series_come_per_patient_with_their_contrast(data_root):
    series = list(iter_images("brain_mri_native", "test", root=data_root))
    assert [s.metadata["contrast"] for s in series] == ["FLAIR", "FLAIR", "T1W"]
    assert {s.metadata["subject"] for s in series} == {"patient19"}
    t1 = series[2]
    assert t1.spatial_shape == (256, 256, 48) and t1.modality == "MR"
    assert np.allclose(t1.spacing[:2], 0.91, atol=0.01)


def test_native_brain_slices_keep_the_scanner_grid(data_root):
    from medldm.train.data import native_brain_slices

    slices, names = native_brain_slices("validation", contrasts=("T1W",), root=data_root)
    assert {s.shape for s in slices} == {(256, 256)}  # no resampling to a common grid
    assert set(names) == {"patient12/study1/T1W", "patient12/study2/T1W"}
    assert all(s.min() >= 0 and s.max() <= 1 for s in slices)


def test_list_datasets_finds_all_five(data_root):
    assert list_datasets(data_root) == [
        "brain_mri_native",
        "dicom_qa",
        "ixi_t1",
        "mednist",
        "microscopy",
    ]


def test_ixi_test_split_yields_its_subjects_as_float_mr_volumes(data_root):
    images = list(iter_images("ixi_t1", "test", root=data_root))
    assert [im.metadata["subject"] for im in images] == ["IXI603", "IXI606", "IXI632"]
    for image in images:
        assert image.spatial_shape == (120, 120, 90)
        assert image.spacing == pytest.approx((2.0, 2.0, 2.0))
        assert image.array.dtype == np.float32 and image.modality == "MR"
        assert image.metadata["dataset"] == "ixi_t1"
        assert image.metadata["source"].endswith("_T1.nii.gz")
        assert image.metadata["subject"] in image.metadata["source"]
        assert 1000 < image.array.max() < 5000


def test_mednist_block_matches_the_iterated_images(data_root):
    block = mednist_block("BreastMRI", "test", data_root)
    assert block.shape == (796, 64, 64) and block.dtype == np.uint8
    images = iter_images("mednist", "test", root=data_root)
    first = next(im for im in images if im.metadata["class"] == "BreastMRI")
    assert first.metadata["index"] == 7158 and first.metadata["name"] == "007158.jpeg"
    assert first.metadata["spacing_unknown"] is True and first.modality == "MR"
    np.testing.assert_array_equal(first.array, block[0].T)  # array[x, y] = image[row=y, col=x]


def test_mednist_blocks_of_one_class_reassemble_the_file(data_root):
    blocks = [mednist_block("BreastMRI", split, data_root) for split in SPLITS]
    with np.load(data_root / "mednist" / "BreastMRI.npz") as archive:
        np.testing.assert_array_equal(np.concatenate(blocks), archive["images"])


def test_microscopy_splits_yield_whole_files(data_root):
    test_images = list(iter_images("microscopy", "test", root=data_root))
    assert [im.metadata["name"] for im in test_images] == ["BPAE_mito.tif"]
    assert test_images[0].spatial_shape == (1100, 680)  # on disk 680 rows x 1100 columns
    validation = list(iter_images("microscopy", "validation", root=data_root))
    assert [im.metadata["name"] for im in validation] == ["maize_clsm.tif"]
    timelapse = next(
        im
        for im in iter_images("microscopy", "train", root=data_root)
        if im.metadata["name"] == "membrane_2d_timelapse.tif"
    )
    assert timelapse.axes == ("x", "y", "t") and timelapse.array.shape == (256, 256, 5)
    assert "psf.tif" not in {n for s in SPLITS for n in subjects("microscopy", s)}


def test_dicom_qa_first_case_reads_through_medldm_io(data_root):
    pytest.importorskip("medldm.io.dicom_read", reason="medldm.io DICOM reader not available")
    image = next(iter_images("dicom_qa", "test", root=data_root))
    assert image.metadata["case"] == "philips_ct_head" and image.modality == "CT"
    assert image.spatial_shape == (512, 512, 28)


# --- central slices ----------------------------------------------------------------------------
def _assert_slice_geometry(volume: MedImage, slice_: MedImage) -> None:
    """Every slice pixel (i, j) maps to the world point of the volume voxel it holds."""
    nx, ny = slice_.spatial_shape
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    pixels = np.stack([i.ravel(), j.ravel(), np.zeros(i.size), np.ones(i.size)])
    world = slice_.affine @ pixels
    voxels = np.linalg.solve(volume.affine, world)[:3]
    rounded = np.rint(voxels).astype(int)
    np.testing.assert_allclose(voxels, rounded, atol=1e-6)
    values = volume.array[rounded[0], rounded[1], rounded[2]]
    np.testing.assert_array_equal(values, slice_.array.ravel())


def _oblique_volume() -> MedImage:
    rng = np.random.default_rng(1)
    theta = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]]
    )
    affine = np.eye(4)
    # Stored as L, I, P-ish (every axis flipped), 0.8 x 1.2 x 3 mm, rotated 20 degrees.
    affine[:3, :3] = rotation @ np.array([[-0.8, 0, 0], [0, 0, -3.0], [0, -1.2, 0]])
    affine[:3, 3] = [40.0, -12.0, 7.5]
    return MedImage(rng.random((11, 13, 9)), affine, modality="MR")


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
@pytest.mark.parametrize("reorient", [True, False])
def test_central_slices_keep_world_geometry_on_an_oblique_volume(plane, reorient):
    volume = _oblique_volume()
    slices = central_slices(volume, 3, axis=plane, reorient=reorient)
    axis = plane_axis(volume.affine, plane)
    size = volume.spatial_shape[axis]
    start = (size - 3) // 2
    assert [s.metadata["slice_index"] for s in slices] == [start, start + 1, start + 2]
    for slice_ in slices:
        assert slice_.axes == ("x", "y") and slice_.metadata["plane"] == plane
        _assert_slice_geometry(volume, slice_)


def test_reoriented_slices_point_ras():
    volume = _oblique_volume()
    assert central_slices(volume, 1, "axial")[0].orientation == "RAS"
    assert central_slices(volume, 1, "coronal")[0].orientation == "RSA"
    assert central_slices(volume, 1, "sagittal")[0].orientation == "ASR"


def test_central_axial_slices_of_ixi_use_the_superior_axis(data_root):
    volume = next(iter_images("ixi_t1", "test", root=data_root))
    assert volume.orientation == "PSR" and plane_axis(volume.affine, "axial") == 1
    slices = central_slices(volume, 5, axis="axial")
    assert [s.metadata["slice_index"] for s in slices] == [57, 58, 59, 60, 61]
    for slice_ in slices:
        assert slice_.spatial_shape == (90, 120) and slice_.orientation == "RAS"
        assert slice_.spacing == pytest.approx((2.0, 2.0))
        assert slice_.metadata["subject"] == "IXI603"
        _assert_slice_geometry(volume, slice_)


def test_central_slices_keep_trailing_time_axis():
    volume = _oblique_volume()
    series = volume.replace(
        array=np.stack([volume.array, 2 * volume.array], axis=-1), axes=("x", "y", "z", "t")
    )
    slice_ = central_slices(series, 1, "axial")[0]
    assert slice_.axes == ("x", "y", "t") and slice_.array.shape[-1] == 2
    np.testing.assert_array_equal(
        slice_.array[..., 1], 2 * central_slices(volume, 1, "axial")[0].array
    )


def test_central_slices_reject_bad_requests():
    volume = _oblique_volume()
    with pytest.raises(InvalidInputError, match="asked for 10 slices"):
        central_slices(volume, 10, axis=2)
    with pytest.raises(InvalidInputError, match="unknown plane"):
        central_slices(volume, 1, axis="transverse")
    with pytest.raises(InvalidInputError, match="3D volume"):
        central_slices(MedImage(np.zeros((4, 4)), np.eye(4)), 1)


# --- crop / pad -----------------------------------------------------------------------------------
def test_crop_or_pad_centres_crop_and_pad():
    array = np.arange(5 * 8).reshape(5, 8)
    out = crop_or_pad(array, 6, pad_value=-1)
    assert out.shape == (6, 6)
    # 5 rows -> 6: the one padded row goes at the end; 8 columns -> 6: crop 1 off each side.
    np.testing.assert_array_equal(out[5], -1)
    np.testing.assert_array_equal(out[:5], array[:, 1:7])
    assert crop_or_pad(np.zeros((64, 64, 3)), 32).shape == (32, 32, 3)
    assert crop_or_pad(array, 5).shape == (5, 5)


def test_crop_or_pad_medimage_keeps_world_positions():
    rng = np.random.default_rng(2)
    affine = np.array([[0, -0.5, 0, 10], [0.7, 0, 0, -3], [0, 0, 2, 5], [0, 0, 0, 1.0]])
    image = MedImage(rng.random((9, 4)), affine)
    out = crop_or_pad(image, 6)
    assert out.spatial_shape == (6, 6)
    # Cropped axis 0 starts at old index 1; padded axis 1 has one pixel before the data.
    np.testing.assert_array_equal(out.array[:, 1:5], image.array[1:7])
    np.testing.assert_allclose(out.affine @ [0, 1, 0, 1], image.affine @ [1, 0, 0, 1])
