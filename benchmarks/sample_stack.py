"""Figure: a whole head sampled from 2D slice-conditioned priors, seen along z.

Each prior samples one stack of ``S`` axial slices at once, told their positions evenly over
the foreground extent (0 inferior to 1 superior) and, for a stack-aware prior
(``unet.neighbour_slices``), that they are contiguous (``adjacent=True``), so each slice is
denoised seeing its neighbours. ``S`` is the extent of a real IXI validation head (its
slices are 2 mm apart, as in training), shown in the first row. Columns: three axial slices
(inferior, middle, superior third) and the stack's central sagittal and coronal
reformats, where a prior without coupling along z shows slice-to-slice jumps.

Run::

    .venv/bin/python benchmarks/sample_stack.py campaign/milestones/brain_t1_slice_2d/diffusion \\
        ~/.cache/medldm/campaign/brain_t1_stack_2d/diffusion/prior --output stack_samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import torch

from medldm.data.cards import load_card
from medldm.data.datasets import iter_images
from medldm.models.prior import load_prior
from medldm.problems.model_view import fit_intensity, sample_model_slices

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def real_extent(subject: str, size: int = 128) -> np.ndarray:
    """The foreground-extent stack ``(S, size, size)`` of an IXI validation head, inferior
    first, in the card's model range."""
    from medldm.data.slices import crop_or_pad_to

    normalizer = load_card("ixi_t1").normalizer()
    for volume in iter_images("ixi_t1", "validation"):
        if volume.metadata.get("subject", "").startswith(subject):
            volume = volume.with_array(
                fit_intensity(normalizer, volume.array).forward(volume.array)
            )
            items = sample_model_slices(volume, None, plane="axial", sampling="foreground")
            return np.stack([crop_or_pad_to(np.asarray(i.pixels), (size, size)) for i in items])
    raise SystemExit(f"no IXI validation subject {subject}")


@torch.no_grad()
def sample_stack(prior_path: str, n_slices: int, steps: int, seed: int) -> np.ndarray:
    """One stack of ``n_slices`` slices from a slice-conditioned 2D prior, ``(S, H, W)``."""
    prior = load_prior(prior_path, device="cpu", precision="auto")
    if not prior.slice_conditioned:
        raise SystemExit(f"{prior_path} is not slice-conditioned (unet.slice_position)")
    where = torch.linspace(0, 1, n_slices)
    with prior.at_slice_positions(where, adjacent=True):
        stack = prior.sample(
            n_slices, n_steps=steps, generator=torch.Generator().manual_seed(seed), eta=1.0
        )
    return stack.clamp(0, 1)[:, 0].numpy()


def figure(stacks: list[np.ndarray], names: list[str], title: str, output: Path) -> None:
    fig, axes = plt.subplots(len(stacks), 5, figsize=(9.0, 1.95 * len(stacks)))
    for row, (stack, name) in enumerate(zip(stacks, names, strict=True)):
        s, h, w = stack.shape
        views = [
            stack[s // 6],
            stack[s // 2],
            stack[5 * s // 6],
            stack[:, :, w // 2],
            stack[:, h // 2],
        ]
        labels = ["axial, inferior", "axial, middle", "axial, superior", "sagittal", "coronal"]
        for col, (view, label) in enumerate(zip(views, labels, strict=True)):
            ax = axes[row, col]
            ax.imshow(view, cmap="gray", vmin=0, vmax=1, origin="lower", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=7)
            if row == 0:
                ax.set_title(label, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=80)


def prior_label(path: str) -> str:
    """The prior's name in a milestone or run folder path (``<prior>/diffusion[/prior]``).

    >>> prior_label("campaign/milestones/brain_t1_slice_2d/diffusion")
    'brain_t1_slice_2d'
    """
    parts = [p for p in Path(path).parts if p not in ("prior", "diffusion", "autoencoder")]
    return parts[-1] if parts else path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("priors", nargs="+", help="slice-conditioned 2D priors (folders)")
    parser.add_argument("--output", type=Path, required=True, help="PNG to write")
    parser.add_argument("--subject", default="IXI527", help="IXI validation head for S")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real = real_extent(args.subject)
    stacks = [real] + [sample_stack(p, len(real), args.steps, args.seed) for p in args.priors]
    names = [f"{args.subject} (real)"] + [prior_label(p) for p in args.priors]
    title = (
        f"{len(real)} slices sampled at once over the extent, DDIM {args.steps} steps "
        f"(eta 1), seed {args.seed}; sagittal and coronal: the stack's central reformats"
    )
    figure(stacks, names, title, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
