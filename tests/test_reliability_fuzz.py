"""Reliability under damaged inputs: checkpoints and medldm-recon inputs.

A corpus of damaged files is generated from real ones (a prior checkpoint; pydicom's CT,
nibabel's NIfTI, a TIFF): truncated, bit-flipped, header-mangled, zero bytes, wrong
dimensions, NaN/Inf pixels, empty series, absurd declared sizes. Every case must end in a
``MedLDMError`` that names the damaged file — never a hang, another exception type, or a
partial output file. The counts of inputs tried are printed (``pytest -s``) for the notes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from pydicom.data import get_testdata_file

import medldm
from medldm.errors import MedLDMError
from medldm.models.checkpoint import load_prior_checkpoint
from medldm.models.testing import save_tiny_prior, tiny_prior
from medldm.recon.outputs import write_run_folder

TRIED: dict[str, int] = {"checkpoint": 0, "recon": 0}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_prior(tmp_path_factory.mktemp("ckpt") / "prior")


def _damaged_checkpoints(source: Path, root: Path) -> list[tuple[str, Path, str]]:
    """(description, folder, name of the damaged file) for many damaged copies."""
    rng = np.random.default_rng(0)
    cases = []
    files = ["autoencoder.safetensors", "unet.safetensors", "config.json"]
    for index in range(30):
        name = files[index % 3]
        folder = root / f"damaged_{index:02d}"
        shutil.copytree(source, folder)
        data = bytearray((folder / name).read_bytes())
        kind = ["truncate", "flip", "header", "zero"][index % 4]
        if kind == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "flip":
            for position in rng.integers(0, len(data), size=8):
                data[position] ^= 1 << int(rng.integers(0, 8))
        elif kind == "header":
            data[:16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        else:
            data = bytearray()
        (folder / name).write_bytes(bytes(data))
        cases.append((f"{kind} {name}", folder, name))
    mangled = root / "mangled_config"
    shutil.copytree(source, mangled)
    meta = json.loads((mangled / "config.json").read_text())
    meta["model"]["autoencoder"]["latent_channels"] = 7  # config no longer matches weights
    (mangled / "config.json").write_text(json.dumps(meta))
    cases.append(("config that does not match the weights", mangled, "safetensors"))
    return cases


def test_damaged_checkpoints_raise_medldm_errors_naming_the_file(checkpoint, tmp_path):
    cases = _damaged_checkpoints(checkpoint, tmp_path)
    for description, folder, name in cases:
        TRIED["checkpoint"] += 1
        with pytest.raises(MedLDMError) as error:
            load_prior_checkpoint(folder)
        assert str(folder) in str(error.value), f"{description}: {error.value}"
        if name != "safetensors":
            assert name in str(error.value) or "config.json" in str(error.value), description
    print(f"\ndamaged checkpoints tried: {TRIED['checkpoint']}")


def _real_inputs(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    ct = root / "ct.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), ct)
    nifti = root / "brain.nii.gz"
    data = np.random.default_rng(0).random((24, 28, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(nifti))
    tiff = root / "cells.tif"
    tifffile.imwrite(tiff, (np.random.default_rng(1).random((40, 48)) * 255).astype(np.uint8))
    return {"ct": ct, "nifti": nifti, "tiff": tiff}


def _damaged_inputs(root: Path) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(2)
    cases = []
    for kind, path in _real_inputs(root / "originals").items():
        raw = path.read_bytes()
        suffix = "".join(path.suffixes)
        for index, fraction in enumerate((0.0, 0.05, 0.3, 0.7, 0.95)):
            target = root / f"{kind}_truncated_{index}{suffix}"
            target.write_bytes(raw[: int(len(raw) * fraction)])
            cases.append((f"{kind} truncated to {fraction:.0%}", target))
        for index in range(6):
            data = bytearray(raw)
            for position in rng.integers(0, min(len(data), 400), size=6):
                data[position] ^= 0xFF
            target = root / f"{kind}_header_{index}{suffix}"
            target.write_bytes(bytes(data))
            cases.append((f"{kind} header bytes mangled #{index}", target))
    # absurd declared size: a NIfTI header claiming 30000^3 voxels
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.float32)
    huge = root / "absurd_size.nii"
    with open(huge, "wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * 64)
    cases.append(("absurd declared size", huge))
    # NaN / Inf pixels and a wrong number of dimensions (5D)
    nan = root / "nan.nii.gz"
    data = np.ones((16, 16, 3), np.float32)
    data[2, 2, 1] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(nan))
    cases.append(("Inf pixel", nan))
    wrong = root / "five_d.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 2, 2, 3), np.float32), np.eye(4)), str(wrong))
    cases.append(("5D image", wrong))
    empty_series = root / "empty_series"
    empty_series.mkdir()
    (empty_series / "README.txt").write_text("no images here")
    cases.append(("empty DICOM series folder", empty_series))
    zero = root / "zero.dcm"
    zero.write_bytes(b"")
    cases.append(("zero-byte DICOM", zero))
    return cases


def test_damaged_inputs_to_recon_end_in_medldm_errors_and_no_partial_outputs(tmp_path):
    prior = tiny_prior()
    cases = _damaged_inputs(tmp_path / "inputs")
    outcomes = {"error": 0, "ok": 0}
    for description, path in cases:
        TRIED["recon"] += 1
        out = tmp_path / "runs" / path.name
        try:
            result = medldm.reconstruct(
                path,
                "mri_brain_4x",
                prior=prior,
                slices=1,
                grid={"size": [32, 32], "spacing_mm": None},
                solver_options={"n_steps": 1, "n_samples": 1},
                baseline=False,
            )
            write_run_folder(result, out)
            outcomes["ok"] += 1  # damage the reader could not see (e.g. in pixel values)
            assert (out / "metrics.json").exists()
        except MedLDMError as error:
            outcomes["error"] += 1
            assert path.name in str(error) or str(path) in str(error), (
                f"{description}: the error does not name the file: {error}"
            )
            leftovers = list(out.rglob("*")) if out.exists() else []
            assert not leftovers, f"{description}: partial outputs {leftovers}"
    assert outcomes["error"] >= len(cases) // 2
    print(f"\ndamaged recon inputs tried: {TRIED['recon']} ({outcomes})")
