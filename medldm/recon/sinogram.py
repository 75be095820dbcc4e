"""Measured CT projections in (``medldm-recon sinogram=FILE``): FBP and TV of every row.

:func:`reconstruct_sinogram` passes its options to :func:`~medldm.recon.stages.run_stages`
for measured sinograms (:class:`~medldm.recon.sinogram_stages.MeasuredSinogram`). What the
stages do (each recorded in :class:`~medldm.recon.result.SinogramResult` and
``metrics.json``):

1. read the Data Exchange file (:func:`medldm.io.raw_ct.read_data_exchange`): flat/dark
   correction, ``-log``, angles from the file, one sinogram per detector row;
2. find the rotation centre two independent ways on every row
   (:mod:`medldm.physics.ct_centre`: opposite-view registration and FBP sharpness) and
   reconstruct with their mean (or with ``rotation_centre`` when given); a disagreement of
   more than :data:`~medldm.recon.sinogram_geometry.CENTRE_AGREEMENT_PX` is reported as a
   warning;
3. cut the detector window centred on the axis that holds the object's shadow plus a
   margin: the image is the square of that width around the axis, and the projector is
   :class:`~medldm.physics.ct.ParallelBeamCT` with the centre's sub-pixel
   ``centre_offset`` (exact, no interpolation of the data);
4. FBP; TV (:class:`~medldm.solvers.tv.TotalVariation`, non-negative) on the sinograms
   scaled so that the FBP's 99.5th percentile is 1, the weight given or chosen by the
   discrepancy principle: the largest weight of a grid whose data residual stays within
   the noise estimated from the sinogram's background
   (:func:`~medldm.recon.sinogram_tv.noise_sigma`);
5. the CT prior is run only where the field of view suits it
   (:func:`~medldm.recon.sinogram_geometry.prior_suitability`), which a micro-CT never
   does; the result says why.

Intensities: attenuation per pixel (line integral per pixel length), per mm when the file
gives the pixel size.

Example
-------
>>> import h5py, numpy as np, tempfile, pathlib, torch
>>> from medldm.physics.ct import ParallelBeamCT, sparse_view_angles
>>> angles = sparse_view_angles(60)
>>> disc = torch.zeros(1, 1, 24, 24); disc[..., 8:15, 9:17] = 0.05
>>> lines = ParallelBeamCT(24, angles, n_detectors=40, centre_offset=-3.0).A(disc)[0, 0]
>>> counts = 1000.0 * np.exp(-lines.numpy().T)[:, None, :]  # (views, 1 row, 40 bins)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
>>> with h5py.File(path, "w") as f:
...     f["exchange/data"] = counts.astype(np.float32)
...     f["exchange/data_white"] = np.full((2, 1, 40), 1000.0, np.float32)
...     f["exchange/data_dark"] = np.zeros((2, 1, 40), np.float32)
...     f["exchange/theta"] = angles
>>> result = reconstruct_sinogram(path, tv_weight=0.01, tv_iterations=50)
>>> round(result.centre, 1), result.tv.shape == result.fbp.shape
(17.0, True)
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from medldm.recon.result import SinogramResult
from medldm.recon.sinogram_geometry import (
    CENTRE_AGREEMENT_PX,
    CT_PRIOR_FIELD_OF_VIEW_MM,
    WINDOW_MARGIN,
    estimate_centres,
    prior_suitability,
    reconstruction_window,
)
from medldm.recon.sinogram_stages import MeasuredSinogram
from medldm.recon.sinogram_tv import (
    TV_ITERATIONS,
    TV_STEP_RATIO,
    TV_WEIGHT_GRID,
    noise_sigma,
    residual_rms,
    tv_for_weights,
)
from medldm.recon.stages import run_stages

__all__ = [
    "CENTRE_AGREEMENT_PX",
    "CT_PRIOR_FIELD_OF_VIEW_MM",
    "TV_ITERATIONS",
    "TV_STEP_RATIO",
    "TV_WEIGHT_GRID",
    "WINDOW_MARGIN",
    "SinogramResult",
    "estimate_centres",
    "noise_sigma",
    "prior_suitability",
    "reconstruct_sinogram",
    "reconstruction_window",
    "residual_rms",
    "tv_for_weights",
]


def reconstruct_sinogram(
    path: str | Path,
    *,
    rotation_centre: float | None = None,
    tv_weight: float | None = None,
    tv_iterations: int = TV_ITERATIONS,
    device: str | torch.device = "cpu",
) -> SinogramResult:
    """Reconstruct every detector row of a Data Exchange scan (see the module text).

    Parameters
    ----------
    path:
        The Data Exchange HDF5 file.
    rotation_centre:
        The axis' detector position (0-based bins); ``None`` finds it from the data (both
        estimates, their mean is used).
    tv_weight:
        TV weight for the sinograms scaled to FBP 99.5th percentile 1; ``None``: the
        discrepancy principle over :data:`~medldm.recon.sinogram_tv.TV_WEIGHT_GRID`.
    tv_iterations:
        PDHG iterations.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """
    return run_stages(
        MeasuredSinogram,
        time.perf_counter(),
        path=path,
        rotation_centre=rotation_centre,
        tv_weight=tv_weight,
        tv_iterations=tv_iterations,
        device=device,
    )
