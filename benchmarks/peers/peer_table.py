"""medldm's classical MRI reconstructions beside the field's reference tools (BART, SigPy),
on the same measurements, each regularisation weight tuned on the same validation slices.

Simulated cases (the benchmark's own simulation, :func:`medldm.problems.simulate.simulate`,
with the operator presets of ``configs/physics/``):

* test: the IXI T1 test subjects (``ixi_t1`` card), ``--slices`` central axial slices each,
  128 x 128, seeds ``--seeds`` (the benchmark's ``ixi_t1_test`` cases and seeds);
* validation (tuning): the IXI validation subjects, ``--val-slices`` central slices each,
  seed ``i`` for validation case ``i`` (as ``benchmarks/tune_classical.py`` does).

For every operator (``mri_4x``, ``mri_8x``, ``mri_multicoil_4x``, ``mri_multicoil_8x``:
single-coil and 8-coil SENSE, random Cartesian lines, noise, smooth phase) each method gets
the k-space, the sampling mask and the SAME coil maps the simulation used
(:mod:`methods`), so only the regulariser and the algorithm differ. Every weighted method
(medldm ``tv``, ``l1_wavelet``; BART ``pics -R T`` / ``-R W``; SigPy
``TotalVariationRecon`` / ``L1WaveletRecon``) has its weight chosen by the best mean PSNR
over the validation cases on a log grid (7 values from 1e-4 to 1e-2; a grid whose best value
is at an edge is extended past it, up to 4 steps). The test cases are then reconstructed
once per method with that weight and scored as the benchmark scores (magnitude, data range
= ground truth max - min, whole image: :func:`medldm.metrics.scoring.score`).

Writes ``benchmarks/results/peers/``: ``results.csv`` (one row per test case and method),
``tuning.csv`` (every weight tried, mean validation PSNR/SSIM), and ``peer_table.md`` (mean
PSNR / SSIM / seconds per method and operator, and our TV against the best peer TV). A run
of some operators or methods replaces those rows and keeps the others.

Real data (the 8-coil brain k-space, the twix phantom): :func:`reconstruct_measured` takes
k-space, mask and coil maps and runs every method with the weights tuned here;
``benchmarks/peers/real_data.py`` uses it on the files read by ``medldm.io.raw_mri``.

Run (one thread; about 10 minutes per operator on a 2-core machine shared with other jobs)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers/peer_table.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers/peer_table.py --operators mri_4x
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from methods import (
    KspaceCase,
    Method,
    all_methods,
    bart_available,
    case_from_physics,
    sigpy_available,
)

from medldm.bench.cases.cards import card_cases
from medldm.bench.cases.case import Case
from medldm.metrics.scoring import score
from medldm.problems.configs import load_physics
from medldm.problems.simulate import simulate

OPERATORS = ("mri_4x", "mri_8x", "mri_multicoil_4x", "mri_multicoil_8x")
RESULTS = Path(__file__).resolve().parents[1] / "results" / "peers"
#: How many grid steps past an edge the weight search may go.
MAX_EXTENSIONS = 4
RESULT_FIELDS = (
    "operator",
    "case",
    "seed",
    "method",
    "tool",
    "regulariser",
    "weight",
    "psnr",
    "ssim",
    "nmse",
    "seconds",
    "command",
)
TUNING_FIELDS = ("operator", "method", "weight", "val_psnr", "val_ssim", "chosen")


# --- cases ---------------------------------------------------------------------------------
def ixi_cases(split: str, slices: int) -> list[Case]:
    cases = []
    for item in card_cases("ixi_t1", split, slices=slices, size=128):
        if isinstance(item, Case):
            cases.append(item)
        else:
            print(f"  skipped unreadable case {item.case_id}: {item.error}")
    return cases


def simulated(
    operator: str, cases: Sequence[Case], seeds: Sequence[int] | None
) -> list[KspaceCase]:
    """The benchmark's measurement of every case (``seeds`` for each case, or seed ``i``
    for case ``i`` when ``seeds`` is None)."""
    factory = load_physics(operator)
    out = []
    for index, case in enumerate(cases):
        for seed in [index] if seeds is None else seeds:
            x = torch.from_numpy(case.image)[None, None]
            physics, y = simulate(x, factory, seed)
            measured = case_from_physics(case.case_id, physics, y, case.image, operator)
            measured.info["seed"] = seed
            out.append(measured)
    return out


# --- tuning and scoring --------------------------------------------------------------------
def scores_of(image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return score(np.abs(image), truth)


def mean_scores(method: Method, cases: Sequence[KspaceCase], weight: float) -> tuple[float, float]:
    values = [scores_of(method.run(case, weight)[0], case.truth) for case in cases]
    return float(np.mean([v["psnr"] for v in values])), float(np.mean([v["ssim"] for v in values]))


def tune(method: Method, cases: Sequence[KspaceCase]) -> tuple[float, list[dict[str, Any]]]:
    """The weight with the best mean PSNR over ``cases``; every weight tried, in order."""
    tried: dict[float, tuple[float, float]] = {}
    grid = list(method.grid)
    for weight in grid:
        tried[weight] = mean_scores(method, cases, weight)
    step = grid[1] / grid[0]
    for _ in range(MAX_EXTENSIONS):
        weights = sorted(tried)
        best = max(weights, key=lambda w: round(tried[w][0], 6))
        if best == weights[0]:
            new = float(f"{weights[0] / step:.3g}")
        elif best == weights[-1]:
            new = float(f"{weights[-1] * step:.3g}")
        else:
            break
        tried[new] = mean_scores(method, cases, new)
    weights = sorted(tried)
    best = max(weights, key=lambda w: round(tried[w][0], 6))
    rows = [
        {
            "method": method.name,
            "weight": w,
            "val_psnr": tried[w][0],
            "val_ssim": tried[w][1],
            "chosen": w == best,
        }
        for w in weights
    ]
    return best, rows


def evaluate(method: Method, weight: float | None, cases: Sequence[KspaceCase]) -> list[dict]:
    rows = []
    for case in cases:
        image, seconds = method.run(case, weight)
        values = scores_of(image, case.truth)
        rows.append(
            {
                "operator": case.operator,
                "case": case.name,
                "seed": case.info.get("seed", ""),
                "method": method.name,
                "tool": method.tool,
                "regulariser": method.regulariser,
                "weight": "" if weight is None else weight,
                "psnr": values["psnr"],
                "ssim": values["ssim"],
                "nmse": values["nmse"],
                "seconds": seconds,
            }
        )
    return rows


# --- real data -----------------------------------------------------------------------------
def reconstruct_measured(
    kspace: np.ndarray,
    mask: np.ndarray,
    coil_maps: np.ndarray,
    operator: str,
    weights: dict[str, float],
    methods: Sequence[Method] | None = None,
    name: str = "measured",
) -> dict[str, tuple[np.ndarray, float]]:
    """Every method on measured data: ``kspace`` complex ``(coils, H, W)`` (centred,
    orthonormal scaling, zeros off the mask), ``mask`` bool ``(H, W)``, ``coil_maps``
    ``(coils, H, W)``; ``operator`` names the medldm presets to use (e.g.
    ``mri_multicoil_8x``) and ``weights`` the tuned weight of each weighted method.
    Returns ``{method: (complex image, seconds)}``."""
    case = KspaceCase(name, kspace, mask, coil_maps, None, operator)
    out = {}
    for method in methods or all_methods():
        weight = weights.get(method.name) if method.tuned else None
        if method.tuned and weight is None:
            continue
        out[method.name] = method.run(case, weight)
    return out


def agreement(images: dict[str, np.ndarray], reference: str) -> dict[str, dict[str, float]]:
    """NRMSE and SSIM of every magnitude image against ``images[reference]`` (each image
    scaled to the reference by least squares first, since no ground truth fixes the scale)."""
    truth = np.abs(images[reference])
    out = {}
    for name, image in images.items():
        magnitude = np.abs(image)
        scale = float((magnitude * truth).sum() / max((magnitude**2).sum(), 1e-30))
        values = score(scale * magnitude, truth)
        nrmse = float(np.linalg.norm(scale * magnitude - truth) / np.linalg.norm(truth))
        out[name] = {"nrmse": nrmse, "ssim": values["ssim"]}
    return out


def real_data_section(folder: Path) -> list[str]:
    """Where the measured-data comparison is (``real_data.py``), as Markdown lines."""
    if (folder / "real_data.md").is_file():
        return [
            "Measured raw data (the real 8-coil brain k-space, the twix phantom at 4x/8x, "
            "ESPIRiT maps vs BART ecalib): `real_data.md`, written by "
            "`benchmarks/peers/real_data.py` with the weights tuned here."
        ]
    return [
        "Measured raw data: not yet run: `benchmarks/peers/real_data.py` (after this script) "
        "writes `real_data.md`."
    ]


# --- files ---------------------------------------------------------------------------------
def read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, fields: Sequence[str], rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields))
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _text(row.get(key, "")) for key in fields})
    temporary.replace(path)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def merge(path: Path, fields: Sequence[str], new: list[dict]) -> list:
    """The rows of ``path`` with those of the (operator, method) pairs in ``new`` replaced."""
    replaced = {(row["operator"], row["method"]) for row in new}
    kept = [row for row in read_rows(path) if (row["operator"], row["method"]) not in replaced]
    rows = kept + [{key: _text(row.get(key, "")) for key in fields} for row in new]
    write_rows(path, fields, rows)
    return rows


def markdown(results: list[dict], notes: list[str]) -> str:
    lines = [
        "# medldm beside BART and SigPy (simulated IXI k-space)",
        "",
        "Written by `benchmarks/peers/peer_table.py`; rerun it, do not edit. Commands: "
        + "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "") for r in results))
        + ".",
        "",
        "Same measurements for every method (the benchmark's simulation: IXI T1 test "
        "subjects, 128 x 128 central axial slices, random Cartesian lines with a fully "
        "sampled centre, complex Gaussian noise sigma 0.005, smooth random phase; "
        "multi-coil: 8 birdcage coils, the SAME coil maps given to every method). "
        "Each weight tuned on the IXI validation subjects (best mean PSNR on a log "
        "grid; `tuning.csv`). Scores: magnitude, data range = ground truth max - min, "
        "whole image, mean over the test cases. Seconds: wall time, one CPU thread, "
        "a 2-core machine shared with other jobs (BART's include its file I/O).",
        "",
    ]
    operators = [op for op in OPERATORS if any(r["operator"] == op for r in results)]
    for operator in operators:
        rows = [r for r in results if r["operator"] == operator]
        n_cases = len({(r["case"], r["seed"]) for r in rows})
        lines += [
            f"## {operator} ({n_cases} test cases)",
            "",
            "| method | tool | regulariser | weight | PSNR dB | SSIM | seconds |",
            "|---|---|---|---|---|---|---|",
        ]
        summary = summarise(rows)
        best_psnr = max(s["psnr"] for s in summary.values())
        for name, s in summary.items():
            psnr_text = f"**{s['psnr']:.2f}**" if s["psnr"] == best_psnr else f"{s['psnr']:.2f}"
            lines.append(
                f"| {name} | {s['tool']} | {s['regulariser']} | {s['weight'] or '-'} | "
                f"{psnr_text} | {s['ssim']:.3f} | {s['seconds']:.2f} |"
            )
        lines += ["", *tv_gap_lines(rows), ""]
    lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    return "\n".join(lines)


def summarise(rows: list[dict]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        out[name] = {
            "tool": mine[0]["tool"],
            "regulariser": mine[0]["regulariser"],
            "weight": mine[0]["weight"],
            "psnr": float(np.mean([float(r["psnr"]) for r in mine])),
            "ssim": float(np.mean([float(r["ssim"]) for r in mine])),
            "seconds": float(np.mean([float(r["seconds"]) for r in mine])),
        }
    return out


def tv_gap_lines(rows: list[dict]) -> list[str]:
    """Our TV against the best peer TV: mean difference and the worst single case."""
    peers = {r["method"] for r in rows if r["regulariser"] == "tv" and r["tool"] != "medldm"}
    if not peers or not any(r["method"] == "tv" for r in rows):
        return ["(no peer TV to compare with)"]
    summary = summarise(rows)
    best_peer = max(peers, key=lambda name: summary[name]["psnr"])
    ours = {(r["case"], r["seed"]): float(r["psnr"]) for r in rows if r["method"] == "tv"}
    theirs = {(r["case"], r["seed"]): float(r["psnr"]) for r in rows if r["method"] == best_peer}
    differences = [ours[key] - theirs[key] for key in ours if key in theirs]
    mean_gap = summary["tv"]["psnr"] - summary[best_peer]["psnr"]
    verdict = "within 0.2 dB or better" if mean_gap >= -0.2 else "MORE THAN 0.2 dB BELOW"
    return [
        f"Our TV minus the best peer TV ({best_peer}): mean {mean_gap:+.2f} dB ({verdict}); "
        f"per case from {min(differences):+.2f} to {max(differences):+.2f} dB."
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--operators", nargs="+", default=list(OPERATORS), choices=OPERATORS)
    parser.add_argument("--slices", type=int, default=2, help="test slices per subject")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--val-slices", type=int, default=1, help="validation slices/subject")
    parser.add_argument("--peer-iters", type=int, default=100, help="BART/SigPy iterations")
    parser.add_argument("--methods", nargs="+", default=None, help="names to run (default all)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite peer_table.md from results.csv without running anything",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python benchmarks/peers/peer_table.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    methods = all_methods(args.peer_iters)
    if args.methods:
        methods = [m for m in methods if m.name in args.methods]
    notes = [
        f"BART {'found' if bart_available() else 'MISSING (apt-get install bart)'}; "
        f"SigPy {'found' if sigpy_available() else 'MISSING (pip install medldm[peers])'}; "
        f"peers run {args.peer_iters} iterations (BART: FISTA for W, ADMM for T; SigPy: "
        "accelerated proximal gradient for L1Wavelet, PDHG for TV); medldm solvers use "
        "their per-operator presets (tv: PDHG 300 iterations with the lowres phase "
        "constraint; l1_wavelet: FISTA with the preset's wavelet, iterations and phase "
        "constraint) with the weight tuned here.",
        "`tv (no phase constraint)` and `l1_wavelet (no phase constraint)` are medldm's "
        "solvers on the complex image, as the peers reconstruct it: the difference to `tv` "
        "and `l1_wavelet` is what the phase constraint adds.",
        *real_data_section(args.output_dir),
    ]
    folder = args.output_dir
    if args.report_only:
        (folder / "peer_table.md").write_text(markdown(read_rows(folder / "results.csv"), notes))
        print(f"wrote {folder}/peer_table.md")
        return 0
    validation = ixi_cases("validation", args.val_slices)
    test = ixi_cases("test", args.slices)
    results, tuning = [], []
    started_all = time.perf_counter()
    for operator in args.operators:
        val_cases = simulated(operator, validation, None)
        test_cases = simulated(operator, test, args.seeds)
        print(f"== {operator}: {len(val_cases)} validation, {len(test_cases)} test cases")
        for method in methods:
            started = time.perf_counter()
            weight = None
            if method.tuned:
                weight, tried = tune(method, val_cases)
                tuning += [{"operator": operator, **row} for row in tried]
            rows = evaluate(method, weight, test_cases)
            results += [{**row, "command": command.strip()} for row in rows]
            print(
                f"  {method.name:28s} weight {weight!s:>8}  "
                f"PSNR {np.mean([r['psnr'] for r in rows]):6.2f}  "
                f"SSIM {np.mean([r['ssim'] for r in rows]):.3f}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    all_results = merge(folder / "results.csv", RESULT_FIELDS, results)
    merge(folder / "tuning.csv", TUNING_FIELDS, tuning)
    text = markdown(all_results, notes)
    (folder / "peer_table.md").write_text(text)
    print(f"wrote {folder}/peer_table.md, results.csv, tuning.csv")
    print(f"total {time.perf_counter() - started_all:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
