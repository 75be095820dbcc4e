"""The methods of a measured run (:class:`MeasuredMethods`): the preset's LDM solver, on the
prior's grid through :class:`~medldm.recon.kspace_prior_grid.PriorGridMRI`, and the classical
solvers on the k-space's own grid, all on the *same* scaled k-space, with the presets tuned
for the closest simulated operator (``mri[_multicoil]_4x|8x``, ``_variable_density`` for
a 2D sampling pattern); and the k-space hold-out
that scores them without a reference (:func:`holdout_scores`).

Solvers that reconstruct a real magnitude behind a phase map (the LDM solvers, TV) get the
phase of the CG-SENSE estimate: their own low-resolution phase (a narrow k-space window)
cannot follow the coil-combined phase of measured multi-coil images.

Example
-------
>>> operator_name(n_coils=8, acceleration=4.0), operator_name(n_coils=1, acceleration=7.5)
('mri_multicoil_4x', 'mri_8x')
>>> operator_name(n_coils=8, acceleration=8.04, lines=False)
'mri_multicoil_8x_variable_density'

"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medldm.physics.base import LinearPhysics
from medldm.physics.coils import calibration_region
from medldm.physics.phase import PhaseConstrained
from medldm.problems.configs import VARIABLE_DENSITY_SUFFIX
from medldm.problems.grid import GridPlan
from medldm.recon.kspace_prior_grid import PriorGridMRI
from medldm.recon.presets import Preset

#: The final solves on the measured grid when the prior ran on another (``grid_solve=``).
GRID_SOLVES = ("tv", "least_squares", "none")


@dataclass
class Solved:
    """One method's estimate on the k-space's own grid and how it was made."""

    estimate: torch.Tensor
    reconstruction: Any
    seconds: float
    source: str
    magnitude: bool
    solver: Any = None


@dataclass
class MeasuredMethods:
    """The LDM solver and the classical solvers of a measured run, solvable on any mask
    (the whole measurement, or the kept part of a hold-out split)."""

    preset: Preset
    prior: Any
    plan: GridPlan
    operator: str
    phase: str
    classical: list[str]
    device: torch.device
    seed: int
    grid_solve: str = "tv"
    # per-scan weights (:mod:`medldm.recon.kspace_weights`) by solver name: a classical
    # solver's ``weight``, the LDM's final-step weight
    weights: dict[str, float] = field(default_factory=dict)
    # the preset's LDM solver: a plain field, so the records read it without a call here
    ldm_name: str = field(init=False)

    def __post_init__(self) -> None:
        self.ldm_name = str(self.preset.solver)

    def build(self, name: str, options: dict[str, Any] | None = None) -> tuple[Any, str, bool]:
        """The solver preset tuned for the operator; a magnitude solver (``phase="lowres"``)
        is rebuilt without its own phase estimate, as it gets the CG-SENSE phase."""
        from medldm.problems.configs import solver_for_operator

        domain = self.preset.domain
        solver, source = solver_for_operator(name, self.operator, options, domain)
        magnitude = self.phase == "cg" and getattr(solver, "phase", None) == "lowres"
        if magnitude:
            solver, source = solver_for_operator(
                name, self.operator, {**(options or {}), "phase": None}, domain
            )
        return solver, source, magnitude

    def solve(self, y: torch.Tensor, physics: LinearPhysics) -> dict[str, Solved]:
        """Every method on ``y``: the LDM (on the prior's grid) first, then the classical
        ones (CG-SENSE always runs: it gives the magnitude solvers their phase)."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        cg = self._timed("cg", None, y, physics, None, generator)
        phase_native = unit_phase(cg.estimate)
        solved = {self.ldm_name: self.solve_ldm(y, physics, cg, generator)}
        for name in self.classical:
            if name == "cg":
                solved[name] = cg
            else:
                solved[name] = self.solve_one(name, y, physics, phase_native, generator)
        return solved

    def solve_ldm(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        cg: Solved,
        generator: torch.Generator,
        options: dict[str, Any] | None = None,
    ) -> Solved:
        """The LDM solver on the prior's grid (behind the phase of the CG-SENSE estimate
        ``cg``), back on the measured grid; ``options`` over the preset's solver options,
        which carry its per-scan final weight (``weights``) unless they say otherwise."""
        solver_options = {**self.preset.solver_options, **self.ldm_weight_options()}
        solver_options.update(options or {})
        phase_native = unit_phase(cg.estimate)
        working = PriorGridMRI(physics, self.plan).to(self.device)
        with torch.no_grad():
            phase_working = unit_phase(working.from_native(cg.estimate))
        ldm = self._timed(self.ldm_name, solver_options, y, working, phase_working, generator)
        with torch.no_grad():
            ldm.estimate = working.to_native(ldm.estimate)
        if self.plan.resampled and self.grid_solve != "none":
            start = time.perf_counter()
            ldm.estimate = self.on_measured_grid(y, physics, ldm, phase_native)
            ldm.seconds += time.perf_counter() - start
        return ldm

    def ldm_final_weight(self) -> tuple[str, float] | None:
        """``(option, value)`` of the LDM preset's final-step weight (``final_tv_weight``
        or ``final_wavelet_weight``, whichever is > 0); None when it has neither."""
        solver = self.build(self.ldm_name, dict(self.preset.solver_options))[0]
        for option in ("final_tv_weight", "final_wavelet_weight"):
            value = float(getattr(solver, option, 0.0) or 0.0)
            if value > 0:
                return option, value
        return None

    def ldm_weight_options(self) -> dict[str, float]:
        """The LDM's per-scan final weight as a solver option (empty: the preset's)."""
        if self.ldm_name not in self.weights:
            return {}
        final = self.ldm_final_weight()
        return {} if final is None else {final[0]: self.weights[self.ldm_name]}

    def solve_one(
        self,
        name: str,
        y: torch.Tensor,
        physics: LinearPhysics,
        phase: torch.Tensor | None,
        generator: torch.Generator,
        options: dict[str, Any] | None = None,
    ) -> Solved:
        """One classical method on ``y`` (a magnitude solver behind ``phase``), with its
        per-scan weight (``weights``) unless ``options`` say otherwise."""
        if options is None and name in self.weights:
            options = {"weight": self.weights[name]}
        return self._timed(name, options, y, physics, phase, generator)

    def on_measured_grid(
        self, y: torch.Tensor, physics: LinearPhysics, ldm: Solved, phase: torch.Tensor
    ) -> torch.Tensor:
        """The prior's estimate, Fourier-resampled from the prior's grid, anchors a final
        data-consistent solve on the measured grid, so that the output holds what the
        measured k-space holds beyond the prior's grid: ``grid_solve="tv"``,
        ``argmin 1/2||A x - y||^2 + lam/2||x - anchor||^2 + tv TV(x)`` with the LDM
        preset's ``final_tv_weight`` (:func:`~medldm.solvers.anchored_tv.anchored_tv`; with
        its ``final_wavelet_weight`` instead, when that is the preset's final step,
        :func:`~medldm.solvers.anchored_wavelet.anchored_l1_wavelet`), or
        ``"least_squares"``, the same without a regulariser (CG; what the data leaves open
        stays at the anchor); ``lam = final_dc_weight * ||A^H A||``."""
        from medldm.solvers.anchored_tv import anchored_tv
        from medldm.solvers.anchored_wavelet import anchored_l1_wavelet

        weight = float(getattr(ldm.solver, "final_dc_weight", 0.01))
        tv_weight = float(getattr(ldm.solver, "final_tv_weight", 0.0))
        wavelet_weight = float(getattr(ldm.solver, "final_wavelet_weight", 0.0))
        with torch.no_grad():
            if ldm.magnitude:  # a real magnitude behind the CG-SENSE phase
                solver_physics = PhaseConstrained(physics, phase)
                anchor = (ldm.estimate * torch.conj(phase)).real.clamp_min(0).to(torch.float32)
            else:
                solver_physics, anchor = physics, ldm.estimate
            lam = weight * max(solver_physics.norm(anchor) ** 2, 1e-12)
            if self.grid_solve == "tv" and ldm.magnitude and wavelet_weight > 0:
                estimate = anchored_l1_wavelet(y, solver_physics, anchor, weight, wavelet_weight)
            elif self.grid_solve == "tv" and ldm.magnitude:
                estimate = anchored_tv(y, solver_physics, anchor, weight, tv_weight)
            else:
                estimate = solver_physics.prox_l2(anchor, y, lam, n_iter=50)
            if ldm.magnitude:
                return estimate.clamp_min(0).to(phase.dtype) * phase
        return estimate

    def _timed(
        self,
        name: str,
        options: dict[str, Any] | None,
        y: torch.Tensor,
        physics: LinearPhysics,
        phase: torch.Tensor | None,
        generator: torch.Generator,
    ) -> Solved:
        """Solve with one method; a magnitude solver sees ``physics`` behind ``phase``."""
        solver, source, magnitude = self.build(name, options)
        magnitude = magnitude and phase is not None
        prior = self.prior if name == self.ldm_name else None
        start = time.perf_counter()
        solver_physics = PhaseConstrained(physics, phase) if magnitude else physics
        rec = solver.solve(y, solver_physics, prior, generator=generator)
        estimate = rec.estimate.to(phase.dtype) * phase if magnitude else rec.estimate
        return Solved(estimate, rec, time.perf_counter() - start, source, magnitude, solver)


@dataclass
class KSpaceSolved:
    """``solve``: every method's estimate of the same measurement."""

    methods: MeasuredMethods
    solved: dict[str, Solved]  # by method name, the LDM solver first
    # the per-scan weight search's record (:mod:`medldm.recon.kspace_weights`), if it ran
    weight_search: dict[str, Any] | None = None


def holdout_scores(
    methods: MeasuredMethods,
    y: torch.Tensor,
    physics: LinearPhysics,
    mask: np.ndarray,
    n_splits: int,
    progress: bool,
) -> dict[str, Any] | None:
    """k-space hold-out (:mod:`medldm.physics.holdout`): every method reconstructs from 90 %
    of the samples, ``n_splits`` seeded splits, and is scored on the other 10 %."""
    from tqdm import tqdm

    from medldm.physics.holdout import holdout_error, holdout_splits, line_axis, summarize

    if n_splits <= 0:
        return None
    centre = calibration_region(mask)
    splits = holdout_splits(
        mask, n_splits=n_splits, fraction=0.1, keep_centre=centre, seed=methods.seed
    )
    errors: dict[str, list[float]] = {}
    for split in tqdm(splits, desc="k-space hold-out", disable=not progress):
        kept = split.kept.to(y.device)
        solved = methods.solve(y * kept, physics.with_mask(kept))
        for name, method in solved.items():
            error = holdout_error(physics, method.estimate, y, split.held.to(y.device))
            errors.setdefault(name, []).append(error)
    unit = "locations" if line_axis(torch.as_tensor(mask)) is None else "whole lines"
    result = {
        "description": f"each method reconstructed from the kept part of {n_splits} seeded "
        f"splits that hold out {100 * splits[0].held_fraction:.1f} % of the sampled {unit} "
        f"(drawn uniformly outside the {centre[0]}x{centre[1]} calibration centre), scored "
        "by ||held-out k-space - prediction|| / ||held-out k-space|| (lower is better)",
        "methods": {name: summarize(values) for name, values in errors.items()},
    }
    classical = [name for name in errors if name != methods.ldm_name]
    if classical:  # paired over the same splits: the split-to-split spread cancels
        best = min(classical, key=lambda name: float(np.mean(errors[name])))
        ldm = np.asarray(errors[methods.ldm_name])
        result["best_classical"] = best
        result["ldm_minus_best_classical"] = summarize(ldm - np.asarray(errors[best]))
    return result


def operator_name(n_coils: int, acceleration: float, lines: bool = True) -> str:
    """The simulated operator whose tuned solver presets fit this measurement best:
    phase-encode lines (``lines``) or a 2D pattern over both in-plane k-space axes
    (Poisson disc, variable density: ``_variable_density``, falling back to the line
    operator's presets where none is tuned for it)."""
    factor = 4 if acceleration < math.sqrt(32) else 8
    pattern = "" if lines else VARIABLE_DENSITY_SUFFIX
    return f"mri_{'multicoil_' if n_coils > 1 else ''}{factor}x{pattern}"


def measured_operator(n_coils: int, mask: np.ndarray) -> str:
    """:func:`operator_name` of a measurement: its coils, its mask's acceleration and
    whether the mask samples lines."""
    return operator_name(n_coils, 1.0 / float(np.mean(mask)), is_line_pattern(mask))


def is_line_pattern(mask: np.ndarray) -> bool:
    """Whether a 2D sampling mask samples lines: the same readout samples on every sampled
    phase-encode line (the mask is the outer product of its sampled rows and columns, so
    a partial echo, whose readout rows are missing on every line, still counts), as
    against a 2D pattern such as a Poisson disc.

    >>> lines = np.zeros((6, 8), bool); lines[:, [0, 3, 4]] = True
    >>> echo = lines.copy(); echo[:2] = False  # partial echo: the first readout rows missing
    >>> is_line_pattern(lines), is_line_pattern(lines.T), is_line_pattern(echo)
    (True, True, True)
    >>> is_line_pattern(np.eye(6, dtype=bool))
    False
    """
    mask = np.asarray(mask, dtype=bool)
    return bool(np.array_equal(mask, np.outer(mask.any(axis=1), mask.any(axis=0))))


def classical_names(preset: Preset, classical: Sequence[str] | None) -> list[str]:
    """The preset's baseline first, then CG-SENSE and l1-wavelet (where installed)."""
    if classical is None:
        from medldm.problems.configs import preset_path
        from medldm.solvers.registry import SOLVERS

        classical = ["cg"]
        if "l1_wavelet" in SOLVERS or preset_path("solver", "l1_wavelet") is not None:
            classical.append("l1_wavelet")
    names = [preset.baseline, *classical]
    return list(dict.fromkeys(str(n) for n in names if n))


def unit_phase(image: torch.Tensor) -> torch.Tensor:
    """``exp(i angle(image))`` (complex), 1 where the image is (numerically) zero."""
    image = image.detach()
    if not image.is_complex():
        image = image.to(torch.complex64)
    magnitude = image.abs()
    floor = 1e-6 * float(magnitude.max()) or 1e-30
    return torch.where(magnitude > floor, image / magnitude.clamp_min(floor), 1.0 + 0.0j).to(
        image.dtype
    )
