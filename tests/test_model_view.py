"""The model view is one convention: training, the benchmark and the app lay a volume's
slices out identically (rows towards A, columns towards R), whatever its storage order.

Each test volume holds, in every voxel, a world coordinate (A or R, in mm), so the layout
of a slice can be read off its values without any anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from medldm.bench.cases.from_images import image_cases
from medldm.data.normalize import FixedRangeNormalizer
from medldm.io import save
from medldm.io.image import MedImage
from medldm.problems.model_view import (
    model_slices,
    model_stack_to_volume,
    slice_to_model,
    volume_to_model_stack,
)
from medldm.recon.pipeline import canonical_image
from medldm.train.data import folder_images

# Storage orders seen in practice: IXI (P, S, R), LAS (radiological NIfTI), RAS.
AFFINES = {
    "PSR (IXI)": np.array([[0, 0, 2, -20], [-2, 0, 0, 30], [0, 2, 0, -15], [0, 0, 0, 1.0]]),
    "LAS": np.array([[-2, 0, 0, 30], [0, 2, 0, -20], [0, 0, 2, -15], [0, 0, 0, 1.0]]),
    "RAS": np.diag([2.0, 2.0, 2.0, 1.0]),
}
SHAPE = (24, 20, 16)


def _world_volume(affine: np.ndarray, world_axis: int) -> MedImage:
    """A volume whose voxels hold their world coordinate along ``world_axis`` (0 = R, 1 = A)."""
    index = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), axis=-1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return MedImage(world[..., world_axis].astype(np.float32), affine, modality="MR")


def _assert_rows_anterior_columns_right(
    a_slice: np.ndarray, r_slice: np.ndarray, label: str
) -> None:
    assert np.all(np.diff(a_slice, axis=0) > 0), f"{label}: rows do not grow towards A"
    assert np.allclose(np.diff(a_slice, axis=1), 0), f"{label}: A varies along columns"
    assert np.all(np.diff(r_slice, axis=1) > 0), f"{label}: columns do not grow towards R"
    assert np.allclose(np.diff(r_slice, axis=0), 0), f"{label}: R varies along rows"


@pytest.mark.parametrize("storage", sorted(AFFINES))
def test_model_slices_put_anterior_along_rows_and_right_along_columns(storage):
    a_volume = _world_volume(AFFINES[storage], 1)
    r_volume = _world_volume(AFFINES[storage], 0)
    pairs = zip(model_slices(a_volume, 3), model_slices(r_volume, 3), strict=True)
    for (_, a_slice), (_, r_slice) in pairs:
        _assert_rows_anterior_columns_right(a_slice, r_slice, storage)


@pytest.mark.parametrize("storage", sorted(AFFINES))
def test_benchmark_cases_use_the_model_view(storage):
    """The benchmark once flipped slices upside down relative to training (-0.43 dB)."""
    normalizer = FixedRangeNormalizer(-1000.0, 1000.0, clip=False)
    cases = {}
    for axis in (0, 1):
        volume = _world_volume(AFFINES[storage], axis)
        cases[axis] = image_cases(volume, dataset="d", case_id="v", normalizer=normalizer, slices=2)
    for a_case, r_case in zip(cases[1], cases[0], strict=True):
        _assert_rows_anterior_columns_right(a_case.image, r_case.image, storage)
        assert a_case.metadata["display_origin"] == "lower"


@pytest.mark.parametrize("storage", sorted(AFFINES))
def test_app_slab_uses_the_model_view(storage):
    stacks = {
        axis: volume_to_model_stack(canonical_image(_world_volume(AFFINES[storage], axis)).array)
        for axis in (0, 1)
    }
    for a_slice, r_slice in zip(stacks[1], stacks[0], strict=True):
        _assert_rows_anterior_columns_right(a_slice, r_slice, storage)


@pytest.mark.parametrize("storage", sorted(AFFINES))
def test_training_folder_slices_use_the_model_view(tmp_path, storage):
    for axis, name in ((1, "a"), (0, "r")):
        folder = tmp_path / name
        folder.mkdir()
        save(_world_volume(AFFINES[storage], axis), folder / "volume.nii.gz")
    size = (32, 32)
    a_slices, _ = folder_images(tmp_path / "a", size)
    r_slices, _ = folder_images(tmp_path / "r", size)
    # per-slice percentile scaling keeps the order of values; look inside the padding
    inner = (slice(6, 26), slice(10, 22))  # 20 A-rows x 12 R-columns of the 24x20x16 volume
    for a_slice, r_slice in zip(a_slices, r_slices, strict=True):
        _assert_rows_anterior_columns_right(a_slice[inner], r_slice[inner], storage)


def test_model_view_maps_are_exact_inverses():
    rng = np.random.default_rng(0)
    stack = rng.random((3, 5, 7))
    assert np.array_equal(volume_to_model_stack(model_stack_to_volume(stack)), stack)
    picture = rng.random((7, 5))  # [x, y]
    assert slice_to_model(picture).shape == (5, 7)
    assert np.array_equal(slice_to_model(picture).T, picture)
