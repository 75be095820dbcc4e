"""medldm-recon and medldm.reconstruct: every preset on small real inputs with a tiny
untrained prior (the machinery, not the quality), DICOM in -> valid DICOM out with the
same geometry, batch mode with a corrupt study, dry run, measured k-space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import medldm
from medldm.errors import InvalidInputError, MedLDMError, OutputExistsError
from medldm.io import MedImage, load
from medldm.recon.outputs import write_run_folder
from medldm.recon.presets import available_recon_presets, load_preset

FAST = {"n_steps": 2, "n_samples": 2}
RECON = [sys.executable, "-m", "medldm.recon"]


def _grid(size: int = 32, spacing: float | None = 4.0) -> dict:
    return {"size": [size, size], "spacing_mm": spacing}


@pytest.mark.parametrize("preset", ["mri_brain_4x", "mri_brain_8x", "inpaint_box"])
def test_brain_presets_on_a_nifti_volume(preset, small_brain, tiny_prior_folder, tmp_path):
    result = medldm.reconstruct(
        small_brain,
        preset,
        prior=str(tiny_prior_folder),
        slices=2,
        grid=_grid(),
        solver_options=FAST,
    )
    assert result.reconstruction.shape == (2, 48, 40)
    assert result.std.shape == result.reconstruction.shape
    m = result.metrics
    assert {"psnr_db", "ssim", "nfe", "seconds"} <= set(m["ldm"]) and m["ldm"]["nfe"] == 2
    assert {"psnr_db", "ssim"} <= set(m["baseline"]) and "ldm_minus_baseline_psnr_db" in m
    paths = write_run_folder(
        result, tmp_path / "run", config={"preset": preset}, inputs=[small_brain]
    )
    written = load(paths["reconstruction"])
    source = load(small_brain)
    # the slab: 2 central axial slices of 6, same in-plane geometry and world positions
    assert written.spatial_shape == (40, 48, 2)
    expected = source.affine.copy()
    expected[:3, 3] += expected[:3, :3] @ np.array([0, 0, 2])
    np.testing.assert_allclose(written.affine, expected, atol=1e-4)
    saved = json.loads(paths["metrics"].read_text())
    assert saved["preset"] == preset
    uncertainty = saved["uncertainty"]
    assert uncertainty["calibrated"] is False
    assert "no fit" in uncertainty["reason"]  # the tiny prior has none
    assert 0 <= uncertainty["coverage_50"] <= uncertainty["coverage_90"] <= 1
    assert -1 <= uncertainty["std_error_spearman"] <= 1
    # the box's std is scored where the data leaves the image open, not on measured pixels
    assert uncertainty["roi"] == (
        "unobserved foreground" if preset == "inpaint_box" else "foreground"
    )
    interval = load(paths["interval90_halfwidth"]).array
    np.testing.assert_allclose(interval.transpose(2, 1, 0), 1.6448536 * result.std, rtol=1e-4)
    html = paths["report"].read_text()
    assert '<table id="metrics"' in html and "data:image/png;base64" in html
    assert "UNCALIBRATED" in html and "Spearman" in html


@pytest.mark.parametrize("preset", ["mri_brain_4x", "mri_brain_8x"])
def test_a_2d_preset_couples_a_slab_along_z_and_solves_one_slice_alone(
    preset, small_brain, tiny_prior_folder
):
    """The 2D presets measure each slice in its own 2D k-space. A slab of several slices is
    one multislice problem whose slices the LDM solver couples by TV along z (the coupling
    changes the result); a single slice is the per-slice operator, with its presets."""

    def run(slices: int, **options: float):
        return medldm.reconstruct(
            small_brain,
            preset,
            prior=str(tiny_prior_folder),
            slices=slices,
            grid=_grid(),
            solver_options={**FAST, **options},
            baseline=False,
        )

    operator = preset.replace("mri_brain", "mri")
    slab, uncoupled, alone = run(3), run(3, slice_tv_weight=0.0), run(1)
    assert slab.metrics["volume_mode"] and slab.metrics["physics"] == f"{operator}_multislice"
    assert slab.reconstruction.shape == (3, 48, 40)
    assert np.abs(slab.reconstruction - uncoupled.reconstruction).max() > 1e-4
    assert not alone.metrics["volume_mode"] and alone.metrics["physics"] == operator


def test_mri_brain_3d_preset_solves_the_slab_as_one_volume(small_brain, tiny_prior_folder):
    result = medldm.reconstruct(
        small_brain,
        "mri_brain_3d",
        prior=str(tiny_prior_folder),
        slices="volume",
        grid=_grid(),
        solver_options=FAST,
        baseline=False,
    )
    assert result.metrics["volume_mode"] and result.reconstruction.shape == (6, 48, 40)


def _mni_head_file(folder: Path) -> Path:
    """The whole MNI152 head at 4 mm (nilearn) as a NIfTI file in ``folder``."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=4)
    path = folder / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.get_fdata(), np.float32), image.affine), path)
    return path


def test_a_whole_head_is_also_scored_over_the_slices_with_foreground(tiny_prior_folder, tmp_path):
    """The all-slice means count the empty slices above and below the head; metrics.json and
    the report also give the scores over the slices with foreground (the benchmark's 15 %
    rule)."""
    from medldm.problems.model_view import foreground_slices

    path = _mni_head_file(tmp_path)
    result = medldm.reconstruct(
        path,
        "mri_brain_3d",
        prior=str(tiny_prior_folder),
        slices="all",
        grid=_grid(),
        solver_options=FAST,
    )
    m = result.metrics
    n_slices, head = m["slices"], m["ldm"]["foreground_slices"]
    assert 0 < head["n"] < n_slices
    assert head["psnr_db"] != pytest.approx(m["ldm"]["psnr_db"], abs=0.01)
    assert m["baseline"]["foreground_slices"]["n"] == head["n"]
    paths = write_run_folder(result, tmp_path / "run", config={}, inputs=[path])
    assert (
        f"Over the {head['n']} slices with at least 15 % foreground" in paths["report"].read_text()
    )
    assert foreground_slices(np.zeros((2, 20, 20))) == []


def _run_on_mni_head(tmp_path, monkeypatch, prior, preset: str, record) -> None:
    """Reconstruct a 4-slice central slab of the MNI152 head with ``prior``, calling
    ``record(x, kwargs)`` on every UNet call."""
    path = _mni_head_file(tmp_path)
    forward = prior.unet.forward

    def spy(x, timesteps, **kwargs):
        record(x, kwargs)
        return forward(x, timesteps, **kwargs)

    monkeypatch.setattr(prior.unet, "forward", spy)
    medldm.reconstruct(
        path, preset, prior=prior, slices=4, grid=_grid(), solver_options=FAST, baseline=False
    )


@pytest.mark.parametrize("preset", ["mri_brain_3d", "mri_brain_4x"])
def test_a_slice_conditioned_prior_is_told_where_the_slab_lies_in_the_head(
    preset, tmp_path, monkeypatch
):
    """The positions come from the whole input volume's foreground extent: a central slab
    of a whole head is told it is central (not 0 to 1 across the slab), slice by slice, in
    both the volume path and the per-slice path."""
    from medldm.models.testing import tiny_prior

    seen = []

    def record(x, kwargs):
        seen.append(kwargs["slice_position"])

    _run_on_mni_head(tmp_path, monkeypatch, tiny_prior(slice_position=True), preset, record)
    positions = seen[0].tolist()[:4]
    assert positions == sorted(positions)  # inferior to superior, one step apart
    assert 0.3 < positions[0] < positions[-1] < 0.75
    assert np.allclose(np.diff(positions), np.diff(positions)[0])
    assert all(s.tolist() == positions * 2 for s in seen)  # two samples, every step


@pytest.mark.parametrize("preset", ["mri_brain_3d", "mri_brain_4x"])
def test_a_stack_aware_prior_sees_each_slab_slices_neighbours(preset, tmp_path, monkeypatch):
    """The slab is a contiguous stack in both paths: every slice is shown the latents of the
    slices below and above it, the slab's end slices themselves in the missing place."""
    from medldm.models.positions import stack_neighbours
    from medldm.models.testing import tiny_prior

    seen = []

    def record(x, kwargs):
        seen.append(torch.equal(kwargs["neighbours"], stack_neighbours(x, 4)))

    _run_on_mni_head(tmp_path, monkeypatch, tiny_prior(neighbour_slices=True), preset, record)
    assert seen and all(seen)


def test_a_3d_prior_is_refused_by_the_app_with_the_way_to_run_it(small_brain, tmp_path):
    # a 3D prior runs natively through the solvers (benchmarks/ldm_3d_native.py); the app
    # works on a 2D grid and must say so instead of failing inside a convolution
    from medldm.models.testing import save_tiny_prior

    folder = save_tiny_prior(tmp_path / "tiny_3d", spatial_dims=3)
    with pytest.raises(InvalidInputError, match="3D prior") as raised:
        medldm.reconstruct(small_brain, "mri_brain_3d", prior=str(folder), baseline=False)
    assert "brain_t1_2d" in str(raised.value.fix) and "MODEL_CARD" in str(raised.value.fix)


def test_ct_preset_on_pydicom_ct_small_writes_a_valid_dicom_series(tiny_prior_folder, tmp_path):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    from tests.test_io_dicom_write import _assert_dciodvfy_clean

    source_path = Path(get_testdata_file("CT_small.dcm"))
    result = medldm.reconstruct(
        source_path,
        "ct_sparse_30",
        prior=str(tiny_prior_folder),
        grid={"size": [32, 32], "spacing_mm": None},
        solver_options=FAST,
    )
    assert result.grid.resampled  # 128x128 -> the prior's 32x32 grid, and said so
    assert "RESAMPLED" in result.metrics["grid"]
    paths = write_run_folder(result, tmp_path / "ct", inputs=[source_path])
    files = sorted(paths["reconstruction"].glob("*.dcm"))
    assert len(files) == 1
    _assert_dciodvfy_clean(files)
    original, written = dcmread(source_path), dcmread(files[0])
    assert written.StudyInstanceUID == original.StudyInstanceUID
    assert written.SeriesInstanceUID != original.SeriesInstanceUID
    back, source = load(paths["reconstruction"]), load(source_path)
    np.testing.assert_allclose(back.affine, source.affine, atol=1e-3)
    assert back.spatial_shape[:2] == source.spatial_shape[:2]


def test_ct_preset_runs_out_of_the_box_with_the_shipped_ct_2d_prior():
    """No prior given: the preset's shipped ct_2d prior reconstructs CT_small.dcm from 30
    simulated views better than FBP (a broken or untrained prior would not)."""
    from pydicom.data import get_testdata_file

    result = medldm.reconstruct(
        get_testdata_file("CT_small.dcm"),
        "ct_sparse_30",
        solver_options={"n_steps": 10, "n_samples": 1},
        baseline=False,
    )
    assert "ct_2d" in str(result.metrics["prior"])
    ldm, fbp = result.metrics["ldm"], result.metrics["direct"]
    assert np.isfinite(result.reconstruction).all()
    assert ldm["psnr_db"] > fbp["psnr_db"] + 3.0, (ldm, fbp)


def test_microscopy_preset_on_a_tiff_writes_a_tiff(tiny_prior_folder, tmp_path):
    import tifffile
    from skimage.data import cell

    path = tmp_path / "cell.tif"
    tifffile.imwrite(path, cell()[:48, :40])
    result = medldm.reconstruct(
        path, "microscopy_deconv", prior=str(tiny_prior_folder), solver_options=FAST
    )
    assert not result.grid.resampled and result.reconstruction.shape == (1, 48, 40)
    paths = write_run_folder(result, tmp_path / "run")
    assert paths["reconstruction"].suffix == ".tif"
    assert load(paths["reconstruction"]).spatial_shape == (40, 48)


def test_microscopy_preset_runs_out_of_the_box_with_the_shipped_microscopy_2d_prior(tmp_path):
    """No prior given: the shipped microscopy_2d prior deconvolves a crop of scikit-image's
    cell better than the blurred measurement itself (a broken prior would not)."""
    import tifffile
    from skimage.data import cell

    path = tmp_path / "cell.tif"
    tifffile.imwrite(path, cell()[200:328, 200:328])
    result = medldm.reconstruct(
        path, "microscopy_deconv", solver_options={"n_steps": 10, "n_samples": 1}, baseline=False
    )
    assert "microscopy_2d" in str(result.metrics["prior"])
    ldm, blurred = result.metrics["ldm"], result.metrics["direct"]
    assert np.isfinite(result.reconstruction).all()
    assert ldm["psnr_db"] > blurred["psnr_db"] + 1.0, (ldm, blurred)


def test_every_preset_file_loads_and_is_tested():
    names = available_recon_presets()
    assert set(names) == {
        "mri_brain_4x",
        "mri_brain_8x",
        "inpaint_box",
        "ct_sparse_30",
        "microscopy_deconv",
        "mri_brain_3d",
    }
    for name in names:
        preset = load_preset(name)
        preset.build_physics(), preset.build_solver(), preset.build_baseline()
    with pytest.raises(InvalidInputError, match="unknown reconstruction preset"):
        load_preset("mri_knee")
    with pytest.raises(InvalidInputError, match="no option"):
        load_preset("mri_brain_4x").with_overrides(solver_options={"bogus": 1}).build_solver()


def test_a_resampled_grid_is_reported_and_undone(small_brain, tiny_prior_folder):
    result = medldm.reconstruct(
        small_brain,
        "mri_brain_4x",
        prior=str(tiny_prior_folder),
        slices=1,
        grid=_grid(32, 2.0),
        solver_options=FAST,
        baseline=False,
    )
    assert result.grid.resampled and result.grid.resampled_shape == (96, 80)
    assert result.grid.working_shape == (96, 80)  # larger than 32: own grid, not cropped
    assert result.reconstruction.shape == (1, 48, 40)


def test_nan_input_is_refused_with_the_file_named(tiny_prior_folder, tmp_path):
    data = np.ones((16, 16, 3), np.float32)
    data[3, 3, 1] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(MedLDMError, match="NaN") as error:
        medldm.reconstruct(path, prior=str(tiny_prior_folder), solver_options=FAST)
    assert "nan.nii.gz" in str(error.value)


def test_run_folder_is_not_overwritten(small_brain, tiny_prior_folder, tmp_path):
    result = medldm.reconstruct(
        small_brain,
        prior=str(tiny_prior_folder),
        slices=1,
        grid=_grid(),
        solver_options=FAST,
        baseline=False,
    )
    write_run_folder(result, tmp_path / "run")
    with pytest.raises(OutputExistsError):
        write_run_folder(result, tmp_path / "run")
    write_run_folder(result, tmp_path / "run", overwrite=True)


def test_measured_kspace_reports_the_residual_only(tiny_prior_folder, tmp_path):
    from medldm.physics.mri import fft2c

    image = torch.from_numpy(np.random.default_rng(0).random((32, 32)).astype(np.float32))
    mask = np.zeros(32, bool)
    mask[::3] = True
    mask[13:19] = True
    # measured: unsampled k-space is stored as zeros (fully sampled k-space with a mask is a
    # retrospective experiment, scored against the full data: tests/test_raw_mri.py)
    np.save(tmp_path / "k.npy", fft2c(image.to(torch.complex64)).numpy() * mask)
    np.save(tmp_path / "mask.npy", mask)
    result = medldm.reconstruct(
        kspace=tmp_path / "k.npy",
        mask=tmp_path / "mask.npy",
        prior=str(tiny_prior_folder),
        solver_options=FAST,
    )
    assert not result.simulated and "psnr_db" not in result.metrics["ldm"]
    paths = write_run_folder(result, tmp_path / "run")
    assert "only the data residual" in paths["report"].read_text()
    np.save(tmp_path / "bad.npy", np.ones((32, 32), np.float32))
    with pytest.raises(InvalidInputError, match="complex"):
        medldm.reconstruct(
            kspace=tmp_path / "bad.npy", mask=tmp_path / "mask.npy", prior=str(tiny_prior_folder)
        )


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*RECON, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_cli_batch_mode_skips_a_corrupt_study_and_resumes(small_brain, tiny_prior_folder, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    for name in ("a", "b"):
        (studies / f"{name}.nii.gz").write_bytes(small_brain.read_bytes())
    (studies / "corrupt.nii.gz").write_bytes(small_brain.read_bytes()[:300])
    out = tmp_path / "out"
    args = [
        f"input={studies}",
        f"output_dir={out}",
        f"preset.prior={tiny_prior_folder}",
        "preset.slices=1",
        "preset.grid.size=[32,32]",
        "preset.grid.spacing_mm=4.0",
        "solver_options={n_steps:2,n_samples:1}",
        "progress=false",
    ]
    run = _cli(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((out / "batch_report.json").read_text())
    assert sorted(report["done"]) == ["a.nii.gz", "b.nii.gz"]
    assert [f["study"] for f in report["failed"]] == ["corrupt.nii.gz"]
    assert "corrupt.nii.gz" in report["failed"][0]["error"]
    assert (out / "a" / "report.html").exists() and not (out / "corrupt" / "metrics.json").exists()
    again = _cli(*args, cwd=tmp_path)
    report = json.loads((out / "batch_report.json").read_text())
    assert again.returncode == 0 and sorted(report["skipped"]) == ["a.nii.gz", "b.nii.gz"]


def test_cli_dry_run_prints_an_estimate_and_writes_nothing(
    small_brain, tiny_prior_folder, tmp_path
):
    out = tmp_path / "dry"
    run = _cli(
        f"input={small_brain}",
        f"output_dir={out}",
        f"preset.prior={tiny_prior_folder}",
        "dry_run=true",
        "preset.slices=1",  # the probes run the reconstruction: 6 slices took 41 s
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "dry run" in run.stdout and "estimated" in run.stdout
    # measured by probe runs of the same reconstruction, extrapolated in the steps
    assert "prior tiny on cpu" in run.stdout and "probe runs of 1 and 3 n_steps" in run.stdout
    assert not (out / "metrics.json").exists()


def test_cli_reports_a_missing_input_clearly(tmp_path):
    run = _cli("input=/no/such/scan.nii.gz", f"output_dir={tmp_path / 'o'}", cwd=tmp_path)
    assert run.returncode == 2 and "input not found" in run.stderr


def test_medimage_converts_to_and_from_monai_and_nibabel(small_brain):
    from medldm.io.convert import from_metatensor, from_nibabel, to_metatensor, to_nibabel

    image = load(small_brain)
    tensor = to_metatensor(image)
    assert tuple(tensor.shape) == image.spatial_shape
    back = from_metatensor(tensor)
    np.testing.assert_allclose(back.affine, image.affine, atol=1e-6)
    np.testing.assert_array_equal(back.array, image.array)
    nifti = to_nibabel(image)
    again = from_nibabel(nifti)
    np.testing.assert_allclose(again.affine, image.affine, atol=1e-6)
    assert isinstance(again, MedImage) and again.modality == image.modality


def test_cli_selects_a_preset_by_name(small_brain, tiny_prior_folder, tmp_path):
    run = _cli(
        "preset=inpaint_box",
        f"input={small_brain}",
        f"output_dir={tmp_path / 'o'}",
        f"preset.prior={tiny_prior_folder}",
        "preset.slices=1",
        "preset.grid.size=[32,32]",
        "preset.grid.spacing_mm=4.0",
        "solver_options={n_steps:1,n_samples:1}",
        "baseline=false",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["preset"] == "inpaint_box"


def test_cli_takes_a_preset_of_the_users_own_from_a_search_path(
    small_brain, tiny_prior_folder, tmp_path
):
    """As the reconstruct page says: a changed copy of a shipped preset in
    <folder>/preset/<name>.yaml, found through hydra.searchpath."""
    import yaml

    from medldm.recon.presets import preset_folder

    data = yaml.safe_load((preset_folder() / "inpaint_box.yaml").read_text())
    data.update(name="my_box", slices=1, prior=str(tiny_prior_folder))
    (tmp_path / "conf" / "preset").mkdir(parents=True)
    (tmp_path / "conf" / "preset" / "my_box.yaml").write_text(yaml.safe_dump(data))
    run = _cli(
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "preset=my_box",
        f"input={small_brain}",
        f"output_dir={tmp_path / 'o'}",
        "preset.grid.size=[32,32]",
        "preset.grid.spacing_mm=4.0",
        "solver_options={n_steps:1,n_samples:1}",
        "baseline=false",
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["preset"] == "my_box" and metrics["slices"] == 1
