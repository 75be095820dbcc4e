"""A 2D IXI prior's denoising loss by slice position, on training and held-out subjects.

The diffusion network's training objective (mean squared error of the predicted noise)
at fixed timesteps and fixed noise, on the foreground-extent slices of each IXI split
(:func:`medldm.train.data.ixi_extent_slices`, the model view's rule: 0 inferior, 1
superior), split into thirds of the extent. The gap between the training subjects and the
held-out ones (validation, test) in a third says how far the network has learned
subject-specific detail there rather than what generalises: a gap that stays while the
held-out loss stops falling points at the training data, not at the training time.

Run::

    .venv/bin/python benchmarks/prior_loss_by_position.py brain_t1_lossless_2d \\
        --json benchmarks/results/whole_volume/prior_loss_brain_t1_lossless_2d.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from medldm.models import load_prior
from medldm.train.data import ixi_extent_slices

THIRDS = ("inferior", "middle", "superior")
#: Timesteps the loss is taken at (of the 1000 training timesteps).
TIMESTEPS = (20, 100, 250, 500, 750)


def third_of(positions: np.ndarray) -> np.ndarray:
    """0, 1 or 2 for positions in [0, 1/3), [1/3, 2/3), [2/3, 1] of the extent.

    >>> third_of(np.array([0.0, 0.5, 1.0])).tolist()
    [0, 1, 2]
    """
    return np.minimum((np.asarray(positions) * 3).astype(int), 2)


@torch.no_grad()
def noise_losses(
    prior, images: torch.Tensor, positions: np.ndarray, timesteps=TIMESTEPS, batch: int = 32
) -> np.ndarray:
    """``(N, len(timesteps))`` noise-prediction MSE per image (fixed seed), images
    ``(N, 1, H, W)`` in [0, 1]; a slice-conditioned prior is told each slice's position."""
    if prior.stack_aware:
        raise SystemExit("a stack-aware prior needs its neighbours: not measured here")
    generator = torch.Generator().manual_seed(1)
    clean = torch.cat([prior.encode(images[i : i + batch]) for i in range(0, len(images), batch)])
    losses = np.zeros((len(images), len(timesteps)))
    for column, t in enumerate(timesteps):
        noise = torch.randn(clean.shape, generator=generator).to(clean.device)
        a = prior.alpha_bar(t)
        noisy = a.sqrt() * clean + (1 - a).sqrt() * noise
        for i in range(0, len(images), batch):
            where = positions[i : i + batch] if prior.slice_conditioned else None
            with prior.at_slice_positions(where):
                predicted = prior.predict_eps(noisy[i : i + batch], t).float()
            error = (predicted - noise[i : i + batch]) ** 2
            losses[i : i + batch, column] = error.mean(dim=(1, 2, 3)).cpu().numpy()
    return losses


def split_losses(prior, split: str, n: int, seed: int = 0) -> dict:
    """Mean loss per third (and per timestep) on ``n`` random extent slices of ``split``."""
    images, positions, _ = ixi_extent_slices(split, prior.config.image_size[0])
    chosen = np.sort(np.random.default_rng(seed).choice(len(images), min(n, len(images)), False))
    images, positions = torch.from_numpy(images[chosen])[:, None], positions[chosen]
    losses = noise_losses(prior, images, positions)
    thirds = third_of(positions)
    return {
        name: {
            "slices": int((thirds == k).sum()),
            "loss": round(float(losses[thirds == k].mean()), 5),
            "by_timestep": dict(
                zip(
                    map(str, TIMESTEPS),
                    np.round(losses[thirds == k].mean(0), 5).tolist(),
                    strict=True,
                )
            ),
        }
        for k, name in enumerate(THIRDS)
    }


def markdown(prior_name: str, table: dict) -> str:
    lines = [
        f"# {prior_name}: noise-prediction loss by third of the head",
        "",
        "Mean over timesteps " + ", ".join(map(str, TIMESTEPS)) + " (fixed noise); the "
        "held-out subjects' excess over the training subjects in brackets.",
        "",
        "| split | " + " | ".join(THIRDS) + " |",
        "|---" * (1 + len(THIRDS)) + "|",
    ]
    train = table["train"]
    for split, parts in table.items():
        cells = []
        for name in THIRDS:
            loss = parts[name]["loss"]
            excess = "" if split == "train" else f" ({loss / train[name]['loss'] - 1:+.0%})"
            cells.append(f"{loss:.4f}{excess}")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("prior", help="a shipped 2D IXI prior's name or a checkpoint folder")
    parser.add_argument("--splits", nargs="+", default=["train", "validation", "test"])
    parser.add_argument("--slices", type=int, default=480, help="random extent slices per split")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    prior = load_prior(args.prior)
    table = {split: split_losses(prior, split, args.slices) for split in args.splits}
    text = markdown(args.prior, table)
    if args.json:
        command = "python benchmarks/prior_loss_by_position.py " + " ".join(sys.argv[1:])
        record = {"command": command, "prior": args.prior, "timesteps": TIMESTEPS, **table}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
