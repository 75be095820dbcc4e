"""Faults: SIGKILL at random moments of a training run, a benchmark and a batch
reconstruction; the rerun continues from what was saved, never reads a corrupt file,
never redoes finished work and never writes duplicate rows. Counts printed with -s."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_train import _real_patches

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _start(command: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _kill_after(process: subprocess.Popen, seconds: float) -> bool:
    """SIGKILL the process group after ``seconds`` unless it ended; True if killed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    return True


def _kill_when(process: subprocess.Popen, condition, timeout: float = 300.0) -> bool:
    """SIGKILL the process group as soon as ``condition()`` holds; True if killed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if condition():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return True
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    return True


def _finish(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("patches")
    np.savez(folder / "train.npz", images=_real_patches())
    return folder


def test_training_killed_at_random_moments_resumes_from_the_last_checkpoint(images, tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "medldm.train",
        "autoencoder",
        "model=tiny_2d",
        f"run_dir={run_dir}",
        "device=cpu",
        "model.data.kind=folder",
        f"+model.data.folder={images}",
        "model.data.size=32",
        "~model.data.limit",
        "model.ldm.image_size=[32,32]",
        "model.autoencoder_training.steps=40",
        "model.autoencoder_training.checkpoint_every=2",
        "model.autoencoder_training.validate_every=20",
    ]
    rng = np.random.default_rng(0)
    kills, steps_seen = 0, []
    for _ in range(4):
        process = _start(command, tmp_path)
        if _kill_after(process, float(rng.uniform(4.0, 9.0))):
            kills += 1
        state_file = run_dir / "autoencoder" / "state" / "training_state.pt"
        old_file = run_dir / "autoencoder" / ".state.old" / "training_state.pt"
        readable = state_file if state_file.exists() else old_file
        if readable.exists():  # whatever the kill hit, the saved state loads
            steps_seen.append(int(torch.load(readable, weights_only=True)["step"]))
    final = _finish(command, tmp_path)
    assert final.returncode == 0, final.stderr[-3000:]
    state = torch.load(run_dir / "autoencoder" / "state" / "training_state.pt", weights_only=True)
    assert state["step"] == 40
    assert steps_seen == sorted(steps_seen)  # never went backwards
    from medldm.models.prior import load_prior

    load_prior(run_dir / "autoencoder" / "prior", device="cpu")
    print(f"\ntraining: {kills} SIGKILLs injected, saved steps seen {steps_seen}, finished at 40")
    assert kills >= 1


def _bench_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_benchmark_killed_then_rerun_completes_without_duplicates(images, tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    np.savez(cases / "patches.npz", images=_real_patches(6))
    out = tmp_path / "bench"
    command = [
        sys.executable,
        "-m",
        "medldm.bench",
        f"data.root={cases}",
        "physics=[mri_4x]",
        "solvers=[zero_filled,tv]",
        "seeds=[0,1]",
        f"output_dir={out}",
        "progress=false",
        "save_arrays=none",
    ]
    results = out / "results.csv"
    process = _start(command, tmp_path)
    kill_at = int(np.random.default_rng(1).integers(2, 12))  # rows done when killed
    killed = _kill_when(
        process, lambda: results.exists() and len(results.read_text().splitlines()) - 1 >= kill_at
    )
    assert killed
    done_before = len(_bench_rows(out / "results.csv")) if (out / "results.csv").exists() else 0
    final = _finish(command, tmp_path)
    assert final.returncode == 0, final.stderr[-3000:]
    rows = _bench_rows(out / "results.csv")
    keys = [(r["case"], r["operator"], r["solver"], r["seed"]) for r in rows]
    assert len(keys) == len(set(keys)) == 6 * 2 * 2
    assert all(r["status"] == "ok" for r in rows)
    print(
        f"\nbenchmark: killed={killed} after {done_before} rows; rerun finished 24 rows, "
        "0 duplicates, 0 lost"
    )


def test_batch_reconstruction_killed_then_rerun_finishes_every_study(tmp_path):
    import nibabel as nib

    from medldm.models.testing import save_tiny_prior

    prior_dir = save_tiny_prior(tmp_path / "prior")
    studies = tmp_path / "studies"
    studies.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        nib.save(
            nib.Nifti1Image(
                rng.random((24, 28, 2)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])
            ),
            str(studies / f"s{index}.nii.gz"),
        )
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "medldm.recon",
        f"input={studies}",
        f"output_dir={out}",
        f"preset.prior={prior_dir}",
        "preset.slices=1",
        "preset.grid.size=[32,32]",
        "solver_options={n_steps:2,n_samples:1}",
        "progress=false",
    ]
    process = _start(command, tmp_path)
    kill_at = int(np.random.default_rng(2).integers(1, 6))  # studies done when killed
    killed = _kill_when(process, lambda: len(list(out.glob("*/metrics.json"))) >= kill_at)
    assert killed
    finished_before = len(list(out.glob("*/metrics.json"))) if out.exists() else 0
    final = _finish(command, tmp_path)
    assert final.returncode == 0, final.stderr[-3000:]
    report = json.loads((out / "batch_report.json").read_text())
    assert len(report["done"]) + len(report["skipped"]) == 8 and not report["failed"]
    assert len(report["skipped"]) == finished_before  # finished studies were not redone
    for index in range(8):
        metrics = json.loads((out / f"s{index}" / "metrics.json").read_text())
        assert metrics["preset"] == "mri_brain_4x"
    print(
        f"\nbatch recon: killed={killed} after {finished_before} studies; rerun finished "
        f"{len(report['done'])}, skipped {len(report['skipped'])}, lost 0"
    )
