"""Parallel-beam CT: agreement with scikit-image on real CT slices, caching, FBP, noise."""

from __future__ import annotations

import copy
import pickle
import time
import warnings

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file
from skimage.transform import iradon, radon

from medldm.errors import InvalidInputError
from medldm.io import load
from medldm.physics import (
    GaussianNoise,
    ParallelBeamCT,
    TransmissionPoissonNoise,
    limited_angle,
    sparse_view_angles,
)
from medldm.physics import ct as ct_module

GEOMETRIES = {
    "full_180": np.arange(180.0),
    "sparse_30": sparse_view_angles(30),
    "limited_90": limited_angle(90, 45),
}


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64))[None, None]


def _inside_circle(image: np.ndarray) -> np.ndarray:
    """Zero outside the inscribed circle, as skimage's ``circle=True`` requires."""
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    radius = min(image.shape) // 2
    outside = (rows - image.shape[0] // 2) ** 2 + (cols - image.shape[1] // 2) ** 2 > radius**2
    return np.where(outside, 0.0, image)


@pytest.fixture(scope="module")
def dicom_ct_slice() -> np.ndarray:
    """pydicom's CT_small.dcm (128 x 128, HU) as attenuation relative to water, (row, col)."""
    image = load(get_testdata_file("CT_small.dcm"))
    hounsfield = np.asarray(image.array, dtype=np.float64).T  # MedImage is (x, y)
    return np.clip((hounsfield + 1000.0) / 1000.0, 0, None)


@pytest.fixture(scope="module")
def mednist_ct_slices(data_root) -> list[np.ndarray]:
    """Two HeadCT and two ChestCT MedNIST slices (64 x 64), scaled to [0, 1]."""
    slices = []
    for name in ("HeadCT", "ChestCT"):
        path = data_root / "mednist" / f"{name}.npz"
        if not path.exists():
            pytest.skip(f"{path} is missing")
        images = np.load(path)["images"]
        slices += [images[index].astype(np.float64) / 255.0 for index in (0, 4500)]
    return slices


def _check_projector_against_radon(image: np.ndarray, geometry: str, circle: bool) -> float:
    angles = GEOMETRIES[geometry]
    image = _inside_circle(image) if circle else image
    physics = ParallelBeamCT(image.shape, angles, circle=circle)
    ours = physics.A(_as_batch(image))[0, 0].numpy()
    reference = radon(image, angles, circle=circle)
    assert ours.shape == reference.shape
    # Same scale too: both integrate in pixel lengths.
    assert ours.sum() == pytest.approx(reference.sum(), rel=0.01)
    return _correlation(ours, reference)


@pytest.mark.shared_data
@pytest.mark.parametrize("circle", [True, False], ids=["circle", "full_square"])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_projector_matches_skimage_radon_on_mednist_ct(mednist_ct_slices, geometry, circle):
    for image in mednist_ct_slices:
        assert _check_projector_against_radon(image, geometry, circle) > 0.99


@pytest.mark.parametrize("circle", [True, False], ids=["circle", "full_square"])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_projector_matches_skimage_radon_on_dicom_ct(dicom_ct_slice, geometry, circle):
    assert _check_projector_against_radon(dicom_ct_slice, geometry, circle) > 0.99


@pytest.mark.parametrize("circle", [True, False], ids=["circle", "full_square"])
@pytest.mark.parametrize("filter_name", ["ramp", "shepp-logan", "hann"])
@pytest.mark.parametrize("geometry", ["full_180", "sparse_30"])
def test_fbp_matches_skimage_iradon(dicom_ct_slice, geometry, filter_name, circle):
    angles = GEOMETRIES[geometry]
    image = _inside_circle(dicom_ct_slice) if circle else dicom_ct_slice
    sinogram = radon(image, angles, circle=circle)
    physics = ParallelBeamCT(image.shape, angles, circle=circle)
    ours = physics.fbp(_as_batch(sinogram), filter=filter_name)[0, 0].numpy()
    reference = iradon(
        sinogram, angles, circle=circle, filter_name=filter_name, output_size=image.shape[0]
    )
    assert _correlation(ours, reference) > 0.99
    # Same units: FBP of views spread over 180 degrees is scaled like iradon.
    assert np.abs(ours).max() == pytest.approx(np.abs(reference).max(), rel=0.01)


@pytest.mark.shared_data
def test_fbp_matches_skimage_iradon_on_mednist_ct(mednist_ct_slices):
    angles = GEOMETRIES["sparse_30"]
    physics = ParallelBeamCT(64, angles)
    for image in mednist_ct_slices:
        sinogram = radon(_inside_circle(image), angles, circle=True)
        ours = physics.fbp(_as_batch(sinogram))[0, 0].numpy()
        assert _correlation(ours, iradon(sinogram, angles, circle=True)) > 0.99


def test_fbp_of_our_projection_reconstructs_the_image(dicom_ct_slice):
    image = _inside_circle(dicom_ct_slice)
    physics = ParallelBeamCT(image.shape, GEOMETRIES["full_180"])
    recon = physics.fbp(physics.A(_as_batch(image)))[0, 0].numpy()
    assert _correlation(recon, image) > 0.97


def test_system_matrix_is_cached_per_geometry():
    angles = sparse_view_angles(17)  # a geometry no other test uses
    ct_module.SYSTEM_MATRIX_CACHE.pop(
        ("projector", *ct_module.geometry_key(96, 96, angles, 96)), None
    )
    start = time.perf_counter()
    first = ParallelBeamCT(96, angles)
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    second = ParallelBeamCT(96, list(angles))
    second_seconds = time.perf_counter() - start
    assert second.system_matrix is first.system_matrix
    assert second.system_matrix_t is first.system_matrix_t
    assert second_seconds < first_seconds
    other = ParallelBeamCT(96, sparse_view_angles(18))
    assert other.system_matrix is not first.system_matrix


def test_cache_keeps_only_the_most_recent_geometries(monkeypatch):
    monkeypatch.setattr(ct_module, "SYSTEM_MATRIX_CACHE_SIZE", 2)
    for n_views in (3, 4, 5):
        ParallelBeamCT(8, sparse_view_angles(n_views))
    assert len(ct_module.SYSTEM_MATRIX_CACHE) == 2
    newest = ("projector", *ct_module.geometry_key(8, 8, sparse_view_angles(5), 8))
    assert newest in ct_module.SYSTEM_MATRIX_CACHE


def test_system_matrix_is_not_saved_in_the_state_dict():
    assert "system_matrix" not in ParallelBeamCT(8, sparse_view_angles(4)).state_dict()


def test_slicewise_3d_projection_equals_projecting_each_slice():
    physics_3d = ParallelBeamCT(16, sparse_view_angles(8), spatial_dims=3)
    physics_2d = ParallelBeamCT(16, sparse_view_angles(8))
    volume = torch.rand(2, 1, 5, 16, 16, generator=torch.Generator().manual_seed(0))
    sinograms = physics_3d.A(volume)
    assert sinograms.shape == (2, 1, 5, 16, 8)
    for index in range(5):
        assert torch.allclose(sinograms[:, :, index], physics_2d.A(volume[:, :, index]))
    assert physics_3d.fbp(sinograms).shape == volume.shape


def test_projector_is_differentiable():
    physics = ParallelBeamCT(12, sparse_view_angles(6))
    x = torch.rand(1, 1, 12, 12, requires_grad=True)
    physics.A(x).square().sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize(
    "noise_model", [TransmissionPoissonNoise(1e4), GaussianNoise(0.05)], ids=["poisson", "gauss"]
)
def test_sinogram_noise_is_reproducible_by_seed(dicom_ct_slice, noise_model):
    # Attenuation per pixel of ~0.02 (water at 0.1 /cm, 2 mm pixels): line integrals of a few.
    image = _as_batch(_inside_circle(dicom_ct_slice) * 0.02)
    physics = ParallelBeamCT(128, sparse_view_angles(30), noise_model=noise_model)
    first = physics(image, torch.Generator().manual_seed(4))
    second = physics(image, torch.Generator().manual_seed(4))
    third = physics(image, torch.Generator().manual_seed(5))
    assert torch.equal(first, second) and not torch.equal(first, third)
    clean = physics.A(image)
    relative_error = float((first - clean).norm() / clean.norm())
    assert 0.001 < relative_error < 0.2


def test_transmission_noise_grows_with_attenuation():
    noise = TransmissionPoissonNoise(photons_per_ray=1e4)
    generator = torch.Generator().manual_seed(0)
    thin = noise(torch.full((1, 1, 1000, 1), 0.1), generator)
    thick = noise(torch.full((1, 1, 1000, 1), 4.0), generator)
    assert float(thin.std()) == pytest.approx(noise.sigma * np.exp(0.05), rel=0.15)
    assert float(thick.std()) > 5 * float(thin.std())
    assert float(thick.mean()) == pytest.approx(4.0, abs=0.05)


def test_geometry_helpers_give_expected_angles():
    assert sparse_view_angles(8).tolist() == [0.0, 22.5, 45.0, 67.5, 90.0, 112.5, 135.0, 157.5]
    assert limited_angle(90).tolist() == list(np.arange(90.0))
    with pytest.raises(InvalidInputError):
        limited_angle(270)
    with pytest.raises(InvalidInputError):
        sparse_view_angles(0)


def test_input_of_wrong_shape_raises():
    physics = ParallelBeamCT(16, sparse_view_angles(4))
    with pytest.raises(InvalidInputError, match="expected"):
        physics.A(torch.rand(1, 1, 16, 15))
    with pytest.raises(InvalidInputError, match="sinogram"):
        physics.fbp(torch.rand(1, 1, 16, 5))


def test_no_warnings_from_sparse_matrices():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        physics = ParallelBeamCT(10, sparse_view_angles(7))
        physics.A_adjoint(physics.A(torch.rand(1, 1, 10, 10, dtype=torch.float64)))


def test_operator_survives_copy_pickle_and_dtype_moves():
    physics = ParallelBeamCT(12, sparse_view_angles(5))
    x = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    reference = physics.A(x)
    physics.fbp(reference)  # builds the FBP back-projector buffer too
    for clone in (copy.deepcopy(physics), pickle.loads(pickle.dumps(physics))):
        assert torch.allclose(clone.A(x), reference)
        assert torch.allclose(clone.fbp(reference), physics.fbp(reference))
    moved = copy.deepcopy(physics).to(torch.float64)
    assert moved.system_matrix.dtype == torch.float64
    assert torch.allclose(moved.A(x), reference)
