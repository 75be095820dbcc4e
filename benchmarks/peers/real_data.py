"""The peers on measured raw data: the real 8-coil brain k-space and the 32-coil twix phantom
(``$MEDLDM_DATA_DIR/raw_mri/``), and medldm's ESPIRiT coil maps beside BART's ``ecalib``.

* **Brain** (``brain_8coil_cartesian_ksp.npy``: 230 x 180, 8 coils, 2D Poisson-disc, 12.4 %
  sampled, no fully sampled reference): every method of the peer table on the same k-space
  with the same coil maps (medldm's ESPIRiT on the 24 x 24 fully sampled centre); scored by
  agreement with BART's l1-wavelet reconstruction (NRMSE and SSIM of magnitudes, each image
  scaled to BART's by least squares first), and a figure.
* **Phantom** (``phantom_32coil_twix_MID00243.dat``: 64 x 64, 32 coils, fully sampled):
  undersampled retrospectively as ``medldm-recon kspace=... acceleration=4|8`` does
  (fastMRI random lines along the file's phase-encode axis, seed 0), coil maps by ESPIRiT on
  the FULLY sampled data (oracle maps: 5 or 3 centre lines cannot calibrate 32 coils),
  scored against the root sum of squares of the fully sampled coil images.
* **Coil maps**: per-coil correlation of medldm's ESPIRiT maps with ``bart ecalib -m 1`` on
  the same calibration region, after removing the per-pixel phase both are free to choose.

Weights: the ones tuned on the simulated validation cases by ``peer_table.py`` for
``mri_multicoil_8x`` (brain, phantom 8x) and ``mri_multicoil_4x`` (phantom 4x), read from
``benchmarks/results/peers/results.csv``; the k-space is scaled so that the zero-filled
root-sum-of-squares image has its 99.5th percentile at 1 (the simulated cases' range).

Writes ``benchmarks/results/peers/real_data.md``, ``real_data.csv``, ``coil_maps.csv`` and
``brain_8coil.png``. Run (after ``peer_table.py``; a few minutes)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/peers/real_data.py
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cfl import read_cfl, write_cfl
from methods import KspaceCase, all_methods, bart_available
from peer_table import RESULTS, agreement, reconstruct_measured

from medldm.data.root import find_data_root
from medldm.io.raw_mri import read_raw_kspace, sampling_mask_from_zeros
from medldm.metrics.scoring import score
from medldm.recon.measured import (
    calibration_region,
    coil_maps,
    retrospective_mask,
    root_sum_of_squares,
)

REFERENCE = "bart pics -R W"


def tuned_weights(results: Path, operator: str) -> dict[str, float]:
    """``{method: weight}`` tuned on the simulated validation cases of ``operator``."""
    weights = {}
    with results.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["operator"] == operator and row["weight"]:
                weights[row["method"]] = float(row["weight"])
    if not weights:
        raise SystemExit(f"no tuned weights for {operator} in {results}: run peer_table.py")
    return weights


def normalised(kspace: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, float]:
    """The sampled k-space scaled so the zero-filled RSS image's 99.5th percentile is 1."""
    measured = (kspace * mask[None]).astype(np.complex64)
    scale = float(np.percentile(root_sum_of_squares(measured), 99.5))
    return measured / scale, scale


def ecalib(kspace: np.ndarray, region: int) -> np.ndarray:
    """``bart ecalib -m 1 -r <region>`` maps, as ``(coils, H, W)``."""
    with tempfile.TemporaryDirectory(prefix="medldm_ecalib_") as folder:
        base = Path(folder)
        write_cfl(base / "kspace", np.moveaxis(kspace, 0, -1)[:, :, None, :])
        command = ["bart", "ecalib", "-m", "1", "-r", str(region)]
        command += [str(base / "kspace"), str(base / "maps")]
        subprocess.run(command, check=True, capture_output=True)
        maps = read_cfl(base / "maps").reshape(kspace.shape[1], kspace.shape[2], -1)
    return np.moveaxis(maps, -1, 0)


def map_correlations(ours: np.ndarray, theirs: np.ndarray) -> tuple[list[float], float]:
    """Per-coil ``|<s_ours, s_bart>| / (||s_ours|| ||s_bart||)`` over the pixels where both
    sets of maps are non-zero, after rotating ours by the per-pixel common phase (ESPIRiT
    maps are defined up to it); and the fraction of pixels in that support."""
    support = (np.sum(np.abs(ours) ** 2, 0) > 1e-6) & (np.sum(np.abs(theirs) ** 2, 0) > 1e-6)
    common = np.sum(np.conj(ours) * theirs, 0)
    rotation = np.exp(1j * np.angle(common))
    aligned = ours * rotation[None]
    correlations = []
    for a, b in zip(aligned, theirs, strict=True):
        a, b = a[support], b[support]
        correlations.append(
            float(np.abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
        )
    return correlations, float(support.mean())


#: Methods and weights of the phantom sweep: do the simulated-data weights transfer?
SWEEP_METHODS = (
    "tv (no phase constraint)",
    "l1_wavelet (no phase constraint)",
    "bart pics -R T",
    "bart pics -R W",
)
SWEEP_WEIGHTS = (0.0003, 0.001, 0.003, 0.01)


def weight_sweep(raw: Any, maps: np.ndarray, acceleration: int = 4) -> list[str]:
    """PSNR of the phantom at ``acceleration`` for a few weights per method (Markdown)."""
    mask = retrospective_mask(raw.shape, acceleration, raw.phase_encode_axis, 0)
    kspace, scale = normalised(raw.kspace, mask)
    truth = root_sum_of_squares(raw.kspace) / scale
    case = KspaceCase("sweep", kspace, mask, maps, truth, f"mri_multicoil_{acceleration}x")
    methods = {method.name: method for method in all_methods()}
    lines = [
        f"Weight sweep on the phantom at {acceleration}x (PSNR dB; the table above uses the "
        "weights tuned on simulated IXI validation cases):",
        "",
        "| method | " + " | ".join(f"{w:g}" for w in SWEEP_WEIGHTS) + " |",
        "|---|" + "---|" * len(SWEEP_WEIGHTS),
    ]
    for name in SWEEP_METHODS:
        cells = [score(np.abs(methods[name].run(case, w)[0]), truth)["psnr"] for w in SWEEP_WEIGHTS]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return [*lines, ""]


def figure(images: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(images)
    columns = 4
    rows = (len(names) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows))
    for axis in np.ravel(axes):
        axis.axis("off")
    for axis, name in zip(np.ravel(axes), names, strict=False):
        magnitude = np.abs(images[name])
        axis.imshow(magnitude, cmap="gray", vmin=0, vmax=np.percentile(magnitude, 99.5))
        axis.set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not bart_available():
        raise SystemExit("BART is needed (apt-get install bart)")
    folder = args.output_dir
    root = find_data_root(required=True) / "raw_mri"
    results = folder / "results.csv"
    rows, map_rows, lines = [], [], []

    # --- the real brain -------------------------------------------------------------------
    raw = read_raw_kspace(root / "brain_8coil_cartesian_ksp.npy")
    mask = sampling_mask_from_zeros(raw.kspace)
    kspace, _ = normalised(raw.kspace, mask)
    started = time.perf_counter()
    maps, maps_text = coil_maps(torch.from_numpy(kspace), mask)
    maps = maps.numpy().astype(np.complex64)
    print(f"brain: {raw.describe()}; {maps_text} ({time.perf_counter() - started:.0f} s)")
    weights = tuned_weights(results, "mri_multicoil_8x")
    outputs = reconstruct_measured(kspace, mask, maps, "mri_multicoil_8x", weights, name="brain")
    images = {name: image for name, (image, _) in outputs.items()}
    agree = agreement(images, REFERENCE)
    for name, (_, seconds) in outputs.items():
        rows.append(
            {
                "case": "brain_8coil",
                "method": name,
                "weight": weights.get(name, ""),
                "nrmse_vs_bart_w": agree[name]["nrmse"],
                "ssim_vs_bart_w": agree[name]["ssim"],
                "psnr": "",
                "ssim": "",
                "seconds": seconds,
            }
        )
    figure(
        images,
        folder / "brain_8coil.png",
        "real 8-coil brain k-space (12.4 % sampled, Poisson disc); same ESPIRiT maps for all",
    )
    region = calibration_region(mask)
    bart_maps = ecalib(kspace, min(region))
    correlations, support = map_correlations(maps, bart_maps)
    map_rows += [
        {"case": "brain_8coil", "coil": c, "correlation": v} for c, v in enumerate(correlations)
    ]
    lines += [
        "## Real 8-coil brain k-space (no reference: agreement with BART's l1-wavelet)",
        "",
        f"{raw.describe()}; {100 * mask.mean():.1f} % sampled; coil maps: {maps_text}. "
        "Weights tuned on simulated `mri_multicoil_8x` validation cases. NRMSE and SSIM of "
        "each magnitude image against BART `pics -R W`'s (scaled to it by least squares). "
        "Figure: `brain_8coil.png`.",
        "",
        "| method | weight | NRMSE vs BART W | SSIM vs BART W | seconds |",
        "|---|---|---|---|---|",
    ]
    for row in [r for r in rows if r["case"] == "brain_8coil"]:
        lines.append(
            f"| {row['method']} | {row['weight'] or '-'} | {row['nrmse_vs_bart_w']:.3f} | "
            f"{row['ssim_vs_bart_w']:.3f} | {row['seconds']:.1f} |"
        )
    lines += [
        "",
        f"Coil maps, medldm ESPIRiT vs `bart ecalib -m 1 -r {min(region)}` (same k-space): "
        f"per-coil correlation {', '.join(f'{v:.3f}' for v in correlations)} "
        f"(mean {np.mean(correlations):.3f}, min {np.min(correlations):.3f}) over the "
        f"{100 * support:.0f} % of pixels where both are non-zero.",
        "",
    ]

    # --- the twix phantom, retrospectively undersampled -----------------------------------
    raw = read_raw_kspace(root / "phantom_32coil_twix_MID00243.dat")
    full = np.ones(raw.shape, bool)
    started = time.perf_counter()
    oracle_maps, oracle_text = coil_maps(torch.from_numpy(raw.kspace), full)
    oracle_maps = oracle_maps.numpy().astype(np.complex64)
    print(f"phantom: {raw.describe()}; {oracle_text} ({time.perf_counter() - started:.0f} s)")
    phantom_bart = ecalib(raw.kspace / np.abs(raw.kspace).max(), min(raw.shape))
    phantom_corr, phantom_support = map_correlations(oracle_maps, phantom_bart)
    map_rows += [
        {"case": "phantom_twix", "coil": c, "correlation": v} for c, v in enumerate(phantom_corr)
    ]
    for acceleration in (4, 8):
        mask = retrospective_mask(raw.shape, acceleration, raw.phase_encode_axis, 0)
        kspace, scale = normalised(raw.kspace, mask)
        truth = root_sum_of_squares(raw.kspace) / scale
        operator = f"mri_multicoil_{acceleration}x"
        weights = tuned_weights(results, operator)
        name = f"phantom_{acceleration}x"
        print(f"{name}: {100 * mask.mean():.1f} % sampled")
        outputs = reconstruct_measured(kspace, mask, oracle_maps, operator, weights, name=name)
        for method, (image, seconds) in outputs.items():
            values = score(np.abs(image), truth)
            rows.append(
                {
                    "case": name,
                    "method": method,
                    "weight": weights.get(method, ""),
                    "nrmse_vs_bart_w": "",
                    "ssim_vs_bart_w": "",
                    "psnr": values["psnr"],
                    "ssim": values["ssim"],
                    "seconds": seconds,
                }
            )
    lines += [
        "## Twix phantom (32 coils, 64 x 64), retrospectively undersampled",
        "",
        "fastMRI random lines along the file's phase-encode axis (seed 0, as "
        "`medldm-recon kspace=... acceleration=4|8`); coil maps: "
        f"ORACLE, {oracle_text} of the fully sampled data, the same for every method; "
        "PSNR/SSIM against the root sum of squares of the fully sampled coil images (data "
        "range of that reference). Weights tuned on simulated `mri_multicoil_4x|8x` "
        "validation cases.",
        "",
        "| case | method | weight | PSNR dB | SSIM | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in [r for r in rows if r["case"].startswith("phantom")]:
        lines.append(
            f"| {row['case']} | {row['method']} | {row['weight'] or '-'} | "
            f"{row['psnr']:.2f} | {row['ssim']:.3f} | {row['seconds']:.1f} |"
        )
    lines += [
        "",
        "Coil maps on the fully sampled phantom, medldm ESPIRiT vs "
        f"`bart ecalib -m 1 -r {min(raw.shape)}`: "
        f"mean per-coil correlation {np.mean(phantom_corr):.3f} (min {np.min(phantom_corr):.3f})"
        f" over the {100 * phantom_support:.0f} % of pixels where both are non-zero.",
        "",
        *weight_sweep(raw, oracle_maps),
    ]

    folder.mkdir(parents=True, exist_ok=True)
    fields = list(rows[0])
    with (folder / "real_data.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    with (folder / "coil_maps.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["case", "coil", "correlation"])
        writer.writeheader()
        writer.writerows(map_rows)
    header = [
        "# medldm beside BART and SigPy on measured raw MRI data",
        "",
        "Written by `benchmarks/peers/real_data.py`; rerun it, do not edit. Seconds: wall "
        "time, one CPU thread, a 2-core machine shared with other jobs.",
        "",
    ]
    (folder / "real_data.md").write_text("\n".join(header + lines))
    print(f"wrote {folder}/real_data.md, real_data.csv, coil_maps.csv, brain_8coil.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
