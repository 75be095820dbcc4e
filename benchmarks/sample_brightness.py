"""Does the seed set a sample's brightness? Unconditional samples against their initial noise.

With the scaled-linear noise schedule some signal is left at t = T (alpha_bar_T = 1.4e-4 for
beta 0.0015-0.0195). A
model trained on white noise reads each image's mean from that residual signal, and at
sampling it takes the random mean of its initial noise z_T for it: a sample's brightness
then follows the seed, not the data (Lin et al. 2024, "Common diffusion noise schedules and
sample steps are flawed"). Offset noise in training (``noise_offset``,
:func:`medldm.train.diffusion.training_noise`) is meant to remove that dependence.

For each prior this draws ``--n`` DDIM samples (``--steps`` steps, eta as in
:meth:`medldm.models.prior.Prior.sample`), takes each sample's mean intensity (clipped to
[0, 1], the training range) and correlates it with the spatial mean of every channel of the
sample's z_T. It reports the largest correlation (its channel; with 32 samples and 8
channels the largest of 8 correlations with independent noise has a median of 0.31 and
exceeds 0.48 one time in 20), and the
spread of the samples' brightness beside that of the validation slices selected as the
training slices are (the data's own spread).

    .venv/bin/python benchmarks/sample_brightness.py \\
        /tmp/m5815/campaign/milestones/brain_t1_2d/diffusion \\
        campaign/milestones/brain_t1_2d/diffusion --n 32 \\
        --output benchmarks/results/sample_brightness/brain_t1_2d.md
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.models.prior import load_prior
from medldm.train.data import ixi_slices
from medldm.utils.files import atomic_write_text


def brightness_against_noise(prior_path: str, n: int, steps: int, seed: int) -> dict[str, Any]:
    """Sample brightness vs initial-noise channel means for one prior (see module doc)."""
    prior = load_prior(prior_path, device="auto")
    shape = (n, *prior.latent_shape())
    z_T = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    samples = prior.sample(n, n_steps=steps, generator=torch.Generator().manual_seed(seed))
    brightness = samples.float().clamp(0, 1).mean(dim=tuple(range(1, samples.ndim))).cpu().numpy()
    channel_means = z_T.mean(dim=tuple(range(2, z_T.ndim))).numpy()
    correlations = [
        float(np.corrcoef(brightness, channel_means[:, c])[0, 1]) for c in range(shape[1])
    ]
    strongest = int(np.argmax(np.abs(correlations)))
    steps_trained = prior.meta.get("training", {}).get("diffusion_steps")
    return {
        "prior": prior_path,
        "diffusion_steps": steps_trained,
        "noise_offset": prior.meta.get("training", {}).get("diffusion", {}).get("noise_offset"),
        "correlation": correlations[strongest],
        "channel": strongest,
        "brightness_mean": float(brightness.mean()),
        "brightness_std": float(brightness.std(ddof=1)),
    }


def validation_brightness() -> tuple[float, float, int]:
    """Mean and std of the mean intensity of the IXI validation slices, selected as the
    training slices are (:func:`medldm.train.data.ixi_slices`: every axial slice with at
    least 15 % foreground), and their number."""
    slices, _ = ixi_slices("validation", 128, "axial")
    values = np.clip(slices, 0, 1).mean(axis=(1, 2))
    return float(values.mean()), float(values.std(ddof=1)), len(values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "priors", nargs="+", help="brain_t1_2d-like prior names or checkpoint folders"
    )
    parser.add_argument("--n", type=int, default=32, help="samples per prior")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="markdown table to write")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [brightness_against_noise(p, args.n, args.steps, args.seed) for p in args.priors]
    data_mean, data_std, n_data = validation_brightness()
    command = "python benchmarks/sample_brightness.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    lines = [
        "# Sample brightness against the initial noise",
        "",
        f"Command: `{command}` ({time.perf_counter() - started:.0f} s, {torch.get_num_threads()}"
        " threads).",
        "Correlation of each sample's mean intensity with the spatial mean of its",
        f"initial noise, strongest latent channel; {args.n} samples of {args.steps} DDIM steps.",
        "",
        "| prior | diffusion steps | noise_offset | correlation (channel) "
        "| brightness mean +- std |",
        "|---|---|---|---|---|",
        *[
            f"| {r['prior']} | {r['diffusion_steps']} | {r['noise_offset'] or 0} | "
            f"{r['correlation']:+.2f} ({r['channel']}) | "
            f"{r['brightness_mean']:.3f} +- {r['brightness_std']:.3f} |"
            for r in rows
        ],
        f"| IXI validation slices (all {n_data} with >= 15 % foreground, as in training) | | | | "
        f"{data_mean:.3f} +- {data_std:.3f} |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
