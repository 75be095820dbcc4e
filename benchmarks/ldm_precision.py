"""latent_dds in fp32 against bf16 network calls, side by side on the same measurements.

For each operator, the test cases of the prior's data card are measured as the benchmark
measures them (``medldm.problems.simulate``, seed ``i`` for case ``i``) and solved with
the operator's tuned ``latent_dds`` preset twice: the prior's network calls in fp32, then
in bf16 (``medldm.models.precision``: native on CUDA and on CPUs with AVX512-BF16/AMX; the
data consistency stays fp32). Reported per precision: mean PSNR/SSIM (the benchmark's
scoring), seconds per case, and the bf16/fp32 speed ratio and PSNR change. The two runs
alternate case by case, so a busy machine slows both alike.

Run::

    .venv/bin/python benchmarks/ldm_precision.py --cases 4 \\
        --json benchmarks/results/ldm_precision/cpu.json
    .venv/bin/python benchmarks/ldm_precision.py --operators mri_4x_native --cases 1 \\
        --threads 2 --json benchmarks/results/ldm_precision/cpu_native_256.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medldm.bench.cases.cards import card_cases
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.models.prior import load_prior
from medldm.problems.configs import load_physics, solver_for_operator
from medldm.problems.simulate import simulate

# setup -> (prior, data card, card options); a setup "<operator>_<domain>" runs the operator
# with the presets tuned for that domain
SETUPS = {
    "mri_4x": ("brain_t1_2d", "ixi_t1", {"slices": 1, "size": 128}),
    "ct_sparse_30": ("ct_2d", "mednist", {"per_class": 2}),
    # the test patient's 256 x 256 T1W slices at 0.91 mm with the native prior
    "mri_4x_native": ("brain_native_2d", "brain_mri_native", {"slices": 1}),
}
#: setup -> (operator, preset domain, image shape kept; None: all)
OPERATORS = {"mri_4x_native": ("mri_4x", "native", (256, 256))}


def run(setup: str, n_cases: int, options: dict) -> dict:
    prior_name, card, card_options = SETUPS[setup]
    operator, domain, shape = OPERATORS.get(setup, (setup, None, None))
    found = card_cases(card, "test", **card_options)
    cases = [c for c in found if hasattr(c, "image") and shape in (None, c.image.shape)]
    cases = cases[:n_cases]
    priors = {p: load_prior(prior_name, device="cpu", precision=p) for p in ("fp32", "bf16")}
    rows: dict[str, list[tuple[float, float, float]]] = {p: [] for p in priors}
    for seed, case in enumerate(cases):
        x = torch.from_numpy(case.image)[None, None]
        physics, y = simulate(x, load_physics(operator), seed)
        for precision, prior in priors.items():
            solver, _ = solver_for_operator("latent_dds", operator, options, domain)
            generator = torch.Generator().manual_seed(seed)
            start = time.perf_counter()
            with torch.inference_mode():
                result = solver.solve(y, physics, prior, generator=generator)
            seconds = time.perf_counter() - start
            scores = score(to_image_array(result.estimate, case.shape), case.image)
            rows[precision].append((scores["psnr"], scores["ssim"], seconds))
            print(
                f"{operator} {case.case_id} {precision}: {scores['psnr']:.2f} dB, {seconds:.1f} s"
            )
    summary = {
        p: {
            "psnr": float(np.mean([r[0] for r in v])),
            "ssim": float(np.mean([r[1] for r in v])),
            "seconds_per_case": float(np.mean([r[2] for r in v])),
        }
        for p, v in rows.items()
    }
    summary["speedup"] = summary["fp32"]["seconds_per_case"] / summary["bf16"]["seconds_per_case"]
    summary["psnr_change_db"] = summary["bf16"]["psnr"] - summary["fp32"]["psnr"]
    summary["n_cases"] = len(cases)
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operators", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--set", nargs="*", default=[], help="solver options, key=value")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    table = {op: run(op, args.cases, options) for op in args.operators}
    print(
        "| operator | fp32 PSNR / SSIM | bf16 PSNR / SSIM | fp32 s/case | bf16 s/case | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    for op, r in table.items():
        print(
            f"| {op} | {r['fp32']['psnr']:.2f} / {r['fp32']['ssim']:.3f} "
            f"| {r['bf16']['psnr']:.2f} / {r['bf16']['ssim']:.3f} "
            f"| {r['fp32']['seconds_per_case']:.1f} | {r['bf16']['seconds_per_case']:.1f} "
            f"| {r['speedup']:.2f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"command": " ".join(["benchmarks/ldm_precision.py", *sys.argv[1:]]),
                   "threads": args.threads, "results": table}  # fmt: skip
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
