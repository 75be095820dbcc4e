"""Batch reconstruction and benchmark multiruns through Hydra's submitit launcher
(``hydra/launcher=submitit_local``: real submitit jobs, run as local processes; the SLURM
launcher differs only in where the jobs run). One run folder per input; a rerun into the
same ``output_dir`` redoes only the jobs that did not finish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

RECON = [sys.executable, "-m", "medldm.recon"]


@pytest.fixture(scope="module")
def three_inputs(tmp_path_factory) -> list[Path]:
    """Three small real brains: the MNI152 T1 (nilearn) at 4 mm, cut at three heights."""
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=4)
    data = np.asarray(image.get_fdata(), np.float32)
    cx, cy, cz = (s // 2 for s in data.shape)
    folder = tmp_path_factory.mktemp("inputs")
    paths = []
    for name, dz in (("low", -6), ("mid", 0), ("high", 6)):
        z0 = cz + dz - 1
        cut = data[cx - 20 : cx + 20, cy - 24 : cy + 24, z0 : z0 + 2]
        affine = image.affine.copy()
        affine[:3, 3] += affine[:3, :3] @ np.array([cx - 20, cy - 24, z0])
        paths.append(folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(cut, affine), str(paths[-1]))
    return paths


def _multirun(inputs: list[Path], out: Path, prior: Path, cwd: Path) -> subprocess.CompletedProcess:
    args = [
        "-m",
        "input=" + ",".join(str(p) for p in inputs),
        f"output_dir={out}",
        f"preset.prior={prior}",
        "preset.slices=1",
        "preset.grid.size=[32,32]",
        "preset.grid.spacing_mm=4.0",
        "solver_options={n_steps:2,n_samples:1}",
        "progress=false",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        "hydra.launcher.cpus_per_task=1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [*RECON, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_submitit_local_multirun_writes_one_folder_per_input_and_resumes(
    three_inputs, tiny_prior_folder, tmp_path, submitit_launcher
):
    out = tmp_path / "batch"
    run = _multirun(three_inputs, out, tiny_prior_folder, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    folders = {p.name: p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert sorted(folders) == ["0_low", "1_mid", "2_high"]
    for folder in folders.values():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert np.isfinite(metrics["ldm"]["psnr_db"])
        assert (folder / "report.html").exists()
    # real submitit jobs: their own folders with the job's stdout
    assert list((out / ".submitit").iterdir())

    # a job killed mid-write leaves files but no metrics.json (written last): simulate it on
    # one input, then rerun the same sweep: only that one is redone
    killed = folders["1_mid"]
    (killed / "metrics.json").unlink()
    stamps = {
        name: (folder / "metrics.json").stat().st_mtime_ns
        for name, folder in folders.items()
        if name != "1_mid"
    }
    again = _multirun(three_inputs, out, tiny_prior_folder, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (killed / "metrics.json").exists()
    for name, stamp in stamps.items():
        assert (folders[name] / "metrics.json").stat().st_mtime_ns == stamp, name
