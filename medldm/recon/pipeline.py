"""``medldm.reconstruct``: one image (or measured k-space) in, a reconstruction out.

This entry point passes the preset's name (or :class:`~medldm.recon.presets.Preset`), its
overrides and the options to :func:`~medldm.recon.stages.run_stages` with the input's
kind; the kind's object resolves the preset and the device when made, then the stages of
:mod:`medldm.recon.stages` run (each visible in :class:`~medldm.recon.result.ReconResult`):

* an image (NIfTI, DICOM, TIFF, a :class:`~medldm.io.MedImage`; ``None``: the preset's
  example): :class:`~medldm.recon.simulated_stages.SimulatedImage` reads it (RAS+, so an
  axial slice has rows towards A and columns towards R, as the 2D priors were trained),
  picks the preset's variant for its resolution and loads that prior (a brain scan at the
  scanner's resolution gets the native prior on its own grid:
  :meth:`~medldm.recon.presets.Preset.for_resolution`), takes the preset's central slab in
  the model view, simulates the measurement with the
  preset's physics and seed, runs the LDM solver and the classical baseline on the *same*
  measurement, maps everything back to the input's grid and units and scores both
  against the input;
* measured k-space (``kspace=``): the same stages on the measured data
  (:func:`medldm.recon.measured.run_measured`, what
  :func:`~medldm.recon.measured.reconstruct_kspace` runs, with its default options), scored
  by data residuals; it comes at the scanner's resolution, so the preset's native variant
  is used where it has one.

Example
-------
>>> import numpy as np
>>> from medldm.io import MedImage
>>> from medldm.models.testing import tiny_prior
>>> volume = MedImage(np.random.default_rng(0).random((20, 24, 3)).astype(np.float32),
...                   np.diag([2.0, 2.0, 2.0, 1.0]), modality="MR")
>>> result = reconstruct(volume, "mri_brain_4x", prior=tiny_prior(), slices=2,
...                      grid={"size": [32, 32], "spacing_mm": 2.0},
...                      solver_options={"n_steps": 2, "n_samples": 2}, baseline=False)
>>> result.reconstruction.shape, result.std.shape, "psnr_db" in result.metrics["ldm"]
((2, 24, 20), (2, 24, 20), True)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.recon.image_input import canonical_image, slab_bounds
from medldm.recon.presets import Preset
from medldm.recon.result import ReconResult
from medldm.recon.simulated_stages import SimulatedImage
from medldm.recon.stages import run_stages

__all__ = ["ReconResult", "canonical_image", "reconstruct", "slab_bounds"]


def reconstruct(
    image_or_path: MedImage | str | Path | None = None,
    preset: str | Preset = "mri_brain_4x",
    *,
    device: str = "auto",
    seed: int = 0,
    baseline: bool = True,
    progress: bool = False,
    kspace: str | Path | None = None,
    mask: str | Path | None = None,
    precision: str = "auto",
    time_budget: float | None = None,
    **overrides: Any,
) -> ReconResult:
    """Reconstruct ``image_or_path`` with a preset; see the module docstring.

    Parameters
    ----------
    image_or_path:
        A :class:`~medldm.io.MedImage`, or a NIfTI / DICOM / TIFF path; ``None`` uses the
        preset's example input (or the geometry-free measured ``kspace``).
    preset:
        A preset name (``configs/preset``) or a :class:`Preset`.
    device, seed, baseline, progress:
        ``"auto"`` picks the GPU when present; the seed of the simulated measurement and of
        the sampler; run the classical baseline too; show progress bars.
    kspace, mask:
        Measured k-space (any raw file :func:`~medldm.recon.measured.reconstruct_kspace`
        reads) and its sampling mask: no simulation; scored by the data residual and the
        k-space hold-out.
    precision:
        The prior's network calls: ``"auto"`` (bf16 where the hardware runs it natively),
        ``"fp32"`` or ``"bf16"``; the data consistency always runs in fp32.
    time_budget:
        Seconds for the whole reconstruction of an image (``None``: no limit): the LDM
        solver's steps and samples are fitted to it (:mod:`medldm.recon.budget`) and
        ``metrics["time_budget"]`` says what was chosen. Not for measured ``kspace``.
    overrides:
        Preset fields (``slices=16``, ``solver="psld"``, ``prior=...`` — a name, a folder
        or a loaded Prior) and ``solver_options={...}``.
    """
    if kspace is not None:  # measured k-space: its entry point, the same stages
        from medldm.recon.measured import run_measured

        if time_budget is not None:
            raise InvalidInputError(
                "time_budget applies to image inputs, not to measured k-space",
                fix="drop time_budget, or pass solver_options={'n_steps': ..., 'n_samples': ...}",
            )

        return run_measured(
            kspace=kspace,
            preset=preset,
            mask=mask,
            overrides=overrides,
            options={},
            device=device,
            precision=precision,
            seed=seed,
            baseline=baseline,
            progress=progress,
        )
    return run_stages(
        SimulatedImage,
        time.perf_counter(),
        image_or_path=image_or_path,
        preset=preset,
        overrides=overrides,
        device=device,
        seed=seed,
        baseline=baseline,
        precision=precision,
        time_budget=time_budget,
    )
