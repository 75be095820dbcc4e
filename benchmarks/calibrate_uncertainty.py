"""Calibrate a latent solver's posterior std on VALIDATION cases, then score it on TEST cases.

For each operator and each number of posterior samples K (``--n-samples 4 8 16``), the
solver preset (``configs/solver/<solver>_<operator>.yaml``, with ``n_samples=K`` and any
``--set`` options) reconstructs the validation cases of the prior's data card, measured as
the tuning scripts measure them (``medldm.problems.simulate``, seed ``i`` for case ``i``). A
std scale per nominal level (50 %, 90 %) is fitted on them, conformal style
(:mod:`medldm.problems.calibration`: the level quantile of ``|error| / std`` over their
foreground pixels, for inpainting the foreground pixels it leaves unobserved; every case's
split is read off the data card and anything but validation is refused), and stored in
``<calibration-dir>/<solver>_<operator>.yaml``. Then the test cases are reconstructed and
scored, uncalibrated and calibrated: mean over cases of the coverage of ``estimate +- z
std`` and of the samples' quantile interval (:mod:`medldm.metrics.uncertainty`), the
Spearman correlation of std with ``|error|``, PSNR, and seconds per case. Results: a table
on stdout, ``<name>.json`` (every case), ``<name>.md`` and one reliability figure per
operator under ``--output``.

The issue-17 study (IXI test at MRI 4x/8x, MedNIST CT 30 views, K = 4, 8, 16)::

    .venv/bin/python benchmarks/calibrate_uncertainty.py --operators mri_4x mri_8x \\
        ct_sparse_30 --n-samples 4 8 16 --precision bf16

The native presets (``--domain native``: the brain_mri_native validation patient, central
slices of each series, the ``brain_native_2d`` prior; one operator per core)::

    .venv/bin/python benchmarks/calibrate_uncertainty.py --domain native --operators mri_4x \
        --n-samples 4 --slices 3 --threads 1 --name native_k4_mri_4x

Whole volumes (``--domain volume``: the IXI validation subjects kept whole, 3D k-space with
the ``latent_dds_mri_{4x,8x}_volume`` presets, or each slice its own 2D k-space with the
``latent_dds_mri_{4x,8x}_multislice`` presets; std and coverage over each volume's
foreground; the fits record that their cases were volumes, and only a slab coupled along z
takes them)::

    .venv/bin/python benchmarks/calibrate_uncertainty.py --domain volume --operators mri_4x \
        --n-samples 4 --threads 2 --name volume_k4_mri_4x
    .venv/bin/python benchmarks/calibrate_uncertainty.py --domain volume \
        --operators mri_4x_multislice --n-samples 4 --threads 2 --name multislice_k4_mri_4x

A smoke run (few cases and steps; its fits go to the output folder, not to configs/, since
``--set`` changes the preset)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_uncertainty.py \\
        --operators mri_4x --n-samples 4 --validation-cases 2 --test-cases 2 --slices 1 \\
        --set n_steps=10 --precision bf16 --name smoke_mri_4x
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.bench.cases.cards import card_cases
from medldm.bench.cases.case import Case
from medldm.bench.figures import reliability_figure
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.metrics.uncertainty import (
    LEVELS,
    STD_BIN_EDGES,
    ReliabilityCurve,
    coverage,
    level_name,
    reliability_curve,
)
from medldm.models.prior import load_prior
from medldm.problems.calibration import (
    CalibrationCase,
    StdCalibration,
    calibration_dir,
    fit_calibration,
    observed_pixels,
    preset_solver_config,
    roi_name,
    save_calibration,
    score_uncertainty,
    split_of_case,
    uncertainty_roi,
)
from medldm.problems.configs import MULTISLICE_SUFFIX, load_physics, solver_for_operator
from medldm.problems.simulate import simulate

REPO = Path(__file__).resolve().parents[1]

#: operator -> (prior, data card, card options for card_cases): the prior the app's presets
#: and the ``ldm`` bench run for the operator (the lossless-codec prior for MRI at 2 mm)
SETUPS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mri_4x": ("brain_t1_lossless_2d", "ixi_t1", {"size": 128}),
    "mri_8x": ("brain_t1_lossless_2d", "ixi_t1", {"size": 128}),
    "mri_multicoil_4x": ("brain_t1_lossless_2d", "ixi_t1", {"size": 128}),
    "mri_multicoil_8x": ("brain_t1_lossless_2d", "ixi_t1", {"size": 128}),
    "inpaint_box": ("brain_t1_2d", "ixi_t1", {"size": 128}),
    "ct_sparse_30": ("ct_2d", "mednist", {}),
    "ct_sparse_60": ("ct_2d", "mednist", {}),
}
#: ``--domain native``: the brain MRI at the scanner's resolution (its own matrix, no
#: resampling), with the native prior and the ``<solver>_<operator>_native`` presets
NATIVE_SETUPS: dict[str, tuple[str, str, dict[str, Any]]] = {
    operator: ("brain_native_2d", "brain_mri_native", {})
    for operator in (
        "mri_4x",
        "mri_8x",
        "mri_multicoil_4x",
        "mri_multicoil_8x",
        "mri_multicoil_8x_variable_density",
        "inpaint_box",
    )
}


#: ``--domain volume``: whole IXI volumes (one 3D case per subject), a 2D brain prior on
#: their axial slices, with the lossless-codec prior the app's presets run: in 3D k-space
#: (``mri_4x``, ``mri_8x``; the ``<solver>_<operator>_volume`` presets, as ``mri_brain_3d``
#: and the ``ldm_volume`` bench) or slice by slice (``mri_{4x,8x}_multislice``; their own
#: presets, as the app's slab in ``mri_brain_4x`` / ``mri_brain_8x`` and ``ldm_multislice``)
VOLUME_SETUPS: dict[str, tuple[str, str, dict[str, Any]]] = {
    operator: ("brain_t1_lossless_2d", "ixi_t1", {"size": 128})
    for operator in ("mri_4x", "mri_8x", "mri_4x_multislice", "mri_8x_multislice")
}


def setups(domain: str | None) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """The operator -> (prior, card, card options) table of a tuning domain."""
    return {"native": NATIVE_SETUPS, "volume": VOLUME_SETUPS}.get(domain or "", SETUPS)


def preset_domain(domain: str | None, operator: str) -> str | None:
    """The tuning domain whose solver presets an operator takes: a multislice operator has
    presets of its own (``<solver>_<operator>``, as the app's slab and the bench run it)."""
    return None if operator.endswith(MULTISLICE_SUFFIX) else domain


def _spread(items: Sequence[Any], n: int | None) -> list[Any]:
    """``n`` items spread evenly over a sequence (all when ``n`` is None or larger)."""
    if n is None or len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def load_cases(
    card: str, split: str, options: dict, slices: int | None, per_class: int, n: int | None
):
    """The readable, non-constant cases of one split (IXI: ``slices`` central slices per
    subject, or each whole volume when None; MedNIST: the first ``per_class`` images of
    each CT class), ``n`` spread evenly."""
    extra = {"per_class": per_class} if card == "mednist" else {"slices": slices}
    cases = [
        c
        for c in card_cases(card, split, **options, **extra)
        if isinstance(c, Case) and float(np.ptp(c.image)) > 0.0
    ]
    return _spread(cases, n)


def solve_case(solver: Any, factory: Any, prior: Any, case: Case, seed: int, device: str) -> dict:
    """Measure ``case`` (seed ``seed``), reconstruct it, and return its arrays and timing."""
    x = torch.from_numpy(case.image).to(device)[None, None]
    physics, y = simulate(x, factory, seed, torch.device(device))
    generator = torch.Generator(device=device).manual_seed(seed)
    start = time.perf_counter()
    with torch.inference_mode():
        rec = solver.solve(y, physics, prior, generator=generator)
    seconds = time.perf_counter() - start
    estimate = to_image_array(rec.estimate, case.shape)
    std = to_image_array(rec.std, case.shape)
    samples = np.stack([to_image_array(s, case.shape) for s in rec.samples])
    observed = observed_pixels(physics, x.shape)
    return {
        "estimate": estimate,
        "std": std,
        "samples": samples,
        "seconds": seconds,
        "roi": uncertainty_roi(case.image, observed),
        "roi_name": roi_name(observed),
    }


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return float(np.mean(finite)) if finite else float("nan")


def run_operator(
    operator: str, k: int, args: argparse.Namespace, prior: Any, command: str
) -> tuple[dict, StdCalibration, ReliabilityCurve | None]:
    prior_name, card, card_options = setups(args.domain)[operator]
    options = {**args.options, "n_samples": k}
    domain = preset_domain(args.domain, operator)
    solver, preset = solver_for_operator(args.solver, operator, options, domain=domain)
    factory = load_physics(operator)
    device = str(prior.device)

    slices = None if args.domain == "volume" else args.slices  # volumes: each kept whole
    validation = load_cases(
        card, "validation", card_options, slices, args.per_class, args.validation_cases
    )
    fitting = []
    for seed, case in enumerate(validation):
        solved = solve_case(solver, factory, prior, case, seed, device)
        fitting.append(
            CalibrationCase(
                case.case_id,
                split_of_case(card, case.case_id),  # from the card, not from what was asked
                case.image,
                solved["estimate"],
                solved["std"],
                solved["samples"],
                dataset=case.dataset,
                mask=solved["roi"],
            )
        )
        print(f"  {operator} K={k} validation {case.case_id}: {solved['seconds']:.1f} s")
    fit = fit_calibration(
        fitting,
        solver=args.solver,
        operator=operator,
        solver_preset=preset,
        solver_config=preset_solver_config(preset, options),
        prior=prior,
        command=command,
        roi=solved["roi_name"],  # the operator's: the same for every case
    )
    path = save_calibration(fit, args.calibration_dir)
    print(f"  fitted: {fit.describe()} -> {path}")

    test = load_cases(card, "test", card_options, slices, args.per_class, args.test_cases)
    rows, curve = [], None
    for seed, case in enumerate(test):
        split = split_of_case(card, case.case_id)
        if split != "test":
            raise SystemExit(f"{case.case_id} is in the {split} split, not test")
        solved = solve_case(solver, factory, prior, case, seed, device)
        roi = solved["roi"]
        columns = score_uncertainty(
            solved["estimate"],
            case.image,
            solved["std"],
            solved["samples"],
            calibration=fit,
            mask=roi,
        )
        for level in LEVELS:
            lower, upper = fit.sample_interval(solved["samples"], level)
            columns[f"coverage_{level_name(level)}_samples_calibrated"] = coverage(
                case.image, lower, upper, mask=roi
            )
        case_curve = reliability_curve(
            solved["estimate"], case.image, solved["std"], mask=roi, bin_edges=STD_BIN_EDGES
        )
        curve = case_curve if curve is None else curve.merge(case_curve)
        scores = score(solved["estimate"], case.image)
        rows.append(
            {
                "case": case.case_id,
                "split": split,
                "seed": seed,
                "psnr": scores["psnr"],
                "seconds": solved["seconds"],
                **columns,
            }
        )
        print(
            f"  {operator} K={k} test {case.case_id}: {scores['psnr']:.2f} dB, "
            f"coverage_90 {columns['coverage_90']:.3f} -> {columns['coverage_90_calibrated']:.3f}"
            f", {solved['seconds']:.1f} s"
        )
    keys = [k_ for k_ in rows[0] if k_.startswith(("coverage_", "std_error", "psnr", "seconds"))]
    summary = {
        "operator": operator,
        "n_samples": k,
        "solver": args.solver,
        "solver_preset": preset,
        "options": args.options,
        "prior": prior_name,
        "precision": prior.precision,
        "roi": fit.roi,
        "validation_cases": [c["case"] for c in fit.cases],
        "test_cases": [r["case"] for r in rows],
        "std_scale": {level_name(lv): f.std_scale for lv, f in fit.levels.items()},
        "sample_scale": {level_name(lv): f.sample_scale for lv, f in fit.levels.items()},
        "validation_coverage_uncalibrated": {
            level_name(lv): f.uncalibrated for lv, f in fit.levels.items()
        },
        "test_mean": {key: _mean([r[key] for r in rows]) for key in keys},
        "cases": rows,
        "calibration_file": str(path),
    }
    return summary, fit, curve


TABLE_HEADER = (
    "operator",
    "K",
    "val/test cases",
    "std scale 50/90",
    "cov50 raw -> cal",
    "cov90 raw -> cal",
    "cov50 samples raw -> cal",
    "cov90 samples raw -> cal",
    "Spearman",
    "PSNR dB",
    "s/case",
)


def table_row(summary: dict) -> list[str]:
    m = summary["test_mean"]

    def pair(key: str) -> str:
        return f"{m[key]:.3f} -> {m[key + '_calibrated']:.3f}"

    scales = summary["std_scale"]
    return [
        summary["operator"],
        str(summary["n_samples"]),
        f"{len(summary['validation_cases'])}/{len(summary['test_cases'])}",
        f"{scales['50']:.2f} / {scales['90']:.2f}",
        pair("coverage_50"),
        pair("coverage_90"),
        pair("coverage_50_samples"),
        pair("coverage_90_samples"),
        f"{m['std_error_spearman']:.3f}",
        f"{m['psnr']:.2f}",
        f"{m['seconds']:.1f}",
    ]


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + " --- |" * len(TABLE_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--operators",
        nargs="+",
        default=["mri_4x"],
        choices=sorted({*SETUPS, *NATIVE_SETUPS, *VOLUME_SETUPS}),
    )
    parser.add_argument(
        "--domain",
        default=None,
        choices=["native", "volume"],
        help="native: brain_mri_native at the scanner's resolution, brain_native_2d, the "
        "<solver>_<operator>_native presets; volume: whole IXI volumes in 3D k-space, the "
        "<solver>_<operator>_volume presets (mri_4x, mri_8x), or slice by slice "
        "(mri_4x_multislice, mri_8x_multislice)",
    )
    parser.add_argument("--solver", default="latent_dds")
    parser.add_argument("--n-samples", nargs="+", type=int, default=[4, 8, 16])
    parser.add_argument("--validation-cases", type=int, default=None, help="default: all")
    parser.add_argument("--test-cases", type=int, default=None, help="default: all")
    parser.add_argument(
        "--slices", type=int, default=2, help="central slices per volume (IXI, native series)"
    )
    parser.add_argument("--per-class", type=int, default=4, help="MedNIST: images per CT class")
    parser.add_argument("--set", nargs="*", default=[], help="solver options key=value")
    parser.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--calibration-dir",
        default=None,
        help="where fits are stored (default configs/calibration; <output>/<name>_calibration "
        "when --set changes the preset)",
    )
    parser.add_argument("--output", default=str(REPO / "benchmarks/results/uncertainty"))
    parser.add_argument("--name", default="uncertainty")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.operators) - set(setups(args.domain)))
    if unknown:
        parser.error(
            f"--domain {args.domain} has no setup for {', '.join(unknown)}; "
            f"choose from {', '.join(sorted(setups(args.domain)))}"
        )
    if args.threads:
        torch.set_num_threads(args.threads)
    args.options = dict(item.split("=", 1) for item in args.set)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.calibration_dir is None:
        # a fit for a changed preset must not land beside the presets the bench applies
        args.calibration_dir = (
            output / f"{args.name}_calibration" if args.options else calibration_dir()
        )
    words = list(sys.argv[1:] if argv is None else argv)
    command = "python benchmarks/calibrate_uncertainty.py " + shlex.join(words)

    priors: dict[str, Any] = {}
    summaries, table = [], []
    for operator in args.operators:
        prior_name = setups(args.domain)[operator][0]
        if prior_name not in priors:
            priors[prior_name] = load_prior(prior_name, args.device, precision=args.precision)
        curves: dict[str, ReliabilityCurve] = {}
        factors: dict[str, float] = {}
        for k in args.n_samples:
            summary, fit, curve = run_operator(operator, k, args, priors[prior_name], command)
            summaries.append(summary)
            table.append(table_row(summary))
            if curve is not None:
                curves[f"K={k}"] = curve
                factors[f"K={k}"] = fit.levels[0.9].std_factor
        figure = output / f"{args.name}_reliability_{operator}.png"
        reliability_figure(curves, figure, f"{operator}: test cases", factors)
        print(markdown_table(table[-len(args.n_samples) :]))

    text = markdown_table(table)
    print("\n" + text)
    record = {"command": command, "calibration_dir": str(args.calibration_dir), "runs": summaries}
    (output / f"{args.name}.json").write_text(json.dumps(record, indent=1, default=float))
    notes = [
        f"# Std calibration: {args.name}",
        "",
        f"`{command}`",
        "",
        "Fitted on the validation split, scored on the test split (mean over test cases). "
        "'raw' is estimate +- z std (or the samples' quantile interval); 'cal' applies the "
        "validation-fitted scale. Spearman: std against |error|. ROI: "
        + "; ".join(dict.fromkeys(f"{r['operator']}: {r['roi']}" for r in summaries))
        + ".",
        "",
        text,
        "",
    ]
    (output / f"{args.name}.md").write_text("\n".join(notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
