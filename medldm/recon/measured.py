"""Measured MRI k-space in: single- and multi-coil Cartesian raw data, no simulation.

The entry point :func:`reconstruct_kspace` (what ``medldm-recon kspace=`` and, with the
default options, ``medldm.reconstruct(kspace=...)`` run) passes the preset, its overrides
and the options to :func:`~medldm.recon.stages.run_stages` for measured k-space
(:class:`~medldm.recon.kspace_stages.MeasuredKSpace`, which sets up the preset, the device
and the prior). What the stages do (each disclosed in ``metrics.json`` and
``report.html``):

1. **read** one slice of k-space with :func:`medldm.io.raw_mri.read_raw_kspace` (``.npy``,
   BART ``.cfl``, Siemens twix ``.dat``, ISMRMRD or fastMRI ``.h5``): the pixel spacing
   comes from the file's header, else 1 mm is assumed and said;
2. **sampling mask**: ``mask=`` when given, else the file's own mask (fastMRI), else the
   non-zero locations of the k-space. A *fully sampled* input undersampled on purpose
   (``acceleration=4|8``: the project's fastMRI random-line mask along the file's
   phase-encode axis, seeded; or an explicit ``mask=``) is scored against its own fully
   sampled reconstruction (root sum of squares of the coil images); ``reference=`` gives
   that reference for data that is undersampled already;
3. **coil maps** (several coils): ESPIRiT (:func:`medldm.physics.coils.estimate_sensitivities`)
   on the largest fully sampled centred block of the mask, with the largest kernel
   (6 down to 3) the block supports (at least as many kernel positions as the kernel's size
   along each axis); a block under 5 lines wide, or ESPIRiT maps that leave more than 5 %
   of the object's signal uncovered (``coils.map_coverage``: too few lines for the coils), fall back
   to low-resolution maps (``rss_lowres``), and say so;
4. **intensities**: the preset's ``intensity`` rule (the prior's own training rule, or
   the 0.5-99.5 percentiles) is fitted through the model view
   (:func:`medldm.problems.model_view.fit_intensity`) to the coil-combined zero-filled
   image; the k-space is divided by the fitted range ``high - low`` (k-space is linear in
   the image, so the magnitude's zero stays at 0: the offset ``low`` is reported, not
   subtracted) and every output is multiplied back;
5. **the prior's grid**: the image is laid out in the model view (the picture's top row,
   row 0 of the k-space's image, is taken as anterior: rows are reversed so that they
   grow towards A, as the priors were trained) and mapped onto the preset's grid
   (:class:`~medldm.problems.grid.GridPlan`): resampled by Fourier interpolation (k-space
   cropped or zero-padded, exact for band-limited images) when the spacing differs, then
   zero-padded. The LDM solver runs on that grid through
   :class:`~medldm.recon.kspace_prior_grid.PriorGridMRI`, the
   measured operator seen from it, so its data term is the measured k-space itself;
6. **solvers**: the preset's LDM solver, and the classical solvers (CG-SENSE, TV, and
   l1-wavelet where installed) on the native grid, all on the *same* scaled k-space, with
   the presets tuned for the closest simulated operator (``mri[_multicoil]_4x|8x``, with
   ``_variable_density`` for a 2D sampling pattern).
   Solvers that reconstruct a real magnitude behind a phase map (the LDM solvers, TV) get
   the phase of the CG-SENSE estimate: their own low-resolution phase (a narrow k-space
   window) cannot follow the coil-combined phase of measured multi-coil images;
7. **scores**: the relative data residual ``||A x - y|| / ||y||`` of every method; PSNR /
   SSIM / NMSE against the reference where there is one (magnitude, the reference's
   units, data range = its max - min); and, by default when there is no reference, the
   **k-space hold-out error** of every method (:mod:`medldm.physics.holdout`: 5 seeded
   splits, each method reconstructed from 90 % of the samples and scored on the held-out
   10 %, mean and spread; ``holdout_splits=``).

Example
-------
>>> import numpy as np, tempfile, pathlib, torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.mri import fft2c
>>> from medldm.physics.coils import birdcage_sensitivities
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> image = torch.zeros(32, 32); image[8:24, 6:26] = 1
>>> coils = fft2c(birdcage_sensitivities(4, (32, 32)) * image)
>>> np.save(folder / "full.npy", coils.numpy())
>>> result = reconstruct_kspace(folder / "full.npy", "mri_brain_4x", acceleration=4,
...     prior=tiny_prior(), grid={"size": [32, 32], "spacing_mm": 1.0},
...     solver_options={"n_steps": 2, "n_samples": 1}, classical=["cg"])
>>> result.reconstruction.shape, sorted(result.metrics["classical"])
((1, 32, 32), ['cg', 'tv'])
>>> "psnr_db" in result.metrics["ldm"], result.metrics["reference"]["kind"]
(True, 'retrospective')
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medldm.physics.coils import calibration_region
from medldm.recon.kspace_input import RAW_UNIT, retrospective_mask, root_sum_of_squares
from medldm.recon.kspace_methods import GRID_SOLVES
from medldm.recon.kspace_operator import (
    ESPIRIT_KERNELS,
    ESPIRIT_MIN_COVERAGE,
    coil_maps,
    espirit_kernel,
)
from medldm.recon.kspace_prior_grid import PriorGridMRI
from medldm.recon.kspace_stages import MeasuredKSpace
from medldm.recon.presets import Preset
from medldm.recon.result import ReconResult
from medldm.recon.stages import run_stages

__all__ = [
    "ESPIRIT_KERNELS",
    "ESPIRIT_MIN_COVERAGE",
    "GRID_SOLVES",
    "RAW_UNIT",
    "PriorGridMRI",
    "calibration_region",
    "coil_maps",
    "espirit_kernel",
    "reconstruct_kspace",
    "retrospective_mask",
    "root_sum_of_squares",
]


def reconstruct_kspace(
    kspace: str | Path,
    preset: str | Preset = "mri_brain_4x",
    *,
    mask: str | Path | None = None,
    reference: str | Path | None = None,
    acceleration: float | None = None,
    kspace_slice: int | None = None,
    classical: Sequence[str] | None = None,
    coil_maps_from: str = "acs",
    phase: str = "cg",
    holdout_splits: int | None = None,
    grid_solve: str = "tv",
    weight_search: Sequence[float] = (),
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    baseline: bool = True,
    progress: bool = False,
    **overrides: Any,
) -> ReconResult:
    """Reconstruct measured k-space (see the module); what ``medldm-recon kspace=`` runs.

    Parameters
    ----------
    kspace, preset:
        The raw-data file (``.npy``, ``.cfl``, twix ``.dat``, ISMRMRD or fastMRI ``.h5``); a
        reconstruction preset (its LDM solver, baseline, prior, grid and intensity rule).
    mask:
        A ``.npy`` sampling mask (``(cols,)`` lines or ``(rows, cols)``; non-zero =
        sampled); default: the file's own, else the non-zero k-space locations.
    reference:
        A reference for the scores: fully sampled k-space (its root sum of squares) or a
        real ``.npy`` image on the k-space's matrix. Automatic for a fully sampled input
        that ``acceleration`` or ``mask`` undersamples.
    acceleration, kspace_slice:
        Undersample a fully sampled input retrospectively (fastMRI random lines, seeded);
        which slice of a multi-slice file (default: the central one).
    classical:
        Classical solvers to run besides the preset's baseline (default: CG-SENSE, and
        l1-wavelet where installed); ``baseline=False`` runs none.
    coil_maps_from:
        ``"acs"`` (default): the measured data's fully sampled centre; ``"reference"``:
        ESPIRiT on the fully sampled reference k-space (oracle maps, for retrospective
        experiments whose few centre lines cannot calibrate many coils; reported as such).
    phase:
        ``"cg"`` (default): solvers that reconstruct a real magnitude behind a phase map
        (the LDM solvers, TV: ``phase="lowres"`` in their presets) get the phase of the
        CG-SENSE estimate; ``"lowres"``: their own low-resolution phase estimate.
    holdout_splits:
        k-space hold-out splits (:mod:`medldm.physics.holdout`): every method is also rebuilt
        from 90 % of the samples and scored on the other 10 %, the no-reference quality
        score. Default: 5 when there is no reference, 0 (off) when there is one.
    grid_solve:
        When the prior's grid differs from the measured one, the prior's estimate anchors a
        final solve on the measured grid: ``"tv"`` (default; with the LDM preset's final TV
        weight), ``"least_squares"`` or ``"none"`` (the Fourier-resampled estimate as it is;
        it misfits what the measured grid holds beyond the prior's). Chosen on validation
        slices by ``benchmarks/measured_grid_solve.py``.
    weight_search:
        Factors of the solvers' preset weights (e.g. ``(0.5, 1, 2, 4)``): each solver with
        a weight (TV's and l1-wavelet's, the LDM's final-step weight) gets the factor with
        the lowest k-space hold-out error on this scan (:mod:`medldm.recon.kspace_weights`);
        default: none, the presets' weights.
    device, precision, seed, progress:
        ``"auto"`` picks the GPU when present; the prior's network precision (``auto``, ``fp32``,
        ``bf16``); the seed of a retrospective mask and of the sampler; progress bars.
    overrides:
        Preset fields (``prior=``, ``solver=``, ``grid={...}``, ``solver_options={...}``).
    """
    options = {
        "reference": reference,
        "acceleration": acceleration,
        "kspace_slice": kspace_slice,
        "classical": classical,
        "coil_maps_from": coil_maps_from,
        "phase": phase,
        "holdout_splits": holdout_splits,
        "grid_solve": grid_solve,
        "weight_search": weight_search,
    }
    return run_measured(
        kspace, preset, mask, overrides, options, device, precision, seed, baseline, progress
    )


def run_measured(
    kspace: str | Path,
    preset: str | Preset,
    mask: str | Path | None,
    overrides: dict[str, Any],
    options: dict[str, Any],
    device: str,
    precision: str,
    seed: int,
    baseline: bool,
    progress: bool,
) -> ReconResult:
    """The stages of measured k-space (:class:`~medldm.recon.kspace_stages.MeasuredKSpace`,
    set up from these arguments) run by :func:`~medldm.recon.stages.run_stages`: what
    :func:`reconstruct_kspace` and ``medldm.reconstruct(kspace=...)`` (``options={}``: the
    defaults) run. ``overrides`` are preset fields, ``options`` those of
    :func:`reconstruct_kspace` between ``reference`` and ``weight_search``."""
    return run_stages(
        MeasuredKSpace,
        time.perf_counter(),
        kspace_path=kspace,
        mask_path=mask,
        preset=preset,
        overrides=overrides,
        device=device,
        precision=precision,
        seed=seed,
        baseline=baseline,
        progress=progress,
        options=options,
    )
