"""Measured CT in: the Data Exchange reader, rotation-centre finding, the shifted-centre
projector and ``medldm-recon sinogram=`` — on small synthetic files and on the real APS
tooth micro-CT (``raw_ct/tooth_aps_microct.h5`` under the data root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.io.raw_ct import read_data_exchange
from medldm.physics.ct import ParallelBeamCT, filtered_backprojection, sparse_view_angles
from medldm.physics.ct_centre import (
    axis_centred_window,
    centre_by_sharpness,
    centre_from_opposite_views,
    total_variation_2d,
)
from medldm.recon.sinogram import TV_STEP_RATIO, tv_for_weights
from medldm.recon.sinogram_outputs import run_sinogram_study
from medldm.solvers.tv import TotalVariation

TOOTH = Path("raw_ct") / "tooth_aps_microct.h5"


# --- synthetic scans --------------------------------------------------------------------
def _phantom(size: int = 24) -> torch.Tensor:
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    x[..., 6:13, 8:17] = 0.05
    x[..., 14:18, 5:9] = 0.09
    return x


def _write_scan(
    path: Path,
    *,
    centre_offset: float = -3.0,
    n_detectors: int = 72,
    rows: int = 2,
    skip: tuple[str, ...] = (),
    pixel_um: float | None = None,
    flat: float = 1000.0,
) -> np.ndarray:
    """A parallel-beam scan of :func:`_phantom` as raw counts; returns the angles."""
    angles = sparse_view_angles(90)
    lines = ParallelBeamCT(24, angles, n_detectors=n_detectors, centre_offset=centre_offset).A(
        _phantom()
    )[0, 0]
    counts = 1000.0 * np.exp(-lines.numpy().T)[:, None, :]  # (views, 1, bins)
    datasets = {
        "exchange/data": np.repeat(counts, rows, axis=1).astype(np.float32),
        "exchange/data_white": np.full((3, rows, n_detectors), flat, np.float32),
        "exchange/data_dark": np.zeros((3, rows, n_detectors), np.float32),
        "exchange/theta": angles,
    }
    with h5py.File(path, "w") as handle:
        for name, values in datasets.items():
            if name not in skip:
                handle[name] = values
        if "exchange/theta" not in skip:
            handle["exchange/theta"].attrs["units"] = "degrees"
        if pixel_um is not None:
            name = "measurement/instrument/detection_system/objective/resolution"
            handle[name] = pixel_um
            handle[name].attrs["units"] = "um"
    return angles


def test_reader_corrects_flats_and_darks_and_takes_the_files_angles(tmp_path):
    angles = _write_scan(tmp_path / "scan.h5")
    scan = read_data_exchange(tmp_path / "scan.h5")
    assert scan.sinograms.shape == (2, 72, 90)
    assert scan.sinograms.dtype == np.float32
    np.testing.assert_allclose(scan.angles_deg, angles)
    np.testing.assert_allclose(scan.angles_rad, np.deg2rad(angles))
    expected = ParallelBeamCT(24, angles, n_detectors=72, centre_offset=-3.0).A(_phantom())
    np.testing.assert_allclose(scan.sinogram(1), expected[0, 0].numpy(), atol=1e-5)
    assert scan.pixel_size_mm is None and "1 pixel = 1 unit" in scan.pixel_size_note
    assert (scan.n_flats, scan.n_darks, scan.floored_fraction) == (3, 3, 0.0)


def test_reader_takes_the_pixel_size_with_its_units(tmp_path):
    _write_scan(tmp_path / "scan.h5", pixel_um=0.65)
    scan = read_data_exchange(tmp_path / "scan.h5")
    assert scan.pixel_size_mm == pytest.approx(0.65e-3)
    assert "objective/resolution" in scan.pixel_size_note


@pytest.mark.parametrize(
    "missing", ["exchange/data", "exchange/data_white", "exchange/data_dark", "exchange/theta"]
)
def test_missing_dataset_raises_naming_it(tmp_path, missing):
    _write_scan(tmp_path / "scan.h5", skip=(missing,))
    with pytest.raises(InvalidInputError, match=missing):
        read_data_exchange(tmp_path / "scan.h5")


def test_missing_file_and_non_hdf5_file_raise_medldm_errors(tmp_path):
    with pytest.raises(DataNotFoundError):
        read_data_exchange(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InvalidInputError, match="HDF5"):
        read_data_exchange(tmp_path / "text.h5")


def test_flat_field_below_the_dark_field_raises(tmp_path):
    _write_scan(tmp_path / "scan.h5", flat=-1.0)
    with pytest.raises(InvalidInputError, match="flat field is not above the mean dark"):
        read_data_exchange(tmp_path / "scan.h5")


def test_transmission_below_the_floor_is_raised_and_counted(tmp_path):
    _write_scan(tmp_path / "scan.h5")
    with h5py.File(tmp_path / "scan.h5", "r+") as handle:
        handle["exchange/data"][0, 0, :5] = 0.0  # a dead stretch of detector
    scan = read_data_exchange(tmp_path / "scan.h5", transmission_floor=1e-3)
    assert scan.floored_fraction == pytest.approx(5 / (90 * 2 * 72))
    assert np.isfinite(scan.sinograms).all()
    assert scan.sinograms.max() == pytest.approx(-np.log(1e-3), rel=1e-5)


# --- geometry and centre ----------------------------------------------------------------
def test_centre_offset_of_whole_bins_shifts_the_sinogram():
    angles = sparse_view_angles(20)
    x = _phantom(16)
    centred = ParallelBeamCT(16, angles, n_detectors=40).A(x)[0, 0]
    shifted = ParallelBeamCT(16, angles, n_detectors=40, centre_offset=3.0).A(x)[0, 0]
    torch.testing.assert_close(shifted[3:], centred[:-3])


@pytest.mark.parametrize("true_offset", [-7.4, 5.25])
def test_both_centre_estimates_recover_a_known_offset(true_offset):
    angles = sparse_view_angles(120)
    physics = ParallelBeamCT(24, angles, n_detectors=64, centre_offset=true_offset)
    sinogram = physics.A(_phantom())[0, 0].numpy()
    opposite = centre_from_opposite_views(sinogram, angles)
    sharp = centre_by_sharpness(sinogram, angles)
    assert opposite.offset == pytest.approx(true_offset, abs=0.15)
    assert sharp.offset == pytest.approx(true_offset, abs=0.25)


def test_batched_tv_weights_equal_separate_solves():
    angles = sparse_view_angles(12)
    physics = ParallelBeamCT(16, angles, n_detectors=20, centre_offset=1.5)
    y = physics.A(_phantom(16).float() * 10)
    weights = (0.01, 0.1)
    batched = tv_for_weights(y, physics, weights, n_iter=40)
    for weight, estimate in zip(weights, batched, strict=True):
        alone = TotalVariation(
            weight=weight, n_iter=40, constraint="nonnegative", step_ratio=TV_STEP_RATIO, tol=0.0
        )
        torch.testing.assert_close(estimate, alone.solve(y, physics).estimate, atol=1e-5, rtol=1e-4)


# --- the app ------------------------------------------------------------------------------
def test_sinogram_app_writes_images_metrics_and_report(tmp_path, capsys):
    _write_scan(tmp_path / "scan.h5", pixel_um=2.0)
    metrics = run_sinogram_study(tmp_path / "scan.h5", tmp_path / "out", tv_weight=0.01)
    out = tmp_path / "out"
    for name in ("fbp.nii.gz", "tv.nii.gz", "measurement.npy", "report.html", "metrics.json"):
        assert (out / name).is_file(), name
    written = json.loads((out / "metrics.json").read_text())
    assert written["rotation_centre"]["used"] == pytest.approx(72 // 2 - 3.0, abs=0.2)
    assert set(written["rotation_centre"]["estimates"]["row 0"]) >= {
        "opposite_views",
        "fbp_sharpness",
    }
    assert written["ct_prior"]["run"] is False and "field of view" in written["ct_prior"]["reason"]
    assert metrics["tv"]["residual"] < 0.2
    import nibabel as nib

    image = nib.load(out / "tv.nii.gz")
    assert image.shape[2] == 2  # one slice per detector row
    assert image.header.get_zooms()[:3] == pytest.approx((0.002, 0.002, 0.002))
    assert "rotation centre" in capsys.readouterr().out


def test_cli_sinogram_run_writes_the_outputs(tmp_path):
    _write_scan(tmp_path / "scan.h5")
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medldm.recon",
            f"sinogram={tmp_path / 'scan.h5'}",
            "sinogram_tv_weight=0.01",
            f"output_dir={out}",
            "device=cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "rotation centre" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tv"]["rule"] == "given (sinogram_tv_weight)"
    assert (out / "tv.nii.gz").is_file() and (out / "report.html").is_file()


def test_cli_sinogram_reports_a_missing_file_clearly(tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medldm.recon",
            f"sinogram={tmp_path / 'absent.h5'}",
            f"output_dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    assert "projection file not found" in run.stderr


# --- the real tooth -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tooth(data_root):
    path = data_root / TOOTH
    if not path.is_file():
        reason = f"{path} is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: real data must be present)")
        pytest.skip(reason)
    return read_data_exchange(path)


@pytest.mark.shared_data
def test_tooth_reader_gives_two_sinograms_and_the_files_angles(tooth):
    assert tooth.sinograms.shape == (2, 640, 181)
    with h5py.File(tooth.path, "r") as handle:
        np.testing.assert_array_equal(tooth.angles_deg, handle["exchange/theta"][()])
    assert tooth.angles_deg[0] == 0 and 179 < tooth.angles_deg[-1] < 180
    assert (tooth.n_flats, tooth.n_darks) == (10, 10)
    assert np.isfinite(tooth.sinograms).all() and tooth.floored_fraction == 0
    assert tooth.pixel_size_mm is None  # the file gives none: 1 pixel = 1 unit
    assert 1.5 < tooth.sinograms.max() < 2.5  # the densest path keeps ~15 % of the beam


@pytest.mark.slow
@pytest.mark.shared_data
def test_tooth_centre_estimates_agree_within_one_pixel(tooth):
    sinogram = tooth.sinogram(0)
    opposite = centre_from_opposite_views(sinogram, tooth.angles_deg)
    sharp = centre_by_sharpness(sinogram, tooth.angles_deg)
    assert abs(opposite.centre - sharp.centre) < 1.0
    assert abs(opposite.centre - tooth.n_detectors // 2) > 10  # far from the middle pixel


@pytest.mark.shared_data
def test_shifted_centre_projector_passes_the_adjoint_test_at_the_tooths_geometry(tooth):
    centre = centre_from_opposite_views(tooth.sinogram(0), tooth.angles_deg).centre
    offset = centre - tooth.n_detectors // 2  # about -24 bins, fractional
    physics = ParallelBeamCT(48, tooth.angles_deg, n_detectors=128, centre_offset=offset)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 48, 48, dtype=torch.float64, generator=generator)
    y = torch.randn(2, 1, 128, 181, dtype=torch.float64, generator=generator)
    assert physics.adjointness_error(x, y) < 1e-10


@pytest.mark.slow
@pytest.mark.shared_data
def test_tooth_fbp_with_the_found_centre_is_sharper_than_with_the_middle_pixel(tooth):
    sinogram = tooth.sinogram(0)
    centre = centre_from_opposite_views(sinogram, tooth.angles_deg).centre
    radius = 180  # holds the tooth's shadow around either axis
    found, found_offset = axis_centred_window(sinogram, centre, radius)
    middle, middle_offset = axis_centred_window(sinogram, tooth.n_detectors // 2, radius)

    def fbp(window: np.ndarray, offset: float) -> np.ndarray:
        image = filtered_backprojection(
            torch.from_numpy(window)[None, None],
            tooth.angles_deg,
            (2 * radius + 1, 2 * radius + 1),
            centre_offset=offset,
        )
        return image[0, 0].numpy()

    sharp, smeared = fbp(found, found_offset), fbp(middle, middle_offset)
    # a wrong centre splits edges into arcs with negative lobes: the found centre has half
    # the negative mass, a smaller L1 norm, and less total variation at the scale of the
    # structures (the full-resolution TV is dominated by noise in both)
    assert -sharp[sharp < 0].sum() < 0.6 * -smeared[smeared < 0].sum()
    assert np.abs(sharp).sum() < 0.95 * np.abs(smeared).sum()
    smooth = [total_variation_2d(gaussian_filter(image, 1.0)) for image in (sharp, smeared)]
    assert smooth[0] < 0.95 * smooth[1]
