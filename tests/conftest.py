"""Shared fixtures: the real-data root and small helpers; one thread per xdist worker.

Tests that need ``../shared/data`` use the ``data_root`` fixture: it skips with a clear
reason when the folder is absent, except under CI (``CI=true``) where a missing data
folder is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medldm.data.root import find_data_root

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on the two cores: one thread each, for the subprocesses
    # the tests start too (two workers with two threads each oversubscribed the cores, and
    # spinning OpenMP threads then slowed some tests tenfold).
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: real data must be present)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real-data folder (MEDLDM_DATA_DIR or ../shared/data)."""
    root = find_data_root(required=False)
    if root is None:
        _missing("real data not found: set MEDLDM_DATA_DIR or place it at ../shared/data")
    return root


@pytest.fixture(scope="session")
def dicom_qa(data_root: Path) -> Path:
    path = data_root / "dicom_qa"
    if not path.is_dir():
        _missing(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def microscopy_dir(data_root: Path) -> Path:
    path = data_root / "microscopy"
    if not path.is_dir():
        _missing(f"{path} is missing")
    return path


@pytest.fixture(scope="session")
def submitit_launcher() -> None:
    """Hydra's submitit launcher (the ``cluster`` extra): skip where absent, fail under CI."""
    try:
        import hydra_plugins.hydra_submitit_launcher  # noqa: F401
    except ImportError:
        reason = "hydra-submitit-launcher not installed (pip install 'medldm[cluster]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: `make test` installs the cluster extra)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_prior_folder(tmp_path_factory) -> Path:
    """:func:`medldm.models.testing.tiny_prior` saved as a checkpoint folder."""
    from medldm.models.testing import save_tiny_prior

    return save_tiny_prior(tmp_path_factory.mktemp("prior") / "tiny")


@pytest.fixture(scope="session")
def small_brain(tmp_path_factory) -> Path:
    """The MNI152 template (nilearn), 4 mm, cut to 40 x 48 x 6 voxels around the centre:
    a small real brain volume for the app's tests."""
    import nibabel as nib
    import numpy as np
    from nilearn.datasets import load_mni152_template

    image = load_mni152_template(resolution=4)
    data = np.asarray(image.get_fdata(), np.float32)
    cx, cy, cz = (s // 2 for s in data.shape)
    cut = data[cx - 20 : cx + 20, cy - 24 : cy + 24, cz - 3 : cz + 3]
    affine = image.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([cx - 20, cy - 24, cz - 3])
    path = tmp_path_factory.mktemp("brain") / "brain.nii.gz"
    nib.save(nib.Nifti1Image(cut, affine), str(path))
    return path
