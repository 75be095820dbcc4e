"""report.html opened in headless Chromium: the figures decode and the metrics table
renders. The screenshot is kept in test-artifacts/ (or $MEDLDM_TEST_ARTIFACTS).

Chromium is installed by ``make test`` when missing (Debian's ``chromium`` package);
without it this test skips, except under CI=true where it fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import medldm
from medldm.io import MedImage
from medldm.models.testing import tiny_prior
from medldm.recon.outputs import write_run_folder

ARTIFACTS = Path(
    os.environ.get("MEDLDM_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts")
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail(
            "chromium is missing under CI: make test installs it (apt-get install chromium)"
        )
    pytest.skip("chromium is not installed (make test installs Debian's chromium package)")


def _headless(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_report_renders_in_headless_chromium(tmp_path):
    browser = _chromium()
    rng = np.random.default_rng(0)
    volume = MedImage(
        rng.random((24, 28, 3)).astype(np.float32), np.diag([2, 2, 2, 1.0]), modality="MR"
    )
    result = medldm.reconstruct(
        volume,
        "mri_brain_4x",
        prior=tiny_prior(),
        slices=3,
        grid={"size": [32, 32], "spacing_mm": 2.0},
        solver_options={"n_steps": 2, "n_samples": 2},
    )
    report = write_run_folder(result, tmp_path / "run")["report"]
    dom = _headless(browser, "--dump-dom", report.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-figures-loaded="true"' in dom.stdout, dom.stdout[-2000:]
    assert int(re.search(r'data-figures="(\d+)"', dom.stdout).group(1)) == 3
    assert dom.stdout.count("<tr>") >= 3  # header + LDM + TV (+ direct)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report_screenshot.png"
    shot = _headless(
        browser, f"--screenshot={screenshot}", "--window-size=1400,1200", report.as_uri()
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    from skimage.io import imread

    pixels = imread(screenshot)
    assert pixels.shape[0] >= 1000 and pixels.std() > 10  # not a blank page
