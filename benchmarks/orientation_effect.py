"""How much the benchmark's orientation bug cost a latent prior: upright vs flipped slices.

Until the model view (``medldm.problems``) the benchmark fed IXI slices upside down
(``np.flipud`` of the training orientation) to a brain prior trained on upright slices. This
script measures that bug alone: one prior and one set of solver presets, the IXI test cases
of the LDM suite (central ``--slices`` per test subject, seeds ``--seeds``: the suite's
slice x seed pairs), each case solved upright (as the benchmark does now) and flipped
upside down (as it did before), with the same measurement seed, the same solver seed and the
benchmark's scoring. Reported per operator: mean PSNR/SSIM both ways and the paired
difference with a 95 % t interval.

Use it on the prior and presets of the flipped era to see what the fix changed for them
(the shipped prior was retrained after the fix, so its numbers mix both changes)::

    git show d0ba702^:medldm/models/weights/brain_t1_2d/... > /tmp/old_prior/...  # all files
    git show d0ba702^:configs/solver/latent_dds_mri_4x.yaml > /tmp/old_presets/...
    .venv/bin/python benchmarks/orientation_effect.py --prior /tmp/old_prior \\
        --presets /tmp/old_presets --operators mri_4x mri_8x inpaint_box \\
        --json benchmarks/results/orientation/old_prior.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_classical import _only_cases, psnr_ssim

from medldm.bench.cases.cards import card_cases
from medldm.models.prior import load_prior
from medldm.problems.configs import load_physics
from medldm.problems.simulate import simulate as simulate_measurement


def load_solver(presets: Path, name: str):
    """The solver of ``<presets>/<name>.yaml`` (a Hydra solver preset), built by its class."""
    path = presets / f"{name}.yaml"
    if not path.is_file():
        raise SystemExit(f"no solver preset {path}: pass --presets a folder holding {name}.yaml")
    options = yaml.safe_load(path.read_text())
    module, cls = options.pop("_target_").rsplit(".", 1)
    return getattr(importlib.import_module(module), cls)(**options)


def paired(differences: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t interval of paired differences."""
    d = np.asarray(differences, dtype=float)
    mean = float(d.mean())
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half


def measure(operator: str, cases, seeds, solver, prior) -> dict:
    factory = load_physics(operator)
    scores: dict[str, list[tuple[float, float]]] = {"upright": [], "flipped": []}
    for case in cases:
        flipped = dataclasses.replace(case, image=np.ascontiguousarray(np.flipud(case.image)))
        for seed in seeds:
            for label, c in (("upright", case), ("flipped", flipped)):
                x = torch.from_numpy(c.image)[None, None]
                physics, y = simulate_measurement(x, factory, seed)
                generator = torch.Generator(device=prior.device).manual_seed(seed)
                estimate = solver.solve(
                    y.to(prior.device), physics.to(prior.device), prior, generator=generator
                ).estimate
                scores[label].append(psnr_ssim(estimate.cpu(), c))
    up, down = np.array(scores["upright"]), np.array(scores["flipped"])
    dp, dp_lo, dp_hi = paired(list(up[:, 0] - down[:, 0]))
    return {
        "operator": operator,
        "pairs": len(up),
        "upright_psnr": round(float(up[:, 0].mean()), 2),
        "upright_ssim": round(float(up[:, 1].mean()), 4),
        "flipped_psnr": round(float(down[:, 0].mean()), 2),
        "flipped_ssim": round(float(down[:, 1].mean()), 4),
        "delta_psnr": round(dp, 2),
        "delta_psnr_ci95": [round(dp_lo, 2), round(dp_hi, 2)],
        "delta_ssim": round(float((up[:, 1] - down[:, 1]).mean()), 4),
        "upright_better": int((up[:, 0] > down[:, 0]).sum()),
    }


def markdown(rows: list[dict], prior: str, presets: str, seconds: float) -> str:
    lines = [
        "# Upright vs flipped IXI test slices, one prior and one set of presets",
        "",
        f"Written by `benchmarks/orientation_effect.py`. Prior: `{prior}`; solver presets: "
        f"`{presets}`; {seconds:.0f} s. Upright = the training orientation (the benchmark "
        "since the model view); flipped = upside down (the benchmark before). Paired over "
        "the same slice x seed pairs (same measurement, same solver seed).",
        "",
        "| operator | pairs | upright PSNR / SSIM | flipped PSNR / SSIM | ΔPSNR (95 % CI) "
        "| ΔSSIM | upright better |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["delta_psnr_ci95"]
        lines.append(
            f"| {r['operator']} | {r['pairs']} | {r['upright_psnr']} / {r['upright_ssim']} | "
            f"{r['flipped_psnr']} / {r['flipped_ssim']} | {r['delta_psnr']:+.2f} "
            f"({lo:+.2f}, {hi:+.2f}) | {r['delta_ssim']:+.4f} | "
            f"{r['upright_better']}/{r['pairs']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", default="brain_t1_2d", help="a shipped prior or a folder")
    parser.add_argument("--presets", type=Path, default=None, help="solver preset folder")
    parser.add_argument("--solver", default="latent_dds")
    parser.add_argument("--operators", nargs="+", default=["mri_4x", "mri_8x", "inpaint_box"])
    parser.add_argument("--slices", type=int, default=2, help="central slices per subject")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.presets is None:
        from medldm.problems.configs import config_dir

        args.presets = config_dir() / "solver"
    started = time.perf_counter()
    prior = load_prior(args.prior, device="auto", precision=args.precision)
    cases = list(_only_cases(card_cases("ixi_t1", "test", slices=args.slices, size=128)))
    rows = []
    for operator in args.operators:
        solver = load_solver(args.presets, f"{args.solver}_{operator}")
        rows.append(measure(operator, cases, args.seeds, solver, prior))
        print(json.dumps(rows[-1]), flush=True)
    text = markdown(rows, str(args.prior), str(args.presets), time.perf_counter() - started)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
