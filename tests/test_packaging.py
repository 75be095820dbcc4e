"""medldm installs as a user installs it: a wheel in a fresh virtual environment runs the
presets from any folder (the configs, the shipped priors and the example input inside it).

The wheel is built from a copy of the files a source distribution holds, installed into a
plain ``python -m venv`` (torch from the local disk, the other dependencies from the
configured index), and the console script runs from a temporary folder outside the
checkout with ``PYTHONPATH`` and ``MEDLDM_CONFIG_DIR`` unset. About 80 s, half of it
installing the dependencies. It skips only when this Python cannot make a virtual
environment with pip (and fails then under ``CI=true``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.packaging]

CHECKOUT = Path(__file__).resolve().parents[1]
#: What the wheel is built from (what setup.py and pyproject.toml read).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "medldm", "configs")
#: The torch build on this machine's disk (pinned in pyproject.toml and the Makefile).
TORCH = "torch==2.13.0"
INSTALL_TIMEOUT_S = 1200


def _cannot_build(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the packaging test must run)")
    pytest.skip(reason)


def _run(command: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 600):
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _check(run: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert run.returncode == 0, f"{what} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run


@dataclass(frozen=True)
class Installed:
    """A fresh virtual environment with the medldm wheel installed."""

    venv: Path
    source: Path  # the copy the wheel was built from
    workdir: Path  # a folder outside the checkout to run from
    env: dict[str, str]

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: nothing pointing back into this checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "MEDLDM_CONFIG_DIR", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["OMP_NUM_THREADS"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    if importlib.util.find_spec("ensurepip") is None or importlib.util.find_spec("pip") is None:
        _cannot_build(f"{sys.executable} has no pip/ensurepip: cannot build or install a wheel")
    root = tmp_path_factory.mktemp("packaging")
    env = _user_env()
    source = root / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        path = CHECKOUT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    # setuptools of this environment when it has one (fast, offline), else pip's isolation
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    wheels = root / "wheels"
    _check(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "-q",
                *isolation,
                "-w",
                str(wheels),
                str(source),
            ],
            cwd=root,
            env=env,
        ),
        "pip wheel",
    )
    (wheel,) = wheels.glob("medldm-*.whl")
    venv = root / "venv"
    _check(_run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env), "python -m venv")
    # --no-compile: byte-compiling all of torch would double the install time
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    _check(_run([*pip, TORCH], cwd=root, env=env, timeout=INSTALL_TIMEOUT_S), "install torch")
    _check(_run([*pip, str(wheel)], cwd=root, env=env, timeout=INSTALL_TIMEOUT_S), "install wheel")
    workdir = root / "elsewhere"
    workdir.mkdir()
    yield Installed(venv=venv, source=source, workdir=workdir, env=env)
    # about 1.6 GB in 40,000 files (mostly torch): half a minute of disk time, so it is
    # removed in the background instead of holding up the suite
    subprocess.Popen(
        ["rm", "-rf", str(venv)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_the_wheel_ships_the_configs_and_finds_them_from_any_folder(installed):
    probe = (
        "import medldm, pathlib; from medldm.problems.configs import config_dir; "
        "print(pathlib.Path(medldm.__file__).parent); print(config_dir())"
    )
    run = _check(
        _run([installed.bin("python"), "-c", probe], cwd=installed.workdir, env=installed.env),
        "import medldm",
    )
    package, configs = (Path(line) for line in run.stdout.split())
    assert installed.venv in package.parents, "medldm was imported from outside the venv"
    assert configs == package / "configs"
    shipped = {p.relative_to(configs) for p in configs.rglob("*.yaml")}
    in_checkout = {
        p.relative_to(CHECKOUT / "configs") for p in (CHECKOUT / "configs").rglob("*.yaml")
    }
    assert shipped == in_checkout


def test_medldm_recon_dry_run_works_outside_the_checkout(installed):
    run = _check(
        _run(
            [installed.bin("medldm-recon"), "dry_run=true", "preset.slices=1"],
            cwd=installed.workdir,
            env=installed.env,
        ),
        "medldm-recon dry_run=true",
    )
    assert "dry run — preset mri_brain_4x" in run.stdout and "estimated" in run.stdout
    assert "brain_native_2d" in run.stdout  # the shipped example is at 0.91 mm


def test_the_default_preset_runs_outside_the_checkout(installed):
    out = installed.workdir / "run"
    command = [
        installed.bin("medldm-recon"),
        "preset.slices=1",
        "solver_options={n_steps:2,n_samples:1}",
        "progress=false",
        f"output_dir={out}",
    ]
    run = _check(_run(command, cwd=installed.workdir, env=installed.env), "medldm-recon")
    assert "mri_brain_4x: LDM (latent_dds)" in run.stdout
    for name in ("reconstruction.nii.gz", "std.nii.gz", "tv.nii.gz", "report.html"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["prior"] == "brain_native_2d" and metrics["slices"] == 1
    assert metrics["ldm"]["psnr_db"] > 15 and metrics["baseline"]["psnr_db"] > 15


def test_an_editable_install_finds_the_checkout_configs(installed):
    # last: it replaces the wheel in the venv by an editable install of the same sources
    _check(
        _run(
            [
                installed.bin("python"),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "-e",
                str(installed.source),
            ],
            cwd=installed.workdir,
            env=installed.env,
        ),
        "pip install -e",
    )
    probe = "from medldm.problems.configs import config_dir; print(config_dir())"
    run = _check(
        _run([installed.bin("python"), "-c", probe], cwd=installed.workdir, env=installed.env),
        "import medldm (editable)",
    )
    assert Path(run.stdout.strip()) == installed.source / "configs"
