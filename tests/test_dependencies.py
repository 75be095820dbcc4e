"""medldm installs beside the user's torch: the package declares a range of torch releases,
not one release, and the range holds the release the test suite runs on.

The wheel's metadata is what pip reads, so it is built by the same PEP 517 hook a wheel
build runs (``prepare_metadata_for_build_wheel``, a few seconds: no package data is
copied) from a copy of the files the build reads; ``tests/test_packaging.py`` builds and
installs the whole wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
#: The release the Makefile installs first (the CPU build on these machines' disk).
TESTED_TORCH = Version("2.13.0")


def _torch(requirements: list[str]) -> Requirement:
    found = [Requirement(r) for r in requirements if Requirement(r).name == "torch"]
    assert len(found) == 1, f"torch must be declared once, found {found}"
    return found[0]


def _assert_a_range(requirement: Requirement) -> None:
    specifiers = list(requirement.specifier)
    assert specifiers, "torch is declared without any bound"
    assert all(s.operator not in ("==", "===", "~=") for s in specifiers), (
        f"torch is pinned ({requirement}); declare a range so medldm installs beside a "
        "pipeline's own torch"
    )
    lower = [s for s in specifiers if s.operator in (">=", ">")]
    upper = [s for s in specifiers if s.operator in ("<", "<=")]
    assert lower and upper, f"a range has both ends: {requirement}"
    assert Version(lower[0].version) < TESTED_TORCH < Version(upper[0].version)
    assert requirement.specifier.contains(TESTED_TORCH)
    # a range, not one release in disguise: the previous minor releases install too
    assert requirement.specifier.contains(Version("2.4.0"))


def test_pyproject_declares_a_torch_range():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    _assert_a_range(_torch(project["dependencies"]))


def test_makefile_installs_the_tested_torch_first():
    makefile = (REPO / "Makefile").read_text()
    assert f"TORCH := torch=={TESTED_TORCH}" in makefile


@pytest.mark.slow
def test_built_wheel_metadata_declares_a_torch_range(tmp_path):
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.safetensors", "*.png", "*.egg-info")
    shutil.copytree(REPO / "medldm", source / "medldm", ignore=skip)
    shutil.copytree(REPO / "configs", source / "configs", ignore=skip)
    out = tmp_path / "metadata"
    out.mkdir()
    hook = (
        "import sys, setuptools.build_meta as backend; "
        "print(backend.prepare_metadata_for_build_wheel(sys.argv[1]))"
    )
    run = subprocess.run(
        [sys.executable, "-c", hook, str(out)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    dist_info = out / run.stdout.strip().splitlines()[-1]
    metadata = Parser().parsestr((dist_info / "METADATA").read_text())
    assert metadata["Name"] == "medldm"
    requires = metadata.get_all("Requires-Dist") or []
    _assert_a_range(_torch([r for r in requires if "extra ==" not in r]))
