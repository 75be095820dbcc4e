"""Autoencoder reconstruction quality on held-out data: the ceiling of any latent-only estimate.

For a prior (shipped name or checkpoint folder), encode and decode (posterior mean) the
held-out test split of its data card and report PSNR/SSIM with medldm's metric convention
(magnitude, data range = ground truth max - min, per image, whole image):

* ``ixi_t1``: the central ``--slices`` axial slices of each test subject at 128x128;
* ``mednist``: the HeadCT/ChestCT/AbdomenCT test blocks (every ``--stride``-th image);
* ``microscopy``: the whole held-out test image on its own grid (convolutional prior), or
  with ``--crop 256`` its central 256x256 crop, the image the LDM benchmark scores;
* ``ixi_t1`` with a 3D prior: the whole test volumes at 4 mm;
* ``brain_mri_native``: every ``--stride``-th foreground axial slice of the test patient at
  the scanner's own matrix and spacing (whole slices, cut to the networks' size multiple).

``--card`` scores a prior on another card's held-out slices than its own (e.g. the 2 mm
``brain_t1_2d`` autoencoder on ``brain_mri_native``), ``--split validation`` on the
validation split instead of the test split (for choices made before the test).

``--by-third`` (``ixi_t1``, 2D priors) scores every foreground slice of the whole IXI
volumes of ``--split`` as the volume bench does (``configs/bench/ldm_volume.yaml``'s cases:
each volume's data range, no ROI, the foreground extent split into inferior, middle and
superior thirds) and gives the mean per third; ``--beside <slices.csv>`` adds that suite's
mean slice PSNR per solver and third for one ``--operator``, so the ceiling and what the
solvers reach stand side by side.

With ``--by-third``, ``--linear-components 8 12 16`` scores block-PCA codecs of those
sizes the same way (16 components of 4 x 4 blocks are lossless).

``--linear-reference`` also scores a *linear* codec with the same latent size on the same
images: PCA of the non-overlapping ``f x f`` pixel blocks (``f`` = the autoencoder's
downsampling factor) fitted on the training split, keeping ``latent_channels`` components,
i.e. exactly as many numbers per image as the autoencoder's latent. A trained nonlinear
autoencoder should beat it; one that does not is under-trained, not at its capacity.

Run::

    .venv/bin/python benchmarks/autoencoder_ceiling.py brain_t1_2d [--json out.json]
    .venv/bin/python benchmarks/autoencoder_ceiling.py brain_t1_2d --linear-reference
    .venv/bin/python benchmarks/autoencoder_ceiling.py brain_t1_2d --card brain_mri_native \
        --split validation --stride 4 --linear-reference
    .venv/bin/python benchmarks/autoencoder_ceiling.py brain_t1_2d --by-third \
        --beside benchmarks/results/ldm_volume/slices.csv --operator mri_4x
    .venv/bin/python benchmarks/autoencoder_ceiling.py brain_t1_2d --by-third \
        --split validation --linear-components 8 10 12 14
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from medldm.metrics import psnr, ssim
from medldm.models.block_pca import BlockPCACodec
from medldm.models.prior import load_prior
from medldm.train.data import (
    _pad_or_crop,
    ixi_slices,
    ixi_volumes,
    mednist_images,
    native_brain_slices,
)


def held_out_images(
    prior,
    n_slices: int,
    stride: int,
    crop: int | None = None,
    card: str | None = None,
    split: str = "test",
) -> tuple[np.ndarray | list[np.ndarray], str]:
    """Held-out images in [0, 1] shaped like the prior's training images (a list of whole
    slices of different sizes for ``brain_mri_native``)."""
    card = card or prior.meta.get("data_card")
    if card == "brain_mri_native":
        slices, _ = native_brain_slices(split)
        multiple = prior.size_multiple
        cut = [
            s[: s.shape[0] // multiple * multiple, : s.shape[1] // multiple * multiple]
            for s in slices[::stride]
        ]
        return cut, f"brain_mri_native {split} patient, every {stride}th axial slice, native grid"
    if split != "test":
        raise SystemExit(f"--split {split}: only brain_mri_native and --by-third take it")
    if card == "ixi_t1" and prior.spatial_dims == 3:
        volumes, _ = ixi_volumes("test", prior.image_size, downsample=2)
        return volumes, "IXI test subjects, whole volumes at 4 mm"
    if card == "ixi_t1":
        slices, subjects = ixi_slices("test", prior.image_size[0])
        picked = []
        for subject in dict.fromkeys(subjects):
            index = [i for i, s in enumerate(subjects) if s == subject]
            middle = len(index) // 2
            picked += index[max(0, middle - n_slices // 2) : middle + (n_slices + 1) // 2]
        return slices[picked], f"IXI test subjects, {n_slices} central foreground axial slices each"
    if card == "mednist":
        images, _ = mednist_images("test")
        return images[::stride], f"MedNIST CT test blocks, every {stride}th image"
    if card == "microscopy":
        from medldm.train.data import microscopy_images

        # whole planes on their own grid (the prior is convolutional): 64x64 tiles of mostly
        # background have almost no intensity range, which makes per-tile PSNR meaningless
        if crop:
            from medldm.bench.cases.cards import card_cases

            cases = card_cases("microscopy", "test", size=crop)
            crops = [c.image for c in cases if hasattr(c, "image")]
            return np.stack(crops), f"microscopy test image, central {crop}x{crop} crop"
        planes, _ = microscopy_images("test")
        multiple = prior.size_multiple
        cropped = [
            p[: p.shape[0] // multiple * multiple, : p.shape[1] // multiple * multiple]
            for p in planes
        ]
        return np.stack(cropped), "microscopy test image, whole planes"
    raise SystemExit(f"no held-out set known for data card {card!r}")


def summarize(pairs) -> dict[str, float]:
    """Mean/std PSNR and SSIM over (estimate, truth) pairs, skipping constant truths
    (medldm.metrics convention: data range = truth max - min)."""
    psnrs, ssims = [], []
    for estimate, truth in pairs:
        if truth.max() > truth.min():
            psnrs.append(psnr(estimate, truth))
            ssims.append(ssim(estimate, truth))
    return {
        "n_images": len(psnrs),
        "psnr_mean": float(np.mean(psnrs)),
        "psnr_std": float(np.std(psnrs)),
        "ssim_mean": float(np.mean(ssims)),
        "ssim_std": float(np.std(ssims)),
    }


@torch.no_grad()
def ceiling(prior, images, batch_size: int = 16) -> dict[str, float]:
    pairs = []
    if isinstance(images, list):  # whole slices of different sizes, one at a time
        for image in images:
            x = torch.from_numpy(image)[None, None].to(prior.device)
            pairs.append((prior.decode(prior.encode(x)).clamp(0, 1).cpu().numpy()[0, 0], image))
        return summarize(pairs)
    whole = images.shape[1:] != tuple(prior.image_size)  # larger planes, one at a time
    step = 1 if whole else batch_size
    for start in range(0, len(images), step):
        chunk = images[start : start + step]
        batch = chunk if whole else np.stack([_pad_or_crop(a, prior.image_size) for a in chunk])
        x = torch.from_numpy(batch)[:, None].to(prior.device)
        x_hat = prior.decode(prior.encode(x)).clamp(0, 1).cpu().numpy()[:, 0]
        pairs += zip(x_hat, batch, strict=True)
    return summarize(pairs)


THIRDS = ("inferior", "middle", "superior")


@torch.no_grad()
def ceiling_by_third(
    prior, split: str = "test", batch_size: int = 16, round_trip=None
) -> dict[str, dict]:
    """The autoencoder's PSNR/SSIM on every foreground slice of the IXI volumes of
    ``split`` (the volume bench's cases and per-slice scores), mean per third.
    ``round_trip`` (a batch ``(B, 1, H, W)`` -> its reconstruction) replaces the prior's
    encode and decode, e.g. a linear codec's (:func:`linear_round_trip`)."""
    from medldm.bench.cases.cards import card_cases
    from medldm.metrics.scoring import volume_slice_scores

    if round_trip is None:

        def round_trip(x):
            return prior.decode(prior.encode(x.to(prior.device))).float().cpu()

    scores: dict[str, list[tuple[float, float]]] = {third: [] for third in THIRDS}
    for case in card_cases("ixi_t1", split, size=prior.image_size[0], slices=None):
        volume = case.image.astype(np.float32)
        x = torch.from_numpy(volume)[:, None]
        decoded = [
            round_trip(x[i : i + batch_size]).clamp(0, 1) for i in range(0, len(x), batch_size)
        ]
        extent = case.metadata["extent"]
        values = volume_slice_scores(
            torch.cat(decoded)[:, 0].numpy(),
            volume,
            [int(item["slice"]) for item in extent],
            data_range=float(volume.max() - volume.min()),
        )
        for item, p, q in zip(extent, values["psnr"], values["ssim"], strict=True):
            scores[item["third"]].append((float(p), float(q)))
    return {
        third: {
            "n_slices": len(pairs),
            "psnr_mean": float(np.mean([p for p, _ in pairs])),
            "ssim_mean": float(np.mean([q for _, q in pairs])),
        }
        for third, pairs in scores.items()
    }


def linear_round_trip(prior, components: int):
    """Encode and decode by the block-PCA codec with ``components`` of the prior's
    ``f x f`` blocks, fitted on the prior's training split (``ceiling_by_third``'s
    ``round_trip``); ``f * f`` components are lossless."""
    factor = prior.downsampling_factor
    codec = BlockPCACodec(factor, components).fit(training_images(prior))

    def round_trip(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(codec.reconstruct(x[:, 0].numpy()))[:, None].float()

    return round_trip


def solvers_by_third(slices_csv: Path, operator: str) -> dict[str, dict[str, float]]:
    """``{solver: {third: mean slice PSNR}}`` of one operator in a bench's slices.csv (the
    report's by-third summary: slices.csv holds the slices of ``ok`` volume rows only)."""
    import csv

    from medldm.bench.results import STATUS_OK
    from medldm.bench.summary import summarise_by_third

    with slices_csv.open(newline="") as handle:
        rows = [{**r, "status": STATUS_OK} for r in csv.DictReader(handle)]
    result: dict[str, dict[str, float]] = {}
    for line in summarise_by_third(r for r in rows if r["operator"] == operator):
        result.setdefault(line.solver, {})[line.third] = line.psnr.mean
    return result


def main_by_third(args: argparse.Namespace, prior) -> None:
    """``--by-third``: print (and write) the ceiling per third beside the solvers'."""
    if prior.spatial_dims != 2 or prior.meta.get("data_card") != "ixi_t1":
        raise SystemExit("--by-third needs a 2D prior of the ixi_t1 card")
    result = {"prior": str(args.prior), "split": args.split}
    result["autoencoder"] = ceiling_by_third(prior, args.split)
    for components in args.linear_components or []:
        codec = ceiling_by_third(prior, args.split, round_trip=linear_round_trip(prior, components))
        result.setdefault("linear", {})[str(components)] = codec
        print(
            f"block PCA, {components} components: "
            + ", ".join(f"{third} {codec[third]['psnr_mean']:.2f} dB" for third in THIRDS)
        )
    if args.beside:
        result["beside"] = {"file": str(args.beside), "operator": args.operator}
        result["solvers"] = solvers_by_third(args.beside, args.operator)
    for third in THIRDS:
        ae = result["autoencoder"][third]
        others = ", ".join(
            f"{solver} {thirds[third]:.2f}" for solver, thirds in result.get("solvers", {}).items()
        )
        print(
            f"{third}: autoencoder {ae['psnr_mean']:.2f} dB / {ae['ssim_mean']:.4f} "
            f"({ae['n_slices']} slices){'; ' + others if others else ''}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def training_images(prior, card: str | None = None) -> list[np.ndarray]:
    """Training-split images (2D arrays in [0, 1]) of ``card`` (default: the prior's)."""
    card = card or prior.meta.get("data_card")
    if card == "brain_mri_native":
        return native_brain_slices("train")[0]
    if card == "ixi_t1" and prior.spatial_dims == 2:
        return list(ixi_slices("train", prior.image_size[0])[0])
    if card == "mednist":
        return list(mednist_images("train")[0])
    if card == "microscopy":
        from medldm.train.data import microscopy_images

        return microscopy_images("train")[0]
    raise SystemExit(f"--linear-reference: no 2D training set known for data card {card!r}")


def linear_reference(prior, images, card: str | None = None) -> dict[str, float]:
    """PSNR/SSIM of :class:`BlockPCACodec` with the prior's latent size on ``images``,
    fitted on the training split of ``card`` (default: the prior's)."""
    factor = prior.downsampling_factor
    codec = BlockPCACodec(factor, prior.latent_channels).fit(training_images(prior, card))
    pairs = []
    for truth in images:
        h, w = (s // factor * factor for s in truth.shape)
        truth = truth[:h, :w]
        pairs.append((np.clip(codec.reconstruct(truth[None])[0], 0, 1), truth))
    return {
        **summarize(pairs),
        "codec": f"PCA of {factor}x{factor} blocks, {prior.latent_channels} components "
        "(fitted on the training split)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="shipped prior name or checkpoint folder")
    parser.add_argument("--slices", type=int, default=10)
    parser.add_argument("--stride", type=int, default=10)
    parser.add_argument("--crop", type=int, help="microscopy: score the central crop only")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--card", help="score on this data card's held-out images")
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument(
        "--linear-reference",
        action="store_true",
        help="also score a block-PCA codec with the same latent size (see module docstring)",
    )
    parser.add_argument(
        "--by-third", action="store_true", help="IXI whole volumes, per third (see docstring)"
    )
    parser.add_argument("--beside", type=Path, help="--by-third: a bench's slices.csv")
    parser.add_argument(
        "--linear-components",
        type=int,
        nargs="+",
        help="--by-third: also score block-PCA codecs with these numbers of components",
    )
    parser.add_argument("--operator", default="mri_4x", help="--beside: its operator")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    prior = load_prior(args.prior, device=args.device)
    if args.by_third:
        main_by_third(args, prior)
        return
    images, description = held_out_images(
        prior, args.slices, args.stride, args.crop, args.card, args.split
    )
    result = {"prior": str(args.prior), "held_out": description, **ceiling(prior, images)}
    print(
        f"{args.prior}: {description}: "
        f"PSNR {result['psnr_mean']:.2f} ± {result['psnr_std']:.2f} dB, "
        f"SSIM {result['ssim_mean']:.4f} ± {result['ssim_std']:.4f} (n={result['n_images']})"
    )
    if args.linear_reference:
        if prior.spatial_dims != 2:
            raise SystemExit("--linear-reference is implemented for 2D priors only")
        reference = linear_reference(prior, images, args.card)
        result["linear_reference"] = reference
        print(
            f"  linear reference ({reference['codec']}): "
            f"PSNR {reference['psnr_mean']:.2f} ± {reference['psnr_std']:.2f} dB, "
            f"SSIM {reference['ssim_mean']:.4f} ± {reference['ssim_std']:.4f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
