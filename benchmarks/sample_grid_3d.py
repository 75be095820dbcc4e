"""Figure of unconditional samples from a 3D prior: the three central slices of each sample,
under the same slices of a real held-out IXI test volume for comparison.

This made ``campaign/milestones/brain_t1_3d/diffusion/samples.png`` (then shipped as
``medldm/models/weights/brain_t1_3d``)::

    .venv/bin/python benchmarks/sample_grid_3d.py campaign/milestones/brain_t1_3d/diffusion \
        samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch

from medldm.models.prior import load_prior
from medldm.train.data import ixi_volumes

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="shipped 3D prior name or checkpoint folder")
    parser.add_argument("output", type=Path, help="PNG to write")
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prior = load_prior(args.prior, device="cpu")
    if prior.spatial_dims != 3:
        raise SystemExit(f"{args.prior} is a {prior.spatial_dims}D prior; this figure is for 3D")
    with torch.no_grad():
        generator = torch.Generator().manual_seed(args.seed)
        samples = prior.sample(args.samples, n_steps=args.steps, generator=generator)
    samples = samples.clamp(0, 1)[:, 0].cpu().numpy()
    real, _ = ixi_volumes("test", prior.image_size, downsample=2)
    volumes = [real[0], *samples]
    names = ["IXI test volume (real)"] + [f"sample {i + 1}" for i in range(len(samples))]
    fig, axes = plt.subplots(len(volumes), 3, figsize=(5.4, 1.9 * len(volumes)))
    for row, (volume, name) in enumerate(zip(volumes, names, strict=True)):
        ci, cj, ck = (s // 2 for s in volume.shape)
        planes = ((volume[:, :, ck], "k"), (volume[:, cj, :], "j"), (volume[ci, :, :], "i"))
        for col, (plane, axis) in enumerate(planes):
            ax = axes[row, col]
            ax.imshow(np.rot90(plane), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
            if row == 0:
                ax.set_title(f"central slice {axis}", fontsize=7)
    size = "x".join(str(s) for s in prior.image_size)
    fig.suptitle(f"{args.prior}: DDIM {args.steps} steps, seed {args.seed} ({size})", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
