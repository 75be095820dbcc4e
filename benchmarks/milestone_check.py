"""A campaign milestone against the shipped prior, on validation cases, before re-shipping.

Both priors reconstruct the same simulated measurements (seed ``i`` for case ``i``) with
the same ``latent_dds`` presets (``--domain native``: ``latent_dds_<operator>_native``);
printed per operator: each prior's mean PSNR dB / SSIM and the paired difference (mean, min,
max). Validation only: the test split decides a re-ship through the suite.

    .venv/bin/python benchmarks/milestone_check.py brain_native_2d \\
        campaign/milestones/brain_native_2d/diffusion --card brain_mri_native \\
        --domain native --operators mri_4x mri_8x
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from medldm.bench.cases.cards import card_cases
from medldm.bench.measurement_view import to_image_array
from medldm.metrics.scoring import score
from medldm.models.prior import load_prior
from medldm.problems.configs import load_physics, solver_for_operator
from medldm.problems.simulate import simulate


def scores(prior: object, solver: object, measurements: list) -> np.ndarray:
    """``(n, 2)`` PSNR dB and SSIM of ``solver`` with ``prior`` on each measurement."""
    rows = []
    for seed, (case, physics, y) in enumerate(measurements):
        generator = torch.Generator().manual_seed(seed)
        estimate = solver.solve(y, physics, prior, generator=generator).estimate
        values = score(to_image_array(estimate, case.image.shape), case.image)
        rows.append((values["psnr"], values["ssim"]))
    return np.array(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shipped")
    parser.add_argument("milestone")
    parser.add_argument("--card", default="brain_mri_native")
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--domain", default=None)
    parser.add_argument("--operators", nargs="+", default=["mri_4x", "mri_8x"])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    priors = {
        name: load_prior(path, device="cpu", precision="auto")
        for name, path in (("shipped", args.shipped), ("milestone", args.milestone))
    }
    found = card_cases(args.card, "validation", slices=args.slices)
    cases = [case for case in found if hasattr(case, "image")]
    for operator in args.operators:
        solver, preset = solver_for_operator("latent_dds", operator, domain=args.domain)
        measurements = [
            (case, *simulate(torch.from_numpy(case.image)[None, None], load_physics(operator), i))
            for i, case in enumerate(cases)
        ]
        shipped, milestone = (scores(p, solver, measurements) for p in priors.values())
        gain = milestone[:, 0] - shipped[:, 0]
        print(
            f"{operator} ({preset}, {len(cases)} validation cases): shipped "
            f"{shipped[:, 0].mean():.2f} / {shipped[:, 1].mean():.4f}, milestone "
            f"{milestone[:, 0].mean():.2f} / {milestone[:, 1].mean():.4f}; milestone - shipped "
            f"{gain.mean():+.3f} dB (min {gain.min():+.2f}, max {gain.max():+.2f}), SSIM "
            f"{(milestone[:, 1] - shipped[:, 1]).mean():+.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
