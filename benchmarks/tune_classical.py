"""Tune the classical solvers per operator on TRAINING cases only, and write the presets.

For every benchmark operator (``configs/physics/<operator>.yaml``, the very presets the
benchmark runs, so mask, noise and geometry parameters match) this script simulates
measurements of a few training images exactly as the benchmark runner does (seed ``i``
for training case ``i``: ``factory.build`` -> ``factory.prepare_object`` ->
``physics(x, generator)``), runs a small grid of hyper-parameters, scores every estimate
with the benchmark's own scoring (:func:`medldm.metrics.scoring.score`: magnitude, data
range = ground truth max - min, whole image) and keeps the value with the best mean PSNR:

* ``tv``: the weight, over 8 log-spaced values per operator family (``n_iter``, the
  constraint and the step rule are fixed per family, see ``PLANS``);
* ``cg``: the number of iterations (early stopping regularises), read off one long run;
* ``richardson_lucy``: the number of iterations, read off one long run;
* ``l1_wavelet``: the weight (8 log-spaced values), the transform (``L1_WAVELETS``: Haar or
  Daubechies-4 over 4 levels, or Haar over 2 levels with the coarse band penalised) and
  the number of FISTA iterations (read off each run at a few checkpoints: early stopping
  and the weight trade against each other on ill-conditioned operators), jointly.

Training cases (never validation or test):

* MRI and inpainting operators: IXI T1 training subjects (``ixi_t1`` card), the central
  axial slice of ``--cases`` subjects spread over the training split, 128 x 128; with
  ``--card brain_mri_native``, the central axial slice of ``--cases`` series spread over the
  training patients of the ``brain_mri_native`` card at their own matrix and spacing
  (256-448 pixels a side), and the presets are written as ``<solver>_<operator>_native.yaml``
  (the bench and the app pick them for that data: ``domain: native``);
* CT operators: the MedNIST CT training blocks (HeadCT, ChestCT, AbdomenCT), ``--cases``
  images spread evenly over the three blocks, 64 x 64;
* microscopy: the training files of the ``microscopy`` card (central slice of 3D stacks,
  each channel / time point a case), taken round-robin over files, cropped or padded to
  256 x 256.

Writes ``configs/solver/tv_<operator>.yaml``, ``cg_<operator>.yaml``,
``richardson_lucy_<operator>.yaml`` and ``l1_wavelet_<operator>.yaml``, each with a comment
header naming the command, the training cases, the grid and its scores. ``--solvers``
limits the run to some of them. Run (TV/CG/RL: about 5-10 minutes on one CPU core;
l1-wavelet: 1-5 minutes per operator)::

    .venv/bin/python benchmarks/tune_classical.py
    .venv/bin/python benchmarks/tune_classical.py --operators mri_4x ct_sparse_30 --cases 4
    .venv/bin/python benchmarks/tune_classical.py --solvers l1_wavelet --operators mri_4x
    .venv/bin/python benchmarks/tune_classical.py --card brain_mri_native --solvers tv \
        --operators mri_4x mri_8x --cases 6
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from medldm.bench.cases.cards import card_cases
from medldm.bench.cases.case import Case
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.problems.configs import config_dir, load_physics
from medldm.problems.simulate import simulate as simulate_measurement
from medldm.solvers import ConjugateGradient, L1Wavelet, RichardsonLucy, TotalVariation
from medldm.utils.files import atomic_write_text

CG_CHECKPOINTS = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75, 100)
RL_CHECKPOINTS = (5, 10, 15, 20, 30, 50, 75, 100, 150, 200)
#: l1-wavelet transforms tried: (wavelet, levels, whether the coarsest band is penalised too).
#: The third, two Haar levels with the 4 x 4 block means shrunk as well, also rewards a
#: zero background (as SigPy's L1WaveletRecon does by shrinking every band).
L1_WAVELETS = (("haar", 4, False), ("db4", 4, False), ("haar", 2, True))
TUNED_SOLVERS = ("tv", "cg", "richardson_lucy", "l1_wavelet")
#: ``--card`` -> (the case family replacing "ixi", the preset name suffix).
CARDS = {"default": ("ixi", ""), "brain_mri_native": ("native", "_native")}


def weight_grid(low: float, high: float, n: int = 8) -> tuple[float, ...]:
    """``n`` log-spaced weights from ``low`` to ``high``, rounded to 3 significant digits."""
    return tuple(float(f"{w:.3g}") for w in np.geomspace(low, high, n))


@dataclass(frozen=True)
class Plan:
    """What to tune for one operator, on which training images."""

    cases: str  # "ixi", "mednist_ct" or "microscopy"
    tv_weights: tuple[float, ...]
    tv_n_iter: int = 300
    tv_constraint: str | None = None
    tune_cg: bool = True
    tune_rl: bool = False
    # MRI: the phase handlings TV is tuned over (the best one is kept)
    tv_phases: tuple[str | None, ...] = (None,)
    # l1-wavelet: tuned only where weights are given; n_iter read off at these checkpoints
    l1_weights: tuple[float, ...] = ()
    l1_checkpoints: tuple[int, ...] = (50, 100, 150)
    l1_constraint: str | None = None
    l1_phase: str | None = None


# TV weights are in units of y^2 per unit of TV: the ranges differ with the measurement
# scale (MRI k-space and inpainting: image scale; CT: line integrals ~ width x intensity).
# Real, non-negative objects get the non-negativity constraint; complex MRI images are
# solved either as a non-negative magnitude behind a low-resolution phase map from the
# k-space centre (TotalVariation(phase="lowres")) or as a complex image (phase=None): both
# are tuned and the better one on the training cases is kept (the constraint wins at 4x and
# multi-coil 8x, loses at single-coil 8x: benchmarks/results/tv_phase_check).
# l1-wavelet weights share TV's units (y^2 per unit of |W x|); the same phase handling for
# MRI, non-negativity elsewhere (applied after the wavelet shrinkage).
MRI = {
    "cases": "ixi",
    "tv_weights": weight_grid(1e-4, 0.0373, 10),  # 1.93x apart: 1e-4 ... 0.01, 0.0193, 0.0373
    "tv_phases": ("lowres", None),
    "l1_weights": weight_grid(1e-4, 1e-2),
    "l1_phase": "lowres",
}
INPAINTING = {
    "tv_n_iter": 1000,
    "tv_constraint": "nonnegative",
    "tune_cg": False,
    "l1_weights": weight_grid(1e-3, 1e-1),
    "l1_checkpoints": (100, 300, 600),
    "l1_constraint": "nonnegative",
}
CT = {
    "tv_n_iter": 500,
    "tv_constraint": "nonnegative",
    "l1_weights": weight_grid(3e-2, 3.0),
    "l1_checkpoints": (100, 200, 400),
    "l1_constraint": "nonnegative",
}
PLANS: dict[str, Plan] = {
    "mri_4x": Plan(**MRI),
    "mri_8x": Plan(**MRI),
    "mri_multicoil_4x": Plan(**MRI),
    "mri_multicoil_8x": Plan(**MRI),
    "mri_multicoil_8x_variable_density": Plan(**MRI),
    # CG on an inpainting mask stops at A^H y (A^H A is a projection): nothing to tune.
    # Missing pixels are filled by the TV term alone, which PDHG propagates slowly: more
    # iterations than for the other operators.
    "inpaint_box": Plan("ixi", weight_grid(1e-3, 1e-1), **INPAINTING),
    "inpaint_random": Plan("ixi", weight_grid(1e-3, 1e-1), **INPAINTING),
    "ct_sparse_30": Plan("mednist_ct", weight_grid(3e-3, 3.0), **CT),
    "ct_sparse_60": Plan("mednist_ct", weight_grid(3e-3, 3.0), **CT),
    "ct_limited_90": Plan("mednist_ct", weight_grid(3e-3, 3.0), **CT),
    "microscopy_deconv": Plan(
        "microscopy",
        weight_grid(1e-4, 1e-1),
        tv_constraint="nonnegative",
        tune_rl=True,
        l1_weights=weight_grid(1e-4, 1e-1),
        l1_constraint="nonnegative",
    ),
}


# --- training cases ------------------------------------------------------------------------
def _spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over a sequence (all of them if it is shorter)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _only_cases(items: Iterator[Any]) -> Iterator[Case]:
    for item in items:
        if isinstance(item, Case):
            yield item
        else:
            print(f"  skipped unreadable training case {item.case_id}: {item.error}")


def training_cases(kind: str, n: int) -> list[Case]:
    """The ``n`` training cases of one family (see the module docstring)."""
    if kind == "ixi":
        return _spread(list(_only_cases(card_cases("ixi_t1", "train", slices=1, size=128))), n)
    if kind == "native":
        return _spread(list(_only_cases(card_cases("brain_mri_native", "train", slices=1))), n)
    if kind == "mednist_ct":
        return _spread(list(_only_cases(card_cases("mednist", "train"))), n)
    if kind == "microscopy":
        by_file: dict[str, list[Case]] = {}
        for case in _only_cases(card_cases("microscopy", "train", slices=1, size=256)):
            by_file.setdefault(case.case_id.split("/")[0], []).append(case)
        round_robin = itertools.chain.from_iterable(itertools.zip_longest(*by_file.values()))
        return [case for case in round_robin if case is not None][:n]
    raise ValueError(f"unknown case family {kind!r}")


# --- simulation and scoring ------------------------------------------------------------------
@dataclass
class Measurement:
    case: Case
    seed: int
    physics: Any
    y: torch.Tensor


def simulate(operator: str, cases: Sequence[Case]) -> list[Measurement]:
    """Measurements as the benchmark runner simulates them (seed ``i`` for case ``i``)."""
    factory = load_physics(operator)
    out = []
    for seed, case in enumerate(cases):
        x = torch.from_numpy(case.image)[None, None]
        physics, y = simulate_measurement(x, factory, seed)
        out.append(Measurement(case, seed, physics, y))
    return out


def psnr_ssim(estimate: torch.Tensor, case: Case) -> tuple[float, float]:
    scores = score(to_image_array(estimate, case.shape), case.image)
    return scores["psnr"], scores["ssim"]


@dataclass
class GridResult:
    """Mean PSNR and SSIM over the training cases for every grid value."""

    parameter: str
    values: list[float | int] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)

    def add(self, value: float | int, scores: list[tuple[float, float]]) -> None:
        self.values.append(value)
        self.psnr.append(float(np.mean([s[0] for s in scores])))
        self.ssim.append(float(np.mean([s[1] for s in scores])))

    @property
    def best(self) -> int:
        """Index of the best mean PSNR (the first, i.e. smallest, on ties)."""
        return int(np.argmax(np.round(self.psnr, 6)))

    def at_edge(self) -> bool:
        return self.best in (0, len(self.values) - 1) and len(self.values) > 2

    def lines(self) -> list[str]:
        rows = [f"{self.parameter} -> mean PSNR dB / SSIM over the training cases:"]
        for i, value in enumerate(self.values):
            mark = "  <- chosen" if i == self.best else ""
            rows.append(f"  {value:>9g}: {self.psnr[i]:6.2f} / {self.ssim[i]:.4f}{mark}")
        if self.at_edge():
            rows.append("  (the best value is at the edge of the grid)")
        return rows


@dataclass
class PhaseGrids:
    """TV's weight grid for each MRI phase handling; the best PSNR over all is chosen."""

    grids: dict[str | None, GridResult]

    @property
    def best_phase(self) -> str | None:
        return max(self.grids, key=lambda p: round(self.grids[p].psnr[self.grids[p].best], 6))

    def lines(self) -> list[str]:
        if len(self.grids) == 1:
            return next(iter(self.grids.values())).lines()
        rows = []
        for phase, grid in self.grids.items():
            rows += [f"phase {phase}:", *grid.lines()]
        return [*rows, f"chosen phase: {self.best_phase}"]


def tune_tv(measurements: list[Measurement], plan: Plan) -> tuple[PhaseGrids, dict]:
    grids = {}
    for phase in plan.tv_phases:
        grids[phase] = GridResult("weight")
        for weight in plan.tv_weights:
            solver = TotalVariation(
                weight, plan.tv_n_iter, constraint=plan.tv_constraint, phase=phase
            )
            scores = [
                psnr_ssim(solver.solve(m.y, m.physics).estimate, m.case) for m in measurements
            ]
            grids[phase].add(weight, scores)
    result = PhaseGrids(grids)
    grid = grids[result.best_phase]
    params = {
        "weight": grid.values[grid.best],
        "n_iter": plan.tv_n_iter,
        "weight_z": 1.0,
        "constraint": plan.tv_constraint,
        "preconditioning": "auto",
        "step_ratio": 10.0,
        "tol": 0.0,
        "progress": False,
        "phase": result.best_phase,
    }
    return result, params


@dataclass
class JointGrid:
    """Mean PSNR and SSIM over the training cases for every (transform, weight, n_iter);
    a transform is labelled ``<wavelet>-L<levels>`` (``+c``: coarse band penalised)."""

    scores: dict[tuple[str, float, int], tuple[float, float]] = field(default_factory=dict)

    def add(self, key: tuple[str, float, int], scores: list[tuple[float, float]]) -> None:
        self.scores[key] = (
            float(np.mean([s[0] for s in scores])),
            float(np.mean([s[1] for s in scores])),
        )

    @property
    def best(self) -> tuple[str, float, int]:
        """The key of the best mean PSNR (the first in grid order on ties)."""
        return max(self.scores, key=lambda key: round(self.scores[key][0], 6))

    def lines(self) -> list[str]:
        columns = sorted({(w, n) for w, _, n in self.scores}, key=lambda c: (c[0], c[1]))
        weights = sorted({weight for _, weight, _ in self.scores})
        rows = [
            "transform/n_iter x weight -> mean PSNR dB over the training cases:",
            "  " + " " * 9 + "".join(f"{f'{w}/{n}':>12}" for w, n in columns),
        ]
        for weight in weights:
            cells = "".join(f"{self.scores[(w, weight, n)][0]:12.2f}" for w, n in columns)
            rows.append(f"  {weight:>9g}{cells}")
        wavelet, weight, n_iter = self.best
        psnr_db, ssim_value = self.scores[self.best]
        rows.append(
            f"chosen: transform {wavelet}, weight {weight:g}, n_iter {n_iter}: "
            f"{psnr_db:.2f} dB / SSIM {ssim_value:.4f}"
        )
        if weight in (weights[0], weights[-1]) and len(weights) > 2:
            rows.append("  (the best weight is at the edge of the grid)")
        return rows


def tune_l1_wavelet(measurements: list[Measurement], plan: Plan) -> tuple[JointGrid, dict]:
    """Transform x weight, each run once to the last checkpoint and scored at every one
    (FISTA's iterates do not depend on ``n_iter``; the random shifts come from the seed)."""
    grid = JointGrid()
    labels = {}
    for (wavelet, levels, coarse), weight in itertools.product(L1_WAVELETS, plan.l1_weights):
        label = f"{wavelet}-L{levels}{'+c' if coarse else ''}"
        labels[label] = (wavelet, levels, coarse)
        per_checkpoint: dict[int, list[tuple[float, float]]] = {c: [] for c in plan.l1_checkpoints}
        for m in measurements:
            seen: dict[int, tuple[float, float]] = {}

            def keep(
                step: int,
                x: torch.Tensor,
                m: Measurement = m,
                seen: dict = seen,
                wanted: tuple[int, ...] = plan.l1_checkpoints,
            ) -> None:
                if step + 1 in wanted:
                    seen[step + 1] = psnr_ssim(x, m.case)

            solver = L1Wavelet(
                weight,
                max(plan.l1_checkpoints),
                wavelet=wavelet,
                levels=levels,
                threshold_coarse=coarse,
                constraint=plan.l1_constraint,
                phase=plan.l1_phase,
            )
            generator = torch.Generator().manual_seed(m.seed)
            rec = solver.solve(m.y, m.physics, generator=generator, callback=keep)
            final = psnr_ssim(rec.estimate, m.case)
            for c in plan.l1_checkpoints:
                per_checkpoint[c].append(seen.get(c, final))
        for c in plan.l1_checkpoints:
            grid.add((label, weight, c), per_checkpoint[c])
    label, weight, n_iter = grid.best
    wavelet, levels, coarse = labels[label]
    params = {
        "weight": weight,
        "n_iter": n_iter,
        "wavelet": wavelet,
        "levels": levels,
        "random_shift": True,
        "threshold_coarse": coarse,
        "constraint": plan.l1_constraint,
        "phase": plan.l1_phase,
        "tol": 0.0,
        "progress": False,
    }
    return grid, params


def tune_iterations(
    measurements: list[Measurement],
    make_solver: Callable[[int], Any],
    checkpoints: Sequence[int],
) -> GridResult:
    """Score the iterates of one long run at each checkpoint (iteration count)."""
    per_checkpoint: dict[int, list[tuple[float, float]]] = {c: [] for c in checkpoints}
    for m in measurements:
        seen: dict[int, tuple[float, float]] = {}

        def keep(step: int, x: torch.Tensor, m: Measurement = m, seen: dict = seen) -> None:
            if step + 1 in per_checkpoint:
                seen[step + 1] = psnr_ssim(x, m.case)

        rec = make_solver(max(checkpoints)).solve(m.y, m.physics, callback=keep)
        final = psnr_ssim(rec.estimate, m.case)
        for c in checkpoints:  # a run stopped early by its tolerance keeps its last iterate
            per_checkpoint[c].append(seen.get(c, final))
    grid = GridResult("n_iter")
    for c in checkpoints:
        grid.add(c, per_checkpoint[c])
    return grid


# --- presets ---------------------------------------------------------------------------------
def preset_text(target: str, params: dict, header: list[str]) -> str:
    body = yaml.safe_dump({"_target_": target, **params}, sort_keys=False)
    return "".join(f"# {line}\n" if line else "#\n" for line in header) + body


def write_preset(folder: Path, name: str, target: str, params: dict, header: list[str]) -> Path:
    path = folder / f"{name}.yaml"
    atomic_write_text(path, preset_text(target, params, header), overwrite=True)
    return path


def header_lines(
    command: str,
    operator: str,
    cases: list[Case],
    grid: GridResult | JointGrid | PhaseGrids,
    seconds: float,
) -> list[str]:
    listed = ", ".join(case.case_id for case in cases)
    return [
        "Tuned on training cases only by benchmarks/tune_classical.py; rerun it, do not edit.",
        f"Command: {command}",
        f"Operator: {operator} (configs/physics/{operator}.yaml); seed i for case i.",
        f"Training cases ({cases[0].dataset}, {len(cases)}): {listed}",
        "Scoring: the benchmark's (magnitude, data_range = ground truth max - min, whole image).",
        *grid.lines(),
        f"Tuning time: {seconds:.0f} s on {torch.get_num_threads()} CPU thread(s).",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operators", nargs="+", default=list(PLANS), choices=list(PLANS))
    parser.add_argument("--cases", type=int, default=8, help="training cases per operator")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--solvers",
        nargs="+",
        default=list(TUNED_SOLVERS),
        choices=list(TUNED_SOLVERS),
        help="which solvers to tune (default: all)",
    )
    parser.add_argument(
        "--tv-phase",
        choices=("plan", "lowres", "none"),
        default="plan",
        help="MRI TV phase handling: the plan's (both, the better kept), or only one",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=None, help="default: the configs/solver folder"
    )
    parser.add_argument(
        "--card",
        choices=list(CARDS),
        default="default",
        help="brain_mri_native: tune the MRI and inpainting operators on its training "
        "patients at their own resolution and write <solver>_<operator>_native.yaml",
    )
    args = parser.parse_args(argv)
    family, suffix = CARDS[args.card]
    torch.set_num_threads(args.threads)
    folder = args.output_dir or config_dir() / "solver"
    command = "python benchmarks/tune_classical.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    command = command.strip()
    cases_cache: dict[str, list[Case]] = {}
    started_all = time.perf_counter()
    for operator in args.operators:
        plan = PLANS[operator]
        if suffix and plan.cases != "ixi":
            raise SystemExit(f"--card {args.card}: {operator} is not an MRI/inpainting operator")
        plan = replace(plan, cases=family) if plan.cases == "ixi" else plan
        name = f"{operator}{suffix}"
        if args.tv_phase != "plan" and len(plan.tv_phases) > 1:
            plan = replace(plan, tv_phases=(None if args.tv_phase == "none" else args.tv_phase,))
        if plan.cases not in cases_cache:
            cases_cache[plan.cases] = training_cases(plan.cases, args.cases)
        cases = cases_cache[plan.cases]
        measurements = simulate(operator, cases)
        print(f"\n== {operator}: {len(cases)} training cases ({cases[0].dataset})")

        if "tv" in args.solvers:
            started = time.perf_counter()
            grid, params = tune_tv(measurements, plan)
            header = header_lines(command, operator, cases, grid, time.perf_counter() - started)
            path = write_preset(
                folder, f"tv_{name}", "medldm.solvers.tv.TotalVariation", params, header
            )
            print("\n".join(grid.lines()), f"\n  wrote {path}")

        if plan.l1_weights and "l1_wavelet" in args.solvers:
            started = time.perf_counter()
            joint, params = tune_l1_wavelet(measurements, plan)
            header = header_lines(command, operator, cases, joint, time.perf_counter() - started)
            path = write_preset(
                folder,
                f"l1_wavelet_{name}",
                "medldm.solvers.l1_wavelet.L1Wavelet",
                params,
                header,
            )
            print("\n".join(joint.lines()), f"\n  wrote {path}")

        if plan.tune_cg and "cg" in args.solvers:
            started = time.perf_counter()
            grid = tune_iterations(
                measurements, lambda n: ConjugateGradient(n_iter=n, tol=1e-6), CG_CHECKPOINTS
            )
            params = {
                "n_iter": grid.values[grid.best],
                "tol": 1e-6,
                "l2_weight": 0.0,
                "progress": False,
            }
            header = header_lines(command, operator, cases, grid, time.perf_counter() - started)
            path = write_preset(
                folder, f"cg_{name}", "medldm.solvers.cg.ConjugateGradient", params, header
            )
            print("\n".join(grid.lines()), f"\n  wrote {path}")

        if plan.tune_rl and "richardson_lucy" in args.solvers:
            started = time.perf_counter()
            grid = tune_iterations(measurements, lambda n: RichardsonLucy(n_iter=n), RL_CHECKPOINTS)
            params = {
                "n_iter": grid.values[grid.best],
                "eps": 1e-12,
                "normalize": True,
                "progress": False,
            }
            header = header_lines(command, operator, cases, grid, time.perf_counter() - started)
            path = write_preset(
                folder,
                f"richardson_lucy_{operator}",
                "medldm.solvers.richardson_lucy.RichardsonLucy",
                params,
                header,
            )
            print("\n".join(grid.lines()), f"\n  wrote {path}")
    print(f"\nTotal: {time.perf_counter() - started_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
