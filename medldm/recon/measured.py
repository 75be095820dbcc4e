"""Measured single-coil Cartesian k-space (no simulation, no ground truth).

Inputs: ``kspace`` as ``.npy`` (complex, ``(H, W)`` or ``(S, H, W)``, centred and
orthonormal like fastMRI's ``fft2c``) or a fastMRI-style ``.h5`` with a ``kspace``
dataset, and ``mask`` as ``.npy`` (``(W,)`` phase-encode lines, or ``(H, W)``; non-zero =
sampled); a fastMRI ``.h5`` may carry its own ``mask`` dataset. Intensities are scaled so
the zero-filled image's 99.5th percentile is 1 (the prior's range) and scaled back.

The result has no geometry: it is written as NIfTI with a 1 mm identity affine, and only
the data residual is reported.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.mri import fft2c
>>> import torch
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> image = torch.rand(32, 32)
>>> np.save(folder / "k.npy", fft2c(image.to(torch.complex64)).numpy())
>>> mask = np.zeros(32, bool); mask[::2] = True; mask[12:20] = True
>>> np.save(folder / "mask.npy", mask)
>>> from medldm.recon.pipeline import reconstruct
>>> result = reconstruct(kspace=folder / "k.npy", mask=folder / "mask.npy", prior=tiny_prior(),
...                      solver_options={"n_steps": 2, "n_samples": 1}, baseline=False)
>>> result.reconstruction.shape, result.simulated, "psnr_db" in result.metrics["ldm"]
((1, 32, 32), False, False)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.recon.result import ReconResult, solver_stack


def _read_kspace(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if not path.is_file():
        raise InvalidInputError(
            "k-space file not found", path=path, fix="give kspace=/path/to/kspace.npy or .h5"
        )
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if "kspace" not in handle:
                    raise InvalidInputError(
                        "the HDF5 file has no 'kspace' dataset",
                        path=path,
                        fix="use a fastMRI-style file",
                    )
                kspace = np.asarray(handle["kspace"])
                mask = np.asarray(handle["mask"]) if "mask" in handle else None
        except OSError as error:
            raise InvalidInputError(
                f"cannot read HDF5: {error}",
                path=path,
                fix="check the file is a complete HDF5 file",
            ) from error
        return kspace, mask
    try:
        return np.load(path, allow_pickle=False), None
    except (ValueError, OSError) as error:
        raise InvalidInputError(
            f"cannot read k-space: {error}", path=path, fix="save it with numpy.save (no pickles)"
        ) from error


def reconstruct_measured(
    kspace_path: Any,
    mask_path: Any,
    preset: Any,
    solver: Any,
    prior: Any,
    device: torch.device,
    seed: int,
    baseline: bool,
    progress: bool,
    started: float,
) -> ReconResult:
    from medldm.physics.mri import SingleCoilMRI
    from medldm.problems.grid import GridPlan

    path = Path(kspace_path)
    kspace, mask = _read_kspace(path)
    if mask_path is not None:
        mask = np.load(Path(mask_path), allow_pickle=False)
    if mask is None:
        raise InvalidInputError("no sampling mask", path=path, fix="pass mask=/path/mask.npy")
    if kspace.ndim == 2:
        kspace = kspace[None]
    if kspace.ndim != 3 or not np.iscomplexobj(kspace):
        raise InvalidInputError(
            f"k-space must be complex (H, W) or (S, H, W), got {kspace.dtype} {kspace.shape}",
            path=path,
            fix="multi-coil data is not supported here: combine coils first",
        )
    if not np.all(np.isfinite(kspace)):
        raise InvalidInputError("k-space contains NaN/Inf", path=path)
    height, width = kspace.shape[-2:]
    mask = np.asarray(mask).astype(bool)
    if mask.shape == (width,):
        mask = np.broadcast_to(mask[None, :], (height, width))
    if mask.shape != (height, width):
        raise InvalidInputError(
            f"mask shape {mask.shape} fits neither ({width},) nor ({height}, {width})",
            path=mask_path,
        )
    physics = SingleCoilMRI(torch.from_numpy(mask.copy()))
    y = torch.from_numpy(kspace.astype(np.complex64))[:, None] * physics.mask
    zero_filled = physics.x_init(y).abs()
    scale = float(np.percentile(zero_filled.numpy(), 99.5)) or 1.0
    y = (y / scale).to(device)
    physics = physics.to(device)
    sampler = torch.Generator(device=device).manual_seed(int(seed))
    solve_start = time.perf_counter()
    rec = solver.solve(y, physics, prior, generator=sampler)
    seconds = time.perf_counter() - solve_start
    base = None
    if baseline:
        base = solver_stack(preset.build_baseline().solve(y, physics, None).estimate, False) * scale
    plan = GridPlan.make((1, height, width), (1.0, 1.0), size=None, spacing_mm=None)
    n = kspace.shape[0]
    source = MedImage(
        np.zeros((width, height, n), np.float32),
        np.eye(4),
        modality="MR",
        metadata={"format": "measured-kspace", "source_path": str(path)},
    )
    metrics = {
        "preset": preset.name,
        "solver": solver.name,
        "prior": getattr(prior, "name", None),
        "baseline_solver": preset.baseline if baseline else None,
        "physics": "measured kspace",
        "slices": n,
        "volume_mode": False,
        "grid": plan.describe(),
        "seed": int(seed),
        "convention": "measured data: no ground truth; residual only",
        "ldm": {
            "nfe": rec.nfe,
            "seconds": round(seconds, 3),
            "residual": rec.residual,
            "residual_over_noise": rec.residual_over_noise,
        },
        "device": str(device),
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    return ReconResult(
        preset=preset,
        source=source,
        canonical=source,
        slab_start=0,
        truth=None,
        reconstruction=solver_stack(rec.estimate, False) * scale,
        std=(solver_stack(rec.std, False) * scale)
        if rec.std is not None
        else np.zeros((n, height, width), np.float32),
        direct=solver_stack(zero_filled, False),
        baseline=base,
        measurement=kspace,
        sampling_mask=mask,
        metrics=metrics,
        grid=plan,
        simulated=False,
        notes=["measured k-space: intensities scaled by the zero-filled 99.5th percentile"],
    )
