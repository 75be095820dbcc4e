"""Memory under load: a long batch of 2D reconstructions must run with flat memory.

Runs ``--cases`` reconstructions of 2D axial slices of the MNI152 template (nilearn, 2 mm;
slice and measurement seed vary per case) through ``medldm.reconstruct`` in one process,
writing each run folder like ``medldm-recon`` does, and records the resident set size
(RSS) after every case. Reports the RSS after warm-up and at the end, and the slope of a
least-squares line over the second half (MB per 100 cases): flat memory means a slope near
zero, not a steady climb.

    python benchmarks/recon_memory.py                       # 200 cases, tiny test prior
    python benchmarks/recon_memory.py --prior brain_t1_2d   # the shipped prior
    python benchmarks/recon_memory.py --cases 300 --json out.json

The tiny untrained prior (medldm.models.testing) keeps the run short; memory behaviour of
the pipeline (I/O, physics, solver, writing, figures) is what is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Current resident set size of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(cases: int, prior_name: str | None, write_every: int, steps: int) -> dict:
    import torch

    import medldm
    from medldm.io import MedImage, load
    from medldm.models.testing import tiny_prior
    from medldm.recon.examples import example_input
    from medldm.recon.outputs import write_run_folder

    torch.set_num_threads(1)
    volume = load(example_input("mni152_t1_2mm"))
    prior = tiny_prior() if prior_name is None else prior_name
    grid = {"size": [32, 32], "spacing_mm": None} if prior_name is None else None
    samples: list[float] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(cases):
            z = 30 + index % 40
            image = MedImage(
                np.ascontiguousarray(volume.array[:, :, z]), volume.affine, modality="MR"
            )
            result = medldm.reconstruct(
                image,
                "mri_brain_4x",
                prior=prior,
                seed=index,
                grid=grid,
                solver_options={"n_steps": steps, "n_samples": 2},
                baseline=index % 10 == 0,
            )
            if write_every and index % write_every == 0:
                write_run_folder(result, Path(scratch) / f"case{index:04d}")
            del result
            samples.append(rss_mb())
    half = samples[len(samples) // 2 :]
    slope = float(np.polyfit(np.arange(len(half)), half, 1)[0]) * 100 if len(half) > 1 else 0.0
    warm = samples[min(19, len(samples) - 1)]
    return {
        "cases": cases,
        "prior": prior_name or "tiny test prior",
        "rss_mb_after_20": round(warm, 1),
        "rss_mb_end": round(samples[-1], 1),
        "rss_mb_max": round(max(samples), 1),
        "growth_mb_after_warmup": round(samples[-1] - warm, 1),
        "slope_mb_per_100_cases_second_half": round(slope, 2),
        "seconds": round(time.perf_counter() - started, 1),
        "write_every": write_every,
        "rss_mb": [round(s, 1) for s in samples],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--prior", default=None, help="shipped prior name or folder")
    parser.add_argument("--steps", type=int, default=2, help="solver steps per case")
    parser.add_argument(
        "--write-every",
        type=int,
        default=1,
        help="write the run folder (images, report) of every n-th case; 0: never",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args(argv)
    numbers = run(args.cases, args.prior, args.write_every, args.steps)
    summary = {k: v for k, v in numbers.items() if k != "rss_mb"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
