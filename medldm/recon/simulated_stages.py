"""The stages of an image whose measurement is simulated (:class:`SimulatedImage`), in the
order of :func:`medldm.recon.stages.run_stages`, which makes the object (its preset
resolved with the overrides, its device) and then runs:

1. ``read``: :func:`~medldm.recon.image_input.read_image` (one finite image, RAS+);
2. ``model_view``: the preset's variant for the input's resolution
   (:meth:`~medldm.recon.presets.Preset.for_resolution`: a brain scan at the scanner's
   resolution gets the native prior on its own grid), its solver and prior; the preset's
   central slab of axial slices (or the whole volume),
   intensities scaled the way the prior's training data was (per volume, on the signed
   values), the slices mapped to the prior's grid (:class:`~medldm.problems.grid.GridPlan`:
   resampled only when the spacing differs, and said so);
3. ``measure``: the preset's physics (``configs/physics``) simulated with the seed
   (:func:`medldm.problems.simulate.simulate`);
4. ``solve``: the LDM solver (``configs/solver``, with the prior) and the classical
   baseline on the *same* measurement and sampler;
5. ``to_input_grid``: every estimate back on the input's grid (the prior's range);
6. ``score``: PSNR/SSIM against the input, the posterior std's coverage;
7. ``result``: a :class:`~medldm.recon.result.ReconResult` in the input's units.

Example
-------
>>> import numpy as np, time
>>> from medldm.io import MedImage
>>> from medldm.models.testing import tiny_prior
>>> from medldm.recon.stages import run_stages
>>> overrides = dict(slices=1, grid={"size": [32, 32], "spacing_mm": 2.0}, prior=tiny_prior(),
...                  solver_options={"n_steps": 2, "n_samples": 2})
>>> volume = MedImage(np.random.default_rng(0).random((20, 24, 3)).astype(np.float32),
...                   np.diag([2.0, 2.0, 2.0, 1.0]), modality="MR")
>>> result = run_stages(SimulatedImage, time.perf_counter(), image_or_path=volume,
...                     preset="mri_brain_4x", overrides=overrides, device="cpu", seed=0,
...                     baseline=False)
>>> result.reconstruction.shape, "psnr_db" in result.metrics["ldm"]
((1, 24, 20), True)
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.io import MedImage
from medldm.problems.grid import GridPlan
from medldm.problems.model_view import fit_intensity, slice_positions
from medldm.problems.simulate import simulate
from medldm.recon.budget import BudgetPlan, plan_for_budget
from medldm.recon.image_input import ImageInput, read_image, slab_stack
from medldm.recon.presets import Preset, resolve_preset
from medldm.recon.prior_setup import intensity_rule, resolve_prior
from medldm.recon.result import ReconResult, direct_label, solver_stack
from medldm.recon.uncertainty import calibration_for, interval_scale, uncertainty_metrics
from medldm.solvers import needs_prior


@dataclass
class ImageView:
    """The ``model_view`` stage's product: the slab as the solvers see it."""

    preset: Preset  # the preset's variant for the input's resolution
    solver: Any  # its LDM solver, as built
    prior: Any  # its prior, loaded (None for a solver without one)
    normalization: Any  # the input's units -> the prior's range (fitted per volume)
    slab_start: int  # first slice of the slab in the input
    truth_units: np.ndarray  # the slab, (S, rows, cols), the input's units
    truth: np.ndarray  # the same in the prior's range
    plan: GridPlan  # the input's grid <-> the prior's working grid
    volume_mode: bool  # the slab is one 3D problem ``(1, 1, S, H, W)``
    x: torch.Tensor  # the slab on the working grid, in the solver's layout
    # for a slice-conditioned prior: each slab slice's position in the head (model view)
    slice_positions: np.ndarray | None = None


@dataclass
class SimulatedMeasurement:
    """The ``measure`` stage's product."""

    physics: Any
    y: torch.Tensor


@dataclass
class ImageSolved:
    """The ``solve`` stage's product: every method's reconstruction of ``y``."""

    preset: Preset  # the preset as solved (``slice_axis=0`` for one 3D problem)
    solver: Any
    ldm: Any  # the LDM solver's Reconstruction
    ldm_seconds: float
    direct: torch.Tensor  # ``physics.x_init(y)``
    baseline: Any = None  # the baseline's Reconstruction
    baseline_seconds: float | None = None
    calibration: Any = None  # the std calibration for this solver config and prior
    uncalibrated_reason: str = ""
    budget: BudgetPlan | None = None  # what ``time_budget`` chose


@dataclass
class ImageStacks:
    """The ``to_input_grid`` stage's product: ``(S, rows, cols)`` stacks on the input's
    grid, in the prior's range."""

    estimate: np.ndarray
    std: np.ndarray
    direct: np.ndarray
    baseline: np.ndarray | None
    samples: list[np.ndarray] | None


@dataclass
class SimulatedImage:
    """The stages of one image whose measurement is simulated (see the module text)."""

    image_or_path: MedImage | str | Path | None  # ``None``: the preset's example input
    # a name (``configs/preset``) or a Preset (its prior: a name, a folder or a loaded
    # Prior); once made, the Preset with ``overrides``
    preset: str | Preset
    device: str | torch.device  # "auto" (the GPU when present), ...; once made, resolved
    seed: int  # of the simulated measurement and of the sampler
    baseline: bool  # run the classical baseline too
    precision: str = "auto"  # of the prior's network calls
    overrides: dict[str, Any] = field(default_factory=dict)  # preset fields
    # seconds for the whole run: the LDM solver's steps and samples are cut to fit
    # (:mod:`medldm.recon.budget`); None: the preset's
    time_budget: float | None = None

    def __post_init__(self) -> None:
        """The preset with its overrides and the device, before anything is read."""
        from medldm.models.prior import resolve_device

        self._started = time.perf_counter()
        self.preset = resolve_preset(self.preset, **self.overrides)
        self.device = resolve_device(self.device)
        self.seed = int(self.seed)

    def read(self) -> ImageInput:
        return read_image(self.image_or_path, self.preset.example)

    def model_view(self, read: ImageInput) -> ImageView:
        """Slab, intensities (fitted on the signed values: a CT in HU has negative air,
        ``|HU|`` would rank it as bright) and the prior's grid."""
        spacing = (read.canonical.spacing[1], read.canonical.spacing[0])
        preset = self.preset.for_resolution(min(spacing))
        start, stack = slab_stack(read.canonical, read.array, preset.slices)
        volume_mode = bool(preset.volume) and len(stack) > 1
        preset = preset if volume_mode else preset.per_slice()
        solver = preset.build_solver()
        prior = (
            resolve_prior(preset.prior, self.device, self.precision)
            if needs_prior(solver.name)
            else None
        )
        unit = getattr(read.source, "unit", None) or "unknown"
        normalization = fit_intensity(
            intensity_rule(prior, preset.intensity), read.array, unit=unit
        )
        truth = np.asarray(normalization.forward(stack, clip=False), np.float32)
        plan = GridPlan.make(
            truth.shape, spacing, size=preset.grid_size, spacing_mm=preset.grid_spacing
        )
        working = plan.to_working(truth)
        x = torch.from_numpy(working).to(self.device)
        x = x[None, None] if volume_mode else x[:, None]
        where = _slab_positions(read, normalization, prior, start, len(stack))
        return ImageView(
            preset, solver, prior, normalization, start, stack, truth, plan, volume_mode, x, where
        )

    def measure(self, read: ImageInput, view: ImageView) -> SimulatedMeasurement:
        physics, y = simulate(view.x, view.preset.build_physics(), self.seed, self.device)
        return SimulatedMeasurement(physics, y)

    def solve(
        self, read: ImageInput, view: ImageView, measurement: SimulatedMeasurement
    ) -> ImageSolved:
        """The LDM solver, then the baseline, on one sampler seeded with the seed. With a
        time budget the baseline runs first (its time counts) and the LDM solver's steps
        and samples are fitted to what is left."""
        preset, solver = _solver_for(view)
        physics, y = measurement.physics, measurement.y
        with torch.no_grad():
            direct = physics.x_init(y)
        baseline = self._baseline(preset, physics, y) if self.time_budget else None
        budget = None
        if self.time_budget is not None and hasattr(solver, "schedule_option"):
            preset, solver, budget = self._fit_budget(preset, solver, view, measurement)
        sampler = torch.Generator(device=self.device).manual_seed(self.seed)
        start = time.perf_counter()
        with _at_positions(view.prior, view.slice_positions):
            ldm = solver.solve(y, physics, view.prior, generator=sampler)
        solved = ImageSolved(preset, solver, ldm, time.perf_counter() - start, direct)
        solved.budget = budget
        if self.baseline:
            solved.baseline, solved.baseline_seconds = baseline or self._baseline(
                preset, physics, y, sampler
            )
        solved.calibration, solved.uncalibrated_reason = calibration_for(
            preset, view.prior, view.volume_mode
        )
        return solved

    def _baseline(
        self, preset: Preset, physics: Any, y: torch.Tensor, sampler: Any = None
    ) -> tuple[Any, float] | None:
        """The baseline's Reconstruction and seconds (None when it is off)."""
        if not self.baseline:
            return None
        if sampler is None:
            sampler = torch.Generator(device=self.device).manual_seed(self.seed)
        start = time.perf_counter()
        reconstruction = preset.build_baseline().solve(y, physics, None, generator=sampler)
        return reconstruction, time.perf_counter() - start

    def _fit_budget(
        self, preset: Preset, solver: Any, view: ImageView, measurement: SimulatedMeasurement
    ) -> tuple[Preset, Any, BudgetPlan]:
        """The preset and solver with the steps and samples that fit the time budget."""
        option = solver.schedule_option

        def probe(steps: int) -> tuple[float, list[float]]:
            trial = preset.with_overrides(solver_options={option: steps}).build_solver()
            sampler = torch.Generator(device=self.device).manual_seed(self.seed)
            ends: list[float] = []
            start = time.perf_counter()
            trial.solve(
                measurement.y,
                measurement.physics,
                view.prior,
                generator=sampler,
                callback=lambda step, x: ends.append(time.perf_counter() - start),
            )
            return time.perf_counter() - start, ends

        plan = plan_for_budget(
            float(self.time_budget or 0.0),
            time.perf_counter() - self._started,
            int(getattr(solver, option)),
            int(getattr(solver, "n_samples", 1)),
            probe,
        )
        chosen = preset.with_overrides(
            solver_options={option: plan.n_steps, "n_samples": plan.n_samples}
        )
        return chosen, chosen.build_solver(), plan

    def to_input_grid(
        self,
        read: ImageInput,
        view: ImageView,
        measurement: SimulatedMeasurement,
        solved: ImageSolved,
    ) -> ImageStacks:
        def back(tensor_or_stack: Any) -> np.ndarray:
            stack = (
                tensor_or_stack
                if isinstance(tensor_or_stack, np.ndarray)
                else solver_stack(tensor_or_stack, view.volume_mode)
            )
            return view.plan.from_working(stack)

        ldm = solved.ldm
        estimate = back(ldm.estimate)
        return ImageStacks(
            estimate=estimate,
            std=back(ldm.std) if ldm.std is not None else np.zeros_like(estimate),
            direct=back(solved.direct),
            baseline=None if solved.baseline is None else back(solved.baseline.estimate),
            samples=None if ldm.samples is None else [back(s) for s in ldm.samples],
        )

    def score(
        self,
        read: ImageInput,
        view: ImageView,
        measurement: SimulatedMeasurement,
        solved: ImageSolved,
        stacks: ImageStacks,
    ) -> dict[str, Any]:
        """What ran, then PSNR/SSIM of every method and the std's coverage."""
        metrics = self._run_record(view, solved)
        metrics["ldm"].update(_scores(stacks.estimate, view.truth))
        metrics["direct"] = _scores(stacks.direct, view.truth)
        if stacks.baseline is not None:
            metrics["baseline"] = {
                **_scores(stacks.baseline, view.truth),
                "seconds": round(float(solved.baseline_seconds or 0.0), 3),
            }
            metrics["ldm_minus_baseline_psnr_db"] = (
                metrics["ldm"]["psnr_db"] - metrics["baseline"]["psnr_db"]
            )
        metrics["uncertainty"] = uncertainty_metrics(
            stacks.estimate,
            view.truth,
            stacks.std,
            stacks.samples,
            solved.calibration,
            solved.uncalibrated_reason,
            _observed_stack(view, measurement.physics),
        )
        return metrics

    def _run_record(self, view: ImageView, solved: ImageSolved) -> dict[str, Any]:
        """The fields of ``metrics.json`` that say what ran, and how."""
        preset, rec, normalization = solved.preset, solved.ldm, view.normalization
        return {
            "preset": preset.name,
            "solver": solved.solver.name,
            "baseline_solver": preset.baseline if self.baseline else None,
            "prior": getattr(view.prior, "name", None),
            "physics": preset.physics,
            "slices": int(view.truth.shape[0]),
            "volume_mode": bool(view.volume_mode),
            "grid": view.plan.describe(),
            "intensity": f"{preset.intensity}: input {normalization.low:.6g} -> 0, "
            f"{normalization.high:.6g} -> 1 ({normalization.unit})",
            "convention": "magnitude; PSNR/SSIM per slice against the input, data range = "
            "the slice's max - min after the prior's intensity scaling; mean over slices",
            "ldm": {
                "nfe": rec.nfe,
                "seconds": round(solved.ldm_seconds, 3),
                "residual": rec.residual,
                "residual_over_noise": rec.residual_over_noise,
                "n_samples": rec.info.get("n_samples"),
            },
            **_budget_record(solved),
            "seed": int(self.seed),
            "device": str(self.device),
            "precision": getattr(view.prior, "precision", "fp32"),
        }

    def result(
        self,
        read: ImageInput,
        view: ImageView,
        measurement: SimulatedMeasurement,
        solved: ImageSolved,
        stacks: ImageStacks,
        metrics: dict[str, Any],
    ) -> ReconResult:
        """Every stack in the input's units (the intensity map inverted exactly)."""
        normalization = view.normalization
        span = normalization.high - normalization.low
        scale_90, interval_note = interval_scale(solved.calibration, solved.uncalibrated_reason)
        samples = None
        if stacks.samples is not None:
            samples = np.stack([normalization.inverse(s) for s in stacks.samples])
        return ReconResult(
            preset=solved.preset,
            source=read.source,
            canonical=read.canonical,
            slab_start=view.slab_start,
            truth=view.truth_units,
            reconstruction=np.asarray(normalization.inverse(stacks.estimate), np.float32),
            std=np.asarray(stacks.std * span, np.float32),
            direct=np.asarray(normalization.inverse(stacks.direct), np.float32),
            direct_label=direct_label(measurement.physics),
            baseline=None
            if stacks.baseline is None
            else np.asarray(normalization.inverse(stacks.baseline), np.float32),
            measurement=measurement.y.detach().cpu().numpy(),
            sampling_mask=_sampling_mask(measurement.physics),
            metrics=metrics,
            grid=view.plan,
            samples=samples,
            interval90=np.asarray(scale_90 * stacks.std * span, np.float32),
            interval_note=interval_note,
            notes=[view.plan.describe()],
        )


def _solver_for(view: ImageView) -> tuple[Preset, Any]:
    """The preset and LDM solver for the slab's layout."""
    if view.volume_mode and hasattr(view.solver, "slice_axis"):
        # one (1, 1, S, H, W) problem: a 2D prior sees its slices along spatial axis 0;
        # made anew so that the option goes through the solver's __init__ like any other
        preset = view.preset.with_overrides(solver_options={"slice_axis": 0})
        return preset, preset.build_solver()
    return view.preset, view.solver


def _budget_record(solved: ImageSolved) -> dict[str, Any]:
    """``{"time_budget": the plan and the LDM solver's measured seconds}``, or nothing."""
    if solved.budget is None:
        return {}
    return {
        "time_budget": {
            **solved.budget.as_dict(),
            "ldm_seconds": round(solved.ldm_seconds, 3),
            "summary": solved.budget.describe(),
        }
    }


def _scores(estimate: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Mean PSNR/SSIM over slices (magnitude, data range = the slice's truth max - min);
    for a slab that also holds (nearly) empty slices, outside a head, the same over the
    slices with foreground (``foreground_slices``: the benchmark's rule,
    :func:`~medldm.problems.model_view.foreground_slices`)."""
    from medldm.metrics import mean_slice_scores
    from medldm.problems.model_view import foreground_slices

    scores = mean_slice_scores(estimate, truth)
    result: dict[str, Any] = {"psnr_db": scores["psnr"], "ssim": scores["ssim"]}
    inside = foreground_slices(truth)
    if 0 < len(inside) < len(truth):
        head = mean_slice_scores(estimate[inside], truth[inside])
        result["foreground_slices"] = {
            "n": len(inside),
            "psnr_db": head["psnr"],
            "ssim": head["ssim"],
        }
    return result


def _sampling_mask(physics: Any) -> np.ndarray | None:
    mask = getattr(physics, "mask", None)
    return None if mask is None else mask.detach().cpu().numpy()


def _observed_stack(view: ImageView, physics: Any) -> np.ndarray | None:
    """The pixels ``physics`` observes directly (inpainting), as a bool stack on the input
    grid like ``view.truth``; None for a measurement that observes none (k-space)."""
    from medldm.problems.calibration import observed_pixels

    observed = observed_pixels(physics, view.x.shape)
    if observed is None:
        return None
    stack = solver_stack(torch.from_numpy(observed.astype(np.float32)), view.volume_mode)
    return view.plan.from_working(stack) > 0.5


def _slab_positions(
    read: ImageInput, normalization: Any, prior: Any, start: int, count: int
) -> np.ndarray | None:
    """For a slice-conditioned prior and a volume: where each slab slice lies in the head,
    from the whole input volume's foreground extent (:func:`~medldm.problems.model_view.
    slice_positions`, on the input in the prior's range), so a central slab is told it is
    central."""
    if not getattr(prior, "slice_conditioned", False) or read.canonical.n_spatial != 3:
        return None
    volume = read.canonical.with_array(
        np.asarray(normalization.forward(read.array, clip=False), np.float32)
    )
    return slice_positions(volume, "axial")[start : start + count]


def _at_positions(prior: Any, positions: np.ndarray | None) -> Any:
    """The prior's slice-position context for the slab, a contiguous stack (a no-op
    without positions)."""
    if positions is None:
        return contextlib.nullcontext()
    where = torch.from_numpy(np.ascontiguousarray(positions))
    return prior.at_slice_positions(where, adjacent=True)
