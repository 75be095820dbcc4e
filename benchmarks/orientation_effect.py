"""How much the benchmark's orientation bug cost a latent prior: upright vs flipped slices.

Until the model view (``medldm.problems.model_view``) the benchmark fed IXI slices upside
down (``np.flipud`` of the training orientation) to a brain prior trained on upright slices.
This script measures that bug alone: one prior and one set of solver presets, the IXI test
cases of the LDM suite (central ``--slices`` per test subject, seeds ``--seeds``: the
suite's slice x seed pairs, seeded as ``medldm.bench.runner`` seeds them), each case solved
upright (as the benchmark does now) and flipped upside down (as it did before), with the
same measurement seed (mask, noise), the same solver seed and the benchmark's scoring.
Reported per operator: mean PSNR/SSIM both ways and the paired difference with two 95 % t
intervals: over all slice x seed pairs (as the benchmark report pairs them) and over the
slices' seed means (the pairs of one slice are not independent). For inpainting, flipping
also moves the hidden region to other anatomy, so those rows mix both effects.

The prior and presets of the flipped era (the commit before d0ba702 shipped the retrained
prior; its presets were tuned on flipped slices)::

    mkdir -p /tmp/old_prior /tmp/old_presets
    for f in config.json autoencoder.safetensors unet.safetensors; do
        git show "d0ba702^:medldm/models/weights/brain_t1_2d/$f" > /tmp/old_prior/$f; done
    for op in mri_4x mri_8x mri_multicoil_4x mri_multicoil_8x inpaint_box inpaint_random; do
        git show "d0ba702^:configs/solver/latent_dds_$op.yaml" \
            > /tmp/old_presets/latent_dds_$op.yaml; done
    .venv/bin/python benchmarks/orientation_effect.py --prior /tmp/old_prior \
        --presets /tmp/old_presets --json benchmarks/results/orientation/old_prior.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from scipy import stats

from medldm.bench.cases.cards import card_cases
from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.models.prior import load_prior
from medldm.problems.calibration import prior_fingerprint
from medldm.problems.configs import config_dir, load_physics, load_solver
from medldm.problems.simulate import simulate


def suite_operators() -> list[str]:
    """The IXI operators of the LDM suite, as ``configs/bench/ldm.yaml`` lists them."""
    return list(yaml.safe_load((config_dir() / "bench" / "ldm.yaml").read_text())["physics"])


def preset_solver(presets: Path, name: str) -> Any:
    """The solver of the Hydra solver preset ``<presets>/<name>.yaml`` (checked as the
    benchmark checks presets; a missing or malformed file names itself and the fix)."""
    return load_solver(str(presets / f"{name}.yaml"))


def paired(differences: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval of paired differences (at least two).

    >>> [round(v, 3) for v in paired([0.1, 0.3, 0.5, 0.7])]
    [0.4, -0.011, 0.811]
    """
    d = np.asarray(differences, dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired interval needs at least two differences, got {d.size}")
    mean = float(d.mean())
    half = float(stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size))
    return mean, mean - half, mean + half


def upside_down(case: Case) -> Case:
    """``case`` with its image flipped top to bottom (the benchmark's old orientation)."""
    return dataclasses.replace(case, image=np.ascontiguousarray(np.flipud(case.image)))


Solve = Callable[[Case, int], tuple[float, float]]


def solve_and_score(operator: str, solver: Any, prior: Any) -> Solve:
    """``(case, seed) -> (psnr, ssim)``: the benchmark's measurement of ``case`` with
    ``seed`` on the prior's device, ``solver`` with a generator seeded ``seed``, and the
    benchmark's scoring (magnitude, data range of the ground truth)."""
    factory = load_physics(operator)

    def run(case: Case, seed: int) -> tuple[float, float]:
        x = torch.from_numpy(case.image)[None, None].to(prior.device)
        physics, y = simulate(x, factory, seed, prior.device)
        generator = torch.Generator(device=prior.device).manual_seed(seed)
        estimate = solver.solve(y, physics, prior, generator=generator).estimate
        scores = score(to_image_array(estimate.cpu(), case.shape), case.image)
        return scores["psnr"], scores["ssim"]

    return run


def measure(operator: str, cases: Sequence[Case], seeds: Sequence[int], run: Solve) -> dict:
    """Upright and flipped scores of every case x seed, and their paired differences."""
    up, down = [], []
    for case in cases:
        for seed in seeds:
            up.append(run(case, seed))
            down.append(run(upside_down(case), seed))
    up_a, down_a = np.array(up), np.array(down)
    delta = up_a[:, 0] - down_a[:, 0]
    dp, dp_lo, dp_hi = paired(delta)
    per_case = delta.reshape(len(cases), len(seeds)).mean(axis=1)
    _, case_lo, case_hi = paired(per_case) if len(cases) > 1 else (0.0, np.nan, np.nan)
    return {
        "operator": operator,
        "pairs": len(up),
        "cases": len(cases),
        "upright_psnr": round(float(up_a[:, 0].mean()), 2),
        "upright_ssim": round(float(up_a[:, 1].mean()), 4),
        "flipped_psnr": round(float(down_a[:, 0].mean()), 2),
        "flipped_ssim": round(float(down_a[:, 1].mean()), 4),
        "delta_psnr": round(dp, 2),
        "delta_psnr_ci95": [round(dp_lo, 2), round(dp_hi, 2)],
        "delta_psnr_ci95_over_cases": [round(float(case_lo), 2), round(float(case_hi), 2)],
        "delta_ssim": round(float((up_a[:, 1] - down_a[:, 1]).mean()), 4),
        "upright_better": int((delta > 0).sum()),
        "delta_psnr_pairs": [round(float(v), 4) for v in delta],
    }


def markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Upright vs flipped IXI test slices, one prior and one set of presets",
        "",
        f"Written by `{meta['command']}` ({meta['seconds']:.0f} s, {meta['device']}, "
        f"{meta['precision']} network calls). Prior: `{meta['prior']}` (fingerprint "
        f"{meta['prior_fingerprint']}); solver presets: `{meta['presets']}`. Upright = the "
        "training orientation (the benchmark since the model view); flipped = upside down "
        "(the benchmark before). Paired over slice x seed pairs (same measurement seed, "
        "same solver seed); the second interval is over the slices' seed means (the pairs "
        "of one slice are not independent). Inpainting: flipping also moves the hidden "
        "region to other anatomy.",
        "",
        "| operator | pairs | upright PSNR / SSIM | flipped PSNR / SSIM | ΔPSNR (95 % CI, pairs)"
        " | 95 % CI, slices | ΔSSIM | upright better |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["delta_psnr_ci95"]
        c_lo, c_hi = r.get("delta_psnr_ci95_over_cases", [float("nan")] * 2)
        lines.append(
            f"| {r['operator']} | {r['pairs']} | {r['upright_psnr']} / {r['upright_ssim']} | "
            f"{r['flipped_psnr']} / {r['flipped_ssim']} | {r['delta_psnr']:+.2f} "
            f"({lo:+.2f}, {hi:+.2f}) | ({c_lo:+.2f}, {c_hi:+.2f}) | {r['delta_ssim']:+.4f} | "
            f"{r['upright_better']}/{r['pairs']} |"
        )
    return "\n".join(lines) + "\n"


def suite_test_cases(slices: int) -> list[Case]:
    """The LDM suite's IXI test slices; an unreadable one stops the run (the pairs would
    no longer be the suite's)."""
    cases = []
    for item in card_cases("ixi_t1", "test", slices=slices, size=128):
        if isinstance(item, CaseFailure):
            raise SystemExit(f"unreadable test case {item.case_id}: {item.error}")
        cases.append(item)
    return cases


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", default="brain_t1_2d", help="a shipped prior or a folder")
    parser.add_argument(
        "--presets", type=Path, default=None, help="solver preset folder (configs/solver)"
    )
    parser.add_argument("--solver", default="latent_dds", help="presets <solver>_<operator>")
    parser.add_argument("--operators", nargs="+", default=None, help="default: the suite's")
    parser.add_argument("--slices", type=int, default=2, help="central slices per subject")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--json", type=Path, default=None, help="results (and a .md beside)")
    args = parser.parse_args(argv)
    args.operators = args.operators or suite_operators()
    presets = args.presets or config_dir() / "solver"
    solvers = {op: preset_solver(presets, f"{args.solver}_{op}") for op in args.operators}
    started = time.perf_counter()
    prior = load_prior(args.prior, device="auto", precision=args.precision)
    cases = suite_test_cases(args.slices)
    meta = {
        "command": "python benchmarks/orientation_effect.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "prior": str(args.prior),
        "prior_fingerprint": prior_fingerprint(prior),
        "presets": str(presets),
        "device": str(prior.device),
        "precision": prior.precision,
        "threads": torch.get_num_threads(),
    }
    rows = []
    for operator, solver in solvers.items():
        run = solve_and_score(operator, solver, prior)
        rows.append(measure(operator, cases, args.seeds, run))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "delta_psnr_pairs"}))
        meta["seconds"] = time.perf_counter() - started
        if args.json:  # after every operator: an interrupted run keeps what it measured
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
            args.json.with_suffix(".md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
