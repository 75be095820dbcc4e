"""Where latent DDS spends its time: seconds per case in each network and in the data
consistency, on validation cases, with the tuned presets.

Each part is timed by wrapping it (the prior's ``predict_eps``, ``decode``, ``encode``; the
problem's CG data consistency, the starting TV reconstruction and the final TV step); the
rest of the solve (DDIM / DPM-Solver arithmetic, bookkeeping) is "other". Run on a quiet
machine; ``--threads`` sets torch's CPU threads.

    .venv/bin/python benchmarks/ldm_profile.py --setups mri_4x mri_4x_native --cases 3 \\
        --threads 2 --markdown benchmarks/results/ldm_speed/profile_cpu.md
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from medldm.bench.cases.cards import card_cases
from medldm.models.prior import load_prior
from medldm.problems.configs import load_physics, solver_for_operator
from medldm.problems.simulate import simulate
from medldm.solvers.latent_problem import LatentProblem

# setup -> (prior, data card, card options, operator, preset domain, image shape kept)
SETUPS = {
    "mri_4x": ("brain_t1_2d", "ixi_t1", {"slices": 1, "size": 128}, "mri_4x", None, None),
    "mri_8x": ("brain_t1_2d", "ixi_t1", {"slices": 1, "size": 128}, "mri_8x", None, None),
    "ct_sparse_30": ("ct_2d", "mednist", {"per_class": 1}, "ct_sparse_30", None, None),
    "mri_4x_native": (
        "brain_native_2d",
        "brain_mri_native",
        {"slices": 1},
        "mri_4x",
        "native",
        (256, 256),
    ),
}
PARTS = {
    "unet": ("prior", "predict_eps"),
    "decode": ("prior", "decode"),
    "encode": ("prior", "encode"),
    "cg": ("problem", "data_consistency"),
    "start_tv": ("problem", "tv_reconstruction"),
    "final_tv": ("problem", "tv_data_consistency"),
    "final_wavelet": ("problem", "wavelet_data_consistency"),
}


def timed(function: Callable, totals: dict[str, float], key: str) -> Callable:
    """``function`` adding its wall time to ``totals[key]``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


def profile(setup: str, n_cases: int, precision: str) -> dict[str, Any]:
    prior_name, card, options, operator, domain, shape = SETUPS[setup]
    prior = load_prior(prior_name, device="cpu", precision=precision)
    solver, preset = solver_for_operator("latent_dds", operator, domain=domain)
    found = card_cases(card, "validation", **options)
    cases = [c for c in found if hasattr(c, "image") and shape in (None, c.image.shape)]
    cases = cases[:n_cases]
    totals: dict[str, float] = collections.defaultdict(float)
    for key, (owner, name) in PARTS.items():
        target = prior if owner == "prior" else LatentProblem
        setattr(target, name, timed(getattr(target, name), totals, key))
    solve_seconds = 0.0
    for seed, case in enumerate([cases[0], *cases]):  # the first run warms up, not counted
        x = torch.from_numpy(case.image)[None, None]
        physics, y = simulate(x, load_physics(operator), seed)
        if seed == 0:
            solver.solve(y, physics, prior, generator=torch.Generator().manual_seed(0))
            totals.clear()
            continue
        start = time.perf_counter()
        solver.solve(y, physics, prior, generator=torch.Generator().manual_seed(seed))
        solve_seconds += time.perf_counter() - start
    per_case = {k: v / len(cases) for k, v in totals.items()}
    per_case["other"] = solve_seconds / len(cases) - sum(per_case.values())
    return {
        "setup": setup,
        "preset": preset,
        "shape": "x".join(str(s) for s in cases[0].image.shape),
        "steps": solver.n_steps,
        "samples": solver.n_samples,
        "sampler": getattr(solver, "sampler", "ddim"),
        "precision": prior.precision,
        "cases": len(cases),
        "seconds_per_case": solve_seconds / len(cases),
        "parts": per_case,
    }


def markdown(rows: list[dict[str, Any]], threads: int) -> str:
    parts = [*PARTS, "other"]
    lines = [
        "# Where latent DDS spends its time",
        "",
        f"`benchmarks/ldm_profile.py`, {threads} CPU thread(s), validation cases, seconds "
        "per case (share of the case in brackets).",
        "",
        "| setup | preset | image | steps x samples | precision | s / case | "
        + " | ".join(parts)
        + " |",
        "|" + "---|" * (6 + len(parts)),
    ]
    for row in rows:
        total = row["seconds_per_case"]
        cells = [
            f"{row['parts'].get(p, 0.0):.2f} ({100 * row['parts'].get(p, 0.0) / total:.0f} %)"
            for p in parts
        ]
        lines.append(
            f"| {row['setup']} | {row['preset']} | {row['shape']} | {row['steps']} x "
            f"{row['samples']} ({row['sampler']}) | {row['precision']} | {total:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--setups", nargs="+", default=["mri_4x"], choices=sorted(SETUPS))
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [profile(setup, args.cases, args.precision) for setup in args.setups]
    text = markdown(rows, args.threads)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
