"""``medldm.reconstruct``: one image (or measured k-space) in, a reconstruction out.

Steps (each visible in :class:`~medldm.recon.result.ReconResult`):

1. read the input (``medldm.io.load``) and bring it to RAS+ canonical voxel order, so an
   axial slice has rows towards A and columns towards R — the orientation the 2D priors
   were trained in; world geometry is unchanged;
2. take the preset's central slab of axial slices (or the whole volume), scale
   intensities the way the prior's training data was scaled (per volume), and map the
   slices to the prior's grid (:class:`~medldm.problems.grid.GridPlan`: resampling only when
   the spacing differs, and said so);
3. simulate the measurement with the preset's physics (``configs/physics``) and seed —
   or, for measured k-space, use it as given;
4. run the LDM solver (``configs/solver``, with the prior) and the classical baseline on
   the *same* measurement; score both against the input (simulations only);
5. map everything back to the input's grid and intensity units.

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

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.problems.grid import GridPlan
from medldm.problems.model_view import fit_intensity, slice_to_model, volume_to_model_stack
from medldm.problems.simulate import simulate
from medldm.recon.presets import Preset, load_preset
from medldm.recon.prior_setup import intensity_rule, resolve_prior
from medldm.recon.result import ReconResult, direct_label, solver_stack

__all__ = ["ReconResult", "canonical_image", "reconstruct", "slab_bounds"]


def canonical_image(image: MedImage) -> MedImage:
    """The image with voxel axes permuted/flipped to RAS+ (world geometry unchanged)."""
    import nibabel as nib

    n = image.n_spatial
    affine3 = image.affine
    ornt = nib.orientations.io_orientation(affine3)[:n] if n == 3 else None
    if n != 3:
        return image
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return image
    array = nib.orientations.apply_orientation(image.array, ornt)
    shape = image.array.shape[:3]
    affine = affine3 @ nib.orientations.inv_ornt_aff(ornt, shape)
    return image.replace(array=np.ascontiguousarray(array), affine=affine)


def _as_single_image(image: MedImage) -> MedImage:
    """Drop trailing non-spatial axes of size 1; refuse real multi-channel/time data."""
    extra = [
        (name, size)
        for name, size in zip(image.axes, image.array.shape, strict=True)
        if name not in ("x", "y", "z")
    ]
    big = [f"{name}={size}" for name, size in extra if size > 1]
    if big:
        raise InvalidInputError(
            f"the input has non-spatial axes {', '.join(big)}; one image is reconstructed "
            "at a time",
            path=image.metadata.get("source_path"),
            fix="select one channel / time point first (e.g. save it as its own file)",
        )
    n = image.n_spatial
    array = image.array.reshape(image.array.shape[:n])
    return image.replace(array=array, axes=image.axes[:n])


def slab_bounds(n_total: int, slices: Any) -> tuple[int, int]:
    """``(start, stop)`` of the central ``slices`` of ``n_total`` (``"all"``/``"volume"``:
    every slice)."""
    if slices in (None, "all", "volume"):
        return 0, n_total
    count = int(slices)
    if count < 1:
        raise InvalidInputError(f"slices must be >= 1, 'all' or 'volume', got {slices!r}")
    count = min(count, n_total)
    start = (n_total - count) // 2
    return start, start + count


def _scores(estimate: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Mean PSNR/SSIM over slices (magnitude, data range = the slice's truth max - min)."""
    from medldm.metrics import mean_slice_scores

    scores = mean_slice_scores(estimate, truth)
    return {"psnr_db": scores["psnr"], "ssim": scores["ssim"]}


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
        Measured single-coil k-space (``.npy`` / fastMRI ``.h5``) and its sampling mask:
        no simulation; only the data residual can be reported.
    precision:
        The prior's network calls: ``"auto"`` (bf16 where the hardware runs it natively),
        ``"fp32"`` or ``"bf16"``; the data consistency always runs in fp32.
    overrides:
        Preset fields (``slices=16``, ``solver="psld"``, ``prior=...`` — a name, a folder
        or a loaded Prior) and ``solver_options={...}``.
    """
    from medldm.models.prior import resolve_device

    started = time.perf_counter()
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    preset = preset.with_overrides(**overrides)
    torch_device = resolve_device(device)
    prior = None
    solver = preset.build_solver()
    from medldm.solvers import needs_prior

    if needs_prior(solver.name):
        prior = resolve_prior(preset.prior, torch_device, precision)
    if kspace is not None:
        from medldm.recon.measured import reconstruct_measured

        return reconstruct_measured(
            kspace, mask, preset, solver, prior, torch_device, seed, baseline, progress, started
        )
    if image_or_path is None:
        from medldm.recon.examples import example_input

        image_or_path = example_input(preset.example)
    source = image_or_path if isinstance(image_or_path, MedImage) else None
    if source is None:
        from medldm.io import load

        source = load(image_or_path)
        source.metadata.setdefault("source_path", str(image_or_path))
    source = _as_single_image(source)
    canonical = canonical_image(source)
    array = np.asarray(canonical.array, np.float32)
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(
            "the input image contains NaN or Inf values",
            path=source.metadata.get("source_path"),
            fix="fill or mask them before reconstructing",
        )
    # fitted on the signed values: a CT in HU has negative air, |HU| would rank it as bright
    normalization = fit_intensity(
        intensity_rule(prior, preset.intensity),
        array,
        unit=getattr(source, "unit", None) or "unknown",
    )
    if canonical.n_spatial == 3:
        start, stop = slab_bounds(array.shape[2], preset.slices)
        stack = volume_to_model_stack(array[:, :, start:stop])  # (S, rows=y, cols=x)
        spacing = (canonical.spacing[1], canonical.spacing[0])
    else:
        start, stack = 0, slice_to_model(array)[None]
        spacing = (canonical.spacing[1], canonical.spacing[0])
    truth_units = stack
    truth = np.asarray(normalization.forward(stack, clip=False), np.float32)
    plan = GridPlan.make(
        truth.shape, spacing, size=preset.grid_size, spacing_mm=preset.grid_spacing
    )
    working = plan.to_working(truth)
    volume_mode = bool(preset.volume) and working.shape[0] > 1
    x = torch.from_numpy(working).to(torch_device)
    x = x[None, None] if volume_mode else x[:, None]

    physics, y = simulate(x, preset.build_physics(), seed, torch_device)
    if volume_mode and hasattr(solver, "slice_axis"):
        # one (1, 1, S, H, W) problem: a 2D prior sees its slices along spatial axis 0;
        # made anew so that the option goes through the solver's __init__ like any other
        preset = preset.with_overrides(solver_options={"slice_axis": 0})
        solver = preset.build_solver()

    with torch.no_grad():
        direct = physics.x_init(y)
    sampler = torch.Generator(device=torch_device).manual_seed(int(seed))
    solve_start = time.perf_counter()
    rec = solver.solve(y, physics, prior, generator=sampler)
    ldm_seconds = time.perf_counter() - solve_start
    baseline_stack, baseline_seconds = None, None
    if baseline:
        base_solver = preset.build_baseline()
        base_start = time.perf_counter()
        base_rec = base_solver.solve(y, physics, None, generator=sampler)
        baseline_seconds = time.perf_counter() - base_start
        baseline_stack = plan.from_working(solver_stack(base_rec.estimate, volume_mode))

    def back(tensor_or_stack: Any) -> np.ndarray:
        stack_ = (
            tensor_or_stack
            if isinstance(tensor_or_stack, np.ndarray)
            else solver_stack(tensor_or_stack, volume_mode)
        )
        return plan.from_working(stack_)

    estimate = back(rec.estimate)
    std = back(rec.std) if rec.std is not None else np.zeros_like(estimate)
    direct_stack = back(direct)
    metrics: dict[str, Any] = {
        "preset": preset.name,
        "solver": solver.name,
        "baseline_solver": preset.baseline if baseline else None,
        "prior": getattr(prior, "name", None),
        "physics": preset.physics,
        "slices": int(truth.shape[0]),
        "volume_mode": bool(volume_mode),
        "grid": plan.describe(),
        "intensity": f"{preset.intensity}: input {normalization.low:.6g} -> 0, "
        f"{normalization.high:.6g} -> 1 ({normalization.unit})",
        "convention": "magnitude; PSNR/SSIM per slice against the input, data range = the "
        "slice's max - min after the prior's intensity scaling; mean over slices",
        "ldm": {
            "nfe": rec.nfe,
            "seconds": round(ldm_seconds, 3),
            "residual": rec.residual,
            "residual_over_noise": rec.residual_over_noise,
            "n_samples": rec.info.get("n_samples"),
        },
        "seed": int(seed),
        "device": str(torch_device),
        "precision": getattr(prior, "precision", "fp32"),
    }
    metrics["ldm"].update(_scores(estimate, truth))
    metrics["direct"] = _scores(direct_stack, truth)
    if baseline_stack is not None:
        metrics["baseline"] = {
            **_scores(baseline_stack, truth),
            "seconds": round(float(baseline_seconds or 0.0), 3),
        }
        metrics["ldm_minus_baseline_psnr_db"] = (
            metrics["ldm"]["psnr_db"] - metrics["baseline"]["psnr_db"]
        )
    span = normalization.high - normalization.low
    samples, sample_stacks = None, None
    if rec.samples is not None:
        sample_stacks = [back(s) for s in rec.samples]
        samples = np.stack([normalization.inverse(s) for s in sample_stacks])
    calibration, uncalibrated_reason = _calibration(preset, prior, volume_mode)
    metrics["uncertainty"] = _uncertainty_metrics(
        estimate, truth, std, sample_stacks, calibration, uncalibrated_reason
    )
    scale_90 = calibration.std_scale(0.9) if calibration is not None else GAUSSIAN_Z90
    interval_note = (
        f"calibrated: {calibration.describe()}"
        if calibration is not None
        else f"UNCALIBRATED (Gaussian 1.645 std; {uncalibrated_reason})"
    )
    metrics["total_seconds"] = round(time.perf_counter() - started, 3)
    return ReconResult(
        preset=preset,
        source=source,
        canonical=canonical,
        slab_start=start,
        truth=truth_units,
        reconstruction=np.asarray(normalization.inverse(estimate), np.float32),
        std=np.asarray(std * span, np.float32),
        direct=np.asarray(normalization.inverse(direct_stack), np.float32),
        direct_label=direct_label(physics),
        baseline=None
        if baseline_stack is None
        else np.asarray(normalization.inverse(baseline_stack), np.float32),
        measurement=y.detach().cpu().numpy(),
        sampling_mask=_sampling_mask(physics),
        metrics=metrics,
        grid=plan,
        samples=samples,
        interval90=np.asarray(scale_90 * std * span, np.float32),
        interval_note=interval_note,
        notes=[plan.describe()],
    )


GAUSSIAN_Z90 = 1.6448536269514722  # central 90 % of a Gaussian: mean +- z std


def _calibration(preset: Preset, prior: Any, volume_mode: bool) -> tuple[Any, str]:
    """The std calibration fitted on validation cases for this preset's solver config and
    prior (``configs/calibration``), or ``(None, why not)``."""
    if prior is None:
        return None, "no prior"
    from medldm.problems.calibration import find_calibration, preset_solver_config
    from medldm.problems.configs import solver_for_operator

    options = dict(preset.solver_options or {})
    if volume_mode and float(options.get("slice_weight", 0) or 0) > 0:
        return None, "fits are made on independent 2D slices, this slab is coupled along z"
    _, source = solver_for_operator(preset.solver, preset.physics, options)
    config = preset_solver_config(source, options)
    fit = find_calibration(preset.solver, preset.physics, config, prior=prior)
    if fit is None:
        return None, "no fit for this solver config and prior in configs/calibration"
    return fit, ""


def _uncertainty_metrics(
    estimate: np.ndarray,
    truth: np.ndarray,
    std: np.ndarray,
    sample_stacks: list[np.ndarray] | None,
    calibration: Any,
    uncalibrated_reason: str,
) -> dict[str, Any]:
    """metrics.json's ``uncertainty``: coverage of the 50/90 % intervals and the Spearman
    of std against |error| per slice (foreground, model range), mean over slices."""
    from medldm.metrics.convention import UNCERTAINTY_CONVENTION
    from medldm.problems.calibration import score_uncertainty

    per_slice = []
    for index in range(truth.shape[0]):
        if float(truth[index].max()) <= float(truth[index].min()):
            continue  # a constant slice has no foreground to score
        samples = None if sample_stacks is None else np.stack([s[index] for s in sample_stacks])
        per_slice.append(
            score_uncertainty(
                estimate[index], truth[index], std[index], samples, calibration=calibration
            )
        )
    keys = sorted({k for scores in per_slice for k, v in scores.items() if _is_number(v)})
    means = {}
    for key in keys:  # a measure undefined on every slice (e.g. one sample) is left out
        values = [float(s[key]) for s in per_slice if _is_number(s.get(key))]
        finite = [v for v in values if np.isfinite(v)]
        if finite:
            means[key] = float(np.mean(finite))
    description: dict[str, Any] = {"calibrated": calibration is not None}
    if calibration is not None:
        description["calibration"] = calibration.describe()
    else:
        description["reason"] = uncalibrated_reason
    return {
        **description,
        "roi": "foreground",
        "per": "slice, mean over slices",
        "convention": UNCERTAINTY_CONVENTION,
        **means,
    }


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.floating) and not isinstance(value, bool)


def _sampling_mask(physics: Any) -> np.ndarray | None:
    mask = getattr(physics, "mask", None)
    return None if mask is None else mask.detach().cpu().numpy()
