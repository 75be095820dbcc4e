"""Property-based tests: damaged bytes fed to every reader raise only medldm errors.

Real files (pydicom's CT and MR, a gzipped DICOM, nibabel's NIfTI test images, a TIFF
and an OME-TIFF written here) are truncated, bit-flipped and given random header bytes.
Whatever comes out must be either a valid ``MedImage`` or a ``MedLDMError`` that names
the file: never another exception type.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.testing import data_path as nibabel_data
from pydicom.data import get_testdata_file

from medldm.errors import MedLDMError
from medldm.io import load
from medldm.io.image import MedImage

#: Keep allocations small whatever a damaged header declares.
FUZZ_LIMIT_BYTES = 64 * 1024 * 1024


def _tiff_seed(ome: bool) -> tuple[str, bytes]:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, size=(3, 16, 20), dtype=np.uint16)
    with tempfile.TemporaryDirectory() as folder:
        name = "seed.ome.tif" if ome else "seed.tif"
        path = Path(folder) / name
        if ome:
            tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX", "PhysicalSizeX": 0.2})
        else:
            tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX", "spacing": 0.5})
        return name, path.read_bytes()


def _seeds() -> dict[str, tuple[str, bytes]]:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    mr = Path(get_testdata_file("MR_small.dcm")).read_bytes()
    nifti_plain = Path(nibabel_data, "anatomical.nii").read_bytes()
    nifti_gz = Path(nibabel_data, "example4d.nii.gz").read_bytes()
    return {
        "dicom_ct": ("ct.dcm", ct),
        "dicom_mr": ("mr.dcm", mr),
        "dicom_gz": ("mr.dcm.gz", gzip.compress(mr)),
        "nifti": ("anat.nii", nifti_plain),
        "nifti_gz": ("ex4d.nii.gz", gzip.decompress(nifti_gz)),  # re-packed below
        "tiff": _tiff_seed(ome=False),
        "ome_tiff": _tiff_seed(ome=True),
    }


SEEDS = _seeds()


def _write(name: str, data: bytes, folder: Path) -> Path:
    path = folder / name
    if name.endswith(".nii.gz"):
        data = gzip.compress(data, compresslevel=1)
    path.write_bytes(data)
    return path


def _check(path: Path) -> None:
    try:
        image = load(path)
    except MedLDMError as exc:
        assert path.name in str(exc), f"error does not name the file: {exc}"
        return
    assert isinstance(image, MedImage)


@pytest.fixture(autouse=True)
def _small_size_limit(monkeypatch):
    monkeypatch.setenv("MEDLDM_MAX_IMAGE_BYTES", str(FUZZ_LIMIT_BYTES))


def test_undamaged_seeds_load():
    with tempfile.TemporaryDirectory() as folder:
        for name, data in SEEDS.values():
            assert isinstance(load(_write(name, data, Path(folder))), MedImage)


FUZZ = settings(
    max_examples=int(os.environ.get("MEDLDM_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(fraction=st.floats(min_value=0.0, max_value=0.999))
def test_truncated_files_raise_only_medldm_errors(seed, fraction):
    name, data = SEEDS[seed]
    with tempfile.TemporaryDirectory() as folder:
        _check(_write(name, data[: int(len(data) * fraction)], Path(folder)))


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_bit_flipped_files_raise_only_medldm_errors(seed, data):
    name, raw = SEEDS[seed]
    buffer = bytearray(raw)
    n_flips = data.draw(st.integers(min_value=1, max_value=16))
    # Flip bits mostly in the header, where parsing decisions are made.
    limit = min(len(buffer), 2048) if data.draw(st.booleans()) else len(buffer)
    for _ in range(n_flips):
        position = data.draw(st.integers(min_value=0, max_value=limit - 1))
        buffer[position] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    with tempfile.TemporaryDirectory() as folder:
        _check(_write(name, bytes(buffer), Path(folder)))


@pytest.mark.parametrize("seed", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_random_header_bytes_raise_only_medldm_errors(seed, data):
    name, raw = SEEDS[seed]
    buffer = bytearray(raw)
    start = data.draw(st.integers(min_value=0, max_value=min(len(buffer), 1024) - 1))
    chunk = data.draw(st.binary(min_size=1, max_size=64))
    buffer[start : start + len(chunk)] = chunk
    with tempfile.TemporaryDirectory() as folder:
        _check(_write(name, bytes(buffer), Path(folder)))


@given(payload=st.binary(max_size=2048))
@FUZZ
def test_random_bytes_under_any_image_name_raise_only_medldm_errors(payload):
    with tempfile.TemporaryDirectory() as folder:
        for name in ("x.dcm", "x.nii", "x.nii.gz", "x.tif", "x.dcm.gz"):
            _check(_write(name, payload, Path(folder)))


def test_nifti_gz_seed_is_valid_nifti():
    name, data = SEEDS["nifti_gz"]
    with tempfile.TemporaryDirectory() as folder:
        image = nib.load(_write(name, data, Path(folder)))
        assert len(image.shape) == 4
