"""Does the k-space hold-out error rank methods as their true error does? On simulated
k-space of real clinical slices, where the truth is known.

For every ``--stride``-th foreground axial slice of the ``brain_mri_native`` validation
patient (never the test patient), at the scanner's own matrix: 8-coil k-space (birdcage
maps) with complex Gaussian noise, saved as a fully sampled ``.npy`` and reconstructed as a
user would (:func:`medldm.recon.measured.reconstruct_kspace`, ``acceleration=4|8``, fastMRI
random lines, ``holdout_splits=5``). Every method (the preset's LDM, CG-SENSE, TV,
l1-wavelet) then has its true PSNR / NMSE against the fully sampled reference and its
hold-out error, which never saw the reference. Per slice, the Spearman rank correlation
over the methods between the hold-out error and the true NMSE, and the fraction of method
pairs the two put in the same order; their means over slices.

Run::

    .venv/bin/python benchmarks/kspace_holdout_ranking.py --stride 12 --acceleration 4 \\
        --out benchmarks/results/kspace_holdout
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from medldm.physics.coils import birdcage_sensitivities
from medldm.physics.mri import fft2c
from medldm.problems.model_view import picture_to_model
from medldm.recon.measured import reconstruct_kspace
from medldm.train.data import native_brain_slices


def coil_kspace(image: np.ndarray, n_coils: int, noise: float, seed: int) -> np.ndarray:
    """Fully sampled ``(coils, rows, cols)`` k-space of a model-view slice, in the picture
    layout (anterior at the top) that raw k-space has, with complex Gaussian noise of
    ``noise`` times the k-space's RMS per coil."""
    picture = torch.from_numpy(picture_to_model(image))  # its own inverse
    maps = birdcage_sensitivities(n_coils, tuple(picture.shape))
    kspace = fft2c(maps * picture)
    generator = torch.Generator().manual_seed(seed)
    sigma = noise * float(kspace.abs().pow(2).mean().sqrt())
    kspace = kspace + sigma * torch.complex(
        torch.randn(kspace.shape, generator=generator),
        torch.randn(kspace.shape, generator=generator),
    )
    return kspace.numpy().astype(np.complex64)


def pairwise_agreement(a: list[float], b: list[float]) -> float:
    """Fraction of pairs ``(i, j)`` that ``a`` and ``b`` order the same way."""
    pairs = list(itertools.combinations(range(len(a)), 2))
    same = sum((a[i] - a[j]) * (b[i] - b[j]) > 0 for i, j in pairs)
    return same / len(pairs)


def score_case(path: Path, acceleration: float, splits: int, seed: int) -> dict:
    result = reconstruct_kspace(
        path, "mri_brain_4x", acceleration=acceleration, holdout_splits=splits, seed=seed
    )
    m = result.metrics
    rows = {"ldm": m["ldm"], **m["classical"]}
    names = list(rows)
    nmse = [rows[n]["nmse"] for n in names]
    held = [rows[n]["holdout_error"] for n in names]
    return {
        "methods": {
            n: {k: rows[n][k] for k in ("psnr_db", "ssim", "nmse", "holdout_error", "residual")}
            for n in names
        },
        "spearman": float(spearmanr(nmse, held).statistic),
        "pairs_agree": pairwise_agreement(nmse, held),
        "best_by_truth": names[int(np.argmin(nmse))],
        "best_by_holdout": names[int(np.argmin(held))],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=12, help="every n-th validation slice")
    parser.add_argument("--acceleration", type=float, default=4)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.02, help="noise / k-space RMS")
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--contrast", default="T1W")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/kspace_holdout"))
    args = parser.parse_args()
    slices, names = native_brain_slices("validation", contrasts=(args.contrast,))
    cases = {}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(0, len(slices), args.stride):
            path = Path(folder) / f"slice{index:03d}.npy"
            np.save(path, coil_kspace(slices[index], args.coils, args.noise, seed=index))
            case = score_case(path, args.acceleration, args.splits, seed=index)
            cases[f"{names[index]}/{index:03d}"] = case
            print(
                f"{names[index]} #{index}: spearman {case['spearman']:+.2f}, pairs "
                f"{case['pairs_agree']:.2f}, best {case['best_by_truth']} (truth) / "
                f"{case['best_by_holdout']} (hold-out)",
                flush=True,
            )
    summary = {
        "what": f"brain_mri_native validation patient, {args.contrast}, every {args.stride}th "
        f"foreground slice at its own matrix; {args.coils}-coil birdcage k-space, noise "
        f"{args.noise} x RMS, fastMRI random lines {args.acceleration:g}x; "
        f"{args.splits} hold-out splits",
        "mean_spearman": float(np.mean([c["spearman"] for c in cases.values()])),
        "mean_pairs_agree": float(np.mean([c["pairs_agree"] for c in cases.values()])),
        "best_found": float(
            np.mean([c["best_by_truth"] == c["best_by_holdout"] for c in cases.values()])
        ),
        "cases": cases,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"ranking_{args.contrast}_{args.acceleration:g}x.json"
    (args.out / name).write_text(json.dumps(summary, indent=2))
    print(
        f"mean Spearman {summary['mean_spearman']:+.3f}, pairs in the same order "
        f"{summary['mean_pairs_agree']:.3f}, best method found {summary['best_found']:.2f} "
        f"({len(cases)} slices) -> {args.out / name}"
    )


if __name__ == "__main__":
    main()
