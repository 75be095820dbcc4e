"""Measured MRI raw data in: the readers (.npy, BART .cfl/.hdr, fastMRI and ISMRMRD .h5,
Siemens twix), the mask from the zeros, the calibration region, the operator seen from
the prior's grid, and ``medldm-recon kspace=`` end to end (synthetic files and the two real
raw-data files of the data root, with a tiny untrained prior: the machinery, not the
quality)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from medldm.errors import InvalidInputError, UnsupportedFormatError
from medldm.io.raw_mri import (
    read_raw_kspace,
    remove_readout_oversampling,
    sampling_mask_from_zeros,
    write_cfl,
)
from medldm.models.testing import save_tiny_prior, tiny_prior
from medldm.physics.coils import birdcage_sensitivities
from medldm.physics.mri import SingleCoilMRI, fft2c
from medldm.problems.grid import GridPlan
from medldm.recon.measured import (
    PriorGridMRI,
    calibration_region,
    coil_maps,
    espirit_kernel,
    reconstruct_kspace,
    retrospective_mask,
)
from medldm.recon.outputs import write_run_folder

FAST = {"n_steps": 2, "n_samples": 2}
SMALL_GRID = {"size": [32, 32], "spacing_mm": 1.0}


def _coil_kspace(n_coils: int = 4, shape: tuple[int, int] = (32, 28)) -> np.ndarray:
    """Fully sampled multi-coil k-space of a bright rectangle with birdcage coils."""
    image = torch.zeros(shape)
    image[shape[0] // 4 : 3 * shape[0] // 4, shape[1] // 5 : 4 * shape[1] // 5] = 1.0
    maps = birdcage_sensitivities(n_coils, shape)
    return fft2c(maps * image).numpy().astype(np.complex64)


# --- readers ----------------------------------------------------------------------------
def test_npy_multicoil_round_trip_assumes_1mm_and_says_so(tmp_path):
    kspace = _coil_kspace()
    np.save(tmp_path / "k.npy", kspace)
    raw = read_raw_kspace(tmp_path / "k.npy")
    assert raw.format == "npy" and raw.kspace.dtype == np.complex64
    np.testing.assert_array_equal(raw.kspace, kspace)
    assert raw.spacing_mm == (1.0, 1.0) and not raw.spacing_from_file
    assert "ASSUMED" in raw.describe() and "1 mm" in raw.notes[0]
    assert raw.kspace.flags.writeable  # a copy: the input file is never touched


def test_npy_single_coil_and_slices(tmp_path):
    single = _coil_kspace(1)[0]
    np.save(tmp_path / "single.npy", single)
    assert read_raw_kspace(tmp_path / "single.npy").kspace.shape == (1, 32, 28)
    slices = np.stack([_coil_kspace() * (i + 1) for i in range(3)])
    np.save(tmp_path / "slices.npy", slices)
    raw = read_raw_kspace(tmp_path / "slices.npy")
    assert (raw.slice_index, raw.n_slices) == (1, 3)
    np.testing.assert_allclose(raw.kspace, slices[1])
    with pytest.raises(InvalidInputError, match="slice 5 requested"):
        read_raw_kspace(tmp_path / "slices.npy", slice_index=5)


def test_real_valued_npy_is_refused_naming_the_file(tmp_path):
    np.save(tmp_path / "magnitude.npy", np.ones((8, 16, 16), np.float32))
    with pytest.raises(InvalidInputError, match="complex") as error:
        read_raw_kspace(tmp_path / "magnitude.npy")
    assert "magnitude.npy" in str(error.value) and "Fix:" in str(error.value)


def test_bart_cfl_round_trip_puts_readout_on_rows(tmp_path):
    kspace = _coil_kspace()  # (coils, x, y)
    write_cfl(tmp_path / "ksp", kspace.transpose(1, 2, 0)[:, :, None])  # [x, y, z, coils]
    assert (tmp_path / "ksp.hdr").read_text().startswith("# Dimensions\n32 28 1 4 1")
    for name in ("ksp.cfl", "ksp.hdr"):
        raw = read_raw_kspace(tmp_path / name)
        np.testing.assert_array_equal(raw.kspace, kspace)
        assert raw.format == "bart-cfl" and raw.phase_encode_axis == 1


def test_truncated_cfl_raises_with_the_fix(tmp_path):
    path = write_cfl(tmp_path / "ksp", _coil_kspace().transpose(1, 2, 0)[:, :, None])
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InvalidInputError, match="truncated"):
        read_raw_kspace(path)
    (tmp_path / "ksp.hdr").unlink()
    with pytest.raises(InvalidInputError, match=r"ksp\.hdr is missing"):
        read_raw_kspace(path)


def _ismrmrd_xml(encoded: tuple[int, int], recon_x: int, fov: tuple[float, float]) -> str:
    import ismrmrd.xsd as xsd

    def space(matrix_x: int, fov_x: float) -> object:
        return xsd.encodingSpaceType(
            matrixSize=xsd.matrixSizeType(x=matrix_x, y=encoded[1], z=1),
            fieldOfView_mm=xsd.fieldOfViewMm(x=fov_x, y=fov[1], z=5.0),
        )

    encoding = xsd.encodingType(
        encodedSpace=space(encoded[0], fov[0]),
        reconSpace=space(recon_x, fov[0] * recon_x / encoded[0]),
        encodingLimits=xsd.encodingLimitsType(
            kspace_encoding_step_1=xsd.limitType(
                minimum=0, maximum=encoded[1] - 1, center=encoded[1] // 2
            )
        ),
        trajectory=xsd.trajectoryType("cartesian"),
    )
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000),
        encoding=[encoding],
    )
    return xsd.ToXML(header)


def test_fastmri_h5_multicoil_with_header_mask_and_oversampling(tmp_path):
    kspace = np.stack([_coil_kspace(4, (32, 28)) * (i + 1) for i in range(3)])  # (S, C, H, W)
    line_mask = np.zeros(28, bool)
    line_mask[::3] = True
    line_mask[12:16] = True
    path = tmp_path / "file_brain.h5"
    with h5py.File(path, "w") as handle:
        handle["kspace"] = kspace * line_mask
        handle["mask"] = line_mask
        handle["ismrmrd_header"] = _ismrmrd_xml((32, 28), 16, (320.0, 280.0))
        handle.attrs["acquisition"] = "AXT1"
    raw = read_raw_kspace(path)
    assert raw.format == "fastmri-h5" and (raw.slice_index, raw.n_slices) == (1, 3)
    assert raw.kspace.shape == (4, 16, 28)  # readout oversampling x2 removed along the rows
    assert raw.spacing_from_file and raw.spacing_mm == pytest.approx((10.0, 10.0))
    assert any("oversampling x2 removed" in note for note in raw.notes)
    np.testing.assert_array_equal(raw.mask[0], line_mask)
    assert raw.metadata["acquisition"] == "AXT1"
    expected = remove_readout_oversampling(kspace[1] * line_mask, axis=-2, factor=2)
    np.testing.assert_allclose(raw.kspace, expected, atol=1e-5)


def test_fastmri_h5_single_coil_and_foreign_hdf5(tmp_path):
    with h5py.File(tmp_path / "single.h5", "w") as handle:
        handle["kspace"] = _coil_kspace(1)  # (slices=1, rows, cols)
    raw = read_raw_kspace(tmp_path / "single.h5")
    assert raw.kspace.shape == (1, 32, 28) and not raw.spacing_from_file
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["image"] = np.zeros((4, 4))
    with pytest.raises(UnsupportedFormatError, match="neither a fastMRI"):
        read_raw_kspace(tmp_path / "other.h5")


def test_ismrmrd_round_trip_skips_noise_scans_and_keeps_the_header_geometry(tmp_path):
    import ismrmrd

    kspace = _coil_kspace(4, (16, 24))  # (coils, lines, samples)
    path = tmp_path / "raw.h5"
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(_ismrmrd_xml((24, 16), 24, (240.0, 320.0)))
    noise = ismrmrd.Acquisition.from_array(np.full((4, 24), 5 + 5j, np.complex64))
    noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
    dataset.append_acquisition(noise)
    sampled = [line for line in range(16) if line % 2 == 0 or 6 <= line <= 9]
    for line in sampled:
        acquisition = ismrmrd.Acquisition.from_array(kspace[:, line, :])
        acquisition.idx.kspace_encode_step_1 = line
        dataset.append_acquisition(acquisition)
    dataset.close()
    raw = read_raw_kspace(path)
    assert raw.format == "ismrmrd" and raw.kspace.shape == (4, 16, 24)
    assert raw.phase_encode_axis == 0 and raw.spacing_from_file
    assert raw.spacing_mm == pytest.approx((20.0, 10.0))  # (rows = lines, cols = samples)
    np.testing.assert_allclose(raw.kspace[:, sampled], kspace[:, sampled], atol=1e-6)
    mask = sampling_mask_from_zeros(raw.kspace)
    assert mask[sampled].all() and not mask[[1, 3, 11]].any()


def test_unknown_suffix_and_garbage_twix_are_refused(tmp_path):
    (tmp_path / "scan.raw").write_bytes(b"\0" * 64)
    with pytest.raises(UnsupportedFormatError, match="unknown k-space file type"):
        read_raw_kspace(tmp_path / "scan.raw")
    (tmp_path / "meas.dat").write_bytes(b"not a twix file" * 100)
    with pytest.raises(InvalidInputError, match="twix"):
        read_raw_kspace(tmp_path / "meas.dat")
    with pytest.raises(InvalidInputError, match="not found"):
        read_raw_kspace(tmp_path / "missing.npy")


# --- masks, calibration and the operator on the prior's grid -----------------------------
def test_mask_from_zeros_and_the_calibration_region():
    kspace = _coil_kspace(4, (32, 28))
    line_mask = retrospective_mask((32, 28), 4, phase_encode_axis=1, seed=0)
    assert line_mask.all(axis=0).sum() == line_mask[0].sum()  # whole columns (lines)
    undersampled = kspace * line_mask
    undersampled[1, 0, 0] = 0  # one coil's zero alone does not unsample a location
    mask = sampling_mask_from_zeros(undersampled)
    np.testing.assert_array_equal(mask, line_mask)
    n_centre = round(28 * 0.08)
    assert calibration_region(mask) == (32, n_centre)
    rows = retrospective_mask((32, 28), 4, phase_encode_axis=0, seed=0)
    assert rows.all(axis=1).sum() == rows[:, 0].sum()  # whole rows along axis 0
    box = np.zeros((40, 30), bool)
    box[12:28, 8:22] = True
    assert calibration_region(box) == (16, 14)
    assert espirit_kernel((16, 14), 4) == 6 and espirit_kernel((5, 64), 32) == 3
    assert espirit_kernel((4, 64), 32) is None


def test_prior_grid_operator_is_adjoint_and_keeps_the_picture_upright():
    plan = GridPlan.make((1, 20, 16), (1.0, 1.0), size=(16, 16), spacing_mm=2.0)
    assert plan.resampled_shape == (10, 8) and plan.working_shape == (16, 16)
    physics = SingleCoilMRI(torch.ones(20, 16, dtype=torch.bool))
    operator = PriorGridMRI(physics, plan)
    x = torch.randn(2, 1, 16, 16, dtype=torch.complex128)
    y = torch.randn(2, 1, 20, 16, dtype=torch.complex128)
    assert operator.adjointness_error(x, y) < 1e-12
    same_grid = GridPlan.make((1, 16, 16), (2.0, 2.0), size=(16, 16), spacing_mm=2.0)
    upright = PriorGridMRI(physics, same_grid)
    model = torch.zeros(1, 1, 16, 16)
    model[..., -1, :] = 1  # the model view's last row is anterior = the picture's top row
    assert bool(upright.to_native(model)[0, 0, 0].abs().min() == 1)
    constant = torch.ones(1, 1, 16, 16, dtype=torch.complex128)
    native = operator.to_native(constant)  # Fourier resampling keeps intensities
    assert float(native.abs()[0, 0, 6:14, 5:11].mean()) == pytest.approx(1.0, abs=0.05)


# --- end to end -------------------------------------------------------------------------
def test_retrospective_multicoil_run_scores_every_solver(tmp_path):
    np.save(tmp_path / "full.npy", _coil_kspace(4, (32, 64)))  # 4x: 5 centre lines
    result = reconstruct_kspace(
        tmp_path / "full.npy",
        "mri_brain_4x",
        acceleration=4,
        prior=tiny_prior(),
        grid=SMALL_GRID,
        solver_options=FAST,
        classical=["cg"],
        seed=3,
    )
    m = result.metrics
    assert m["reference"]["kind"] == "retrospective" and "retrospective" in m["sampling_mask"]
    assert m["coil_maps"].startswith("ESPIRiT")
    for values in [m["ldm"], m["direct"], *m["classical"].values()]:
        assert np.isfinite(values["psnr_db"]) and 0 < values["ssim"] <= 1
    assert sorted(m["classical"]) == ["cg", "tv"] and "latent_dds" in m["phase"]
    assert result.reconstruction.shape == result.truth.shape == (1, 32, 64)
    paths = write_run_folder(result, tmp_path / "run")
    for name in ("reconstruction", "zero_filled", "tv", "cg", "std"):
        image = nib.load(str(tmp_path / "run" / f"{name}.nii.gz"))
        assert image.shape == (64, 32, 1) and np.allclose(image.header.get_zooms(), 1.0)
    text = paths["report"].read_text()
    assert "Measured data, scored against the reference." in text
    assert "Coil maps: ESPIRiT" in text and "CG (classical)" in text
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["best_classical"] in ("cg", "tv")
    assert saved["kspace_holdout"] is None  # a reference: no hold-out unless asked


def test_a_coarser_prior_grid_still_gives_the_measured_grids_detail(tmp_path):
    """A 1 mm acquisition and a 2 mm prior: the prior's estimate anchors a final solve on
    the measured grid, so the output keeps what the 1 mm k-space measured beyond the
    prior's band and fits the data as TV does."""
    shape = (64, 48)
    np.save(tmp_path / "full.npy", _coil_kspace(4, shape))
    result = reconstruct_kspace(
        tmp_path / "full.npy",
        "mri_brain_4x",
        acceleration=4,
        prior=tiny_prior(),
        grid={"size": [32, 32], "spacing_mm": 2.0},
        solver_options=FAST,
        classical=["cg"],
        holdout_splits=0,
    )
    m = result.metrics
    assert "RESAMPLED" in m["grid"] and "measured grid" in m["grid"]
    assert result.reconstruction.shape == (1, *shape)
    # the prior's own estimate (a 2 mm picture) misfits the 1 mm data; the final solve fits
    # it as TV does (measured: 0.109 before, 0.0803 after, TV 0.0803)
    assert m["ldm"]["residual"] < 0.9 * m["ldm"]["residual_on_prior_grid"]
    assert m["ldm"]["residual"] < 1.05 * m["classical"]["tv"]["residual"]


def test_acceleration_on_undersampled_data_is_refused(tmp_path):
    kspace = _coil_kspace()
    kspace[:, :, ::2] = 0
    np.save(tmp_path / "under.npy", kspace)
    with pytest.raises(InvalidInputError, match="fully sampled"):
        reconstruct_kspace(tmp_path / "under.npy", acceleration=4, prior=tiny_prior())


def test_cli_kspace_run_writes_the_outputs(tmp_path):
    folder = save_tiny_prior(tmp_path / "tiny")
    kspace = _coil_kspace(4, (32, 28))
    unsampled = np.zeros(28, bool)
    unsampled[1::3] = True
    unsampled[11:17] = False  # a fully sampled centre for the coil maps
    kspace[:, :, unsampled] = 0  # undersampled: the mask comes from the zeros
    np.save(tmp_path / "k.npy", kspace)
    out = tmp_path / "run"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medldm.recon",
            f"kspace={tmp_path / 'k.npy'}",
            f"output_dir={out}",
            f"preset.prior={folder}",
            "preset.grid.size=[32,32]",
            "preset.grid.spacing_mm=1.0",
            "solver_options={n_steps:2,n_samples:2}",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "residual" in run.stdout and "TV" in run.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampling_mask"] == "the non-zero k-space locations"
    assert metrics["reference"] is None and "psnr_db" not in metrics["ldm"]
    # no reference: every method gets the k-space hold-out score, 5 splits by default
    holdout = metrics["kspace_holdout"]["methods"]
    assert {"latent_dds", "tv", "cg"} <= set(holdout)
    assert all(v["n_splits"] == 5 and 0 < v["mean"] < 2 for v in holdout.values())
    assert metrics["ldm"]["holdout_error"] == holdout["latent_dds"]["mean"]
    paired = metrics["kspace_holdout"]["ldm_minus_best_classical"]
    best = holdout[metrics["kspace_holdout"]["best_classical"]]
    assert paired["mean"] == pytest.approx(holdout["latent_dds"]["mean"] - best["mean"])
    assert "hold-out" in run.stdout and "k-space hold-out" in (out / "report.html").read_text()
    assert (out / "reconstruction.nii.gz").exists() and (out / "zero_filled.nii.gz").exists()


# --- the real raw-data files of the data root --------------------------------------------
@pytest.fixture(scope="module")
def raw_mri_dir(data_root: Path) -> Path:
    path = data_root / "raw_mri"
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{path} is missing (CI=true: real data must be present)")
        pytest.skip(f"{path} is missing")
    return path


def test_real_brain_kspace_reads_with_its_mask_and_calibration_block(raw_mri_dir):
    raw = read_raw_kspace(raw_mri_dir / "brain_8coil_cartesian_ksp.npy")
    assert raw.kspace.shape == (8, 230, 180) and not raw.spacing_from_file
    mask = sampling_mask_from_zeros(raw.kspace)
    assert 0.12 < mask.mean() < 0.13  # ~8x Poisson disc, as the data card says
    region = calibration_region(mask)
    assert min(region) >= 20 and espirit_kernel(region, 8) is not None


def test_real_twix_phantom_reads_as_fully_sampled_2mm(raw_mri_dir):
    raw = read_raw_kspace(raw_mri_dir / "phantom_32coil_twix_MID00243.dat")
    assert raw.format == "siemens-twix" and raw.kspace.shape == (32, 64, 64)
    assert raw.spacing_from_file and raw.spacing_mm == (2.0, 2.0)
    assert raw.phase_encode_axis == 0 and sampling_mask_from_zeros(raw.kspace).all()
    # the header's readout oversampling (x2) does not match 64 samples for 64 pixels
    assert any("no oversampling removed" in note for note in raw.notes)


@pytest.mark.slow
def test_real_files_reconstruct_end_to_end(raw_mri_dir, tmp_path):
    phantom = reconstruct_kspace(
        raw_mri_dir / "phantom_32coil_twix_MID00243.dat",
        acceleration=8,
        prior=tiny_prior(),
        solver_options=FAST,
        classical=["cg"],
    )
    m = phantom.metrics
    assert m["reference"]["kind"] == "retrospective" and m["input"].startswith("siemens-twix")
    assert all(np.isfinite(v["psnr_db"]) for v in [m["ldm"], *m["classical"].values()])
    write_run_folder(phantom, tmp_path / "phantom")
    brain = reconstruct_kspace(
        raw_mri_dir / "brain_8coil_cartesian_ksp.npy",
        prior=tiny_prior(),
        solver_options=FAST,
        baseline=False,
        holdout_splits=2,  # the default 5 cost a minute here
    )
    b = brain.metrics
    assert b["kspace_holdout"]["methods"]["latent_dds"]["n_splits"] == 2
    assert b["sampling_mask"] == "the non-zero k-space locations"
    assert b["coil_maps"].startswith("ESPIRiT")
    assert "RESAMPLED" in b["grid"] and 0 < b["ldm"]["residual"] < 1
    assert brain.reconstruction.shape == (1, 230, 180)


def test_espirit_that_leaves_the_object_uncovered_falls_back_to_lowres_maps(raw_mri_dir):
    # 32 coils, fastMRI 4x: 5 centre lines. ESPIRiT (kernel 3) leaves part of the
    # phantom's maps, and SENSE on them fell to 6 dB; the fall-back is said in the record.
    raw = read_raw_kspace(raw_mri_dir / "phantom_32coil_twix_MID00243.dat")
    kspace = torch.as_tensor(raw.kspace)
    mask = retrospective_mask(tuple(kspace.shape[-2:]), 4, None, 0)
    assert calibration_region(mask) == (64, 5)
    maps, how = coil_maps(kspace * torch.as_tensor(mask), mask)
    assert how.startswith("low-resolution maps") and "ESPIRiT (kernel 3) left" in how
    assert maps.shape == kspace.shape
    full = np.ones(mask.shape, bool)  # the whole k-space as calibration: ESPIRiT holds
    _, how_full = coil_maps(kspace, full)
    assert how_full.startswith("ESPIRiT")
