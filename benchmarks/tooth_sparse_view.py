"""Sparse-view CT on real measured data: the APS micro-CT tooth, 30 and 60 of its 181 views.

Data: ``raw_ct/tooth_aps_microct.h5`` under the data root (``MEDLDM_DATA_DIR`` or
``../shared/data``): a synchrotron micro-CT of a tooth (Data Exchange HDF5, 181 views over
180 degrees, 2 detector rows of 640 pixels, 10 flat and 10 dark fields; BSD-style licence,
UChicago Argonne, from the TomoPy repository).

What it does, top to bottom:

1. Reads the file and reconstructs it with all 181 views exactly as
   ``medldm-recon sinogram=FILE`` does (:func:`medldm.recon.sinogram.reconstruct_sinogram`):
   rotation centre from two independent estimates per row (opposite-view registration,
   FBP sharpness), their mean used; a window of the detector centred on the axis; TV
   (non-negative) with its weight chosen by the discrepancy principle (noise measured on
   the sinogram's background). That all-view TV image is the **reference**; the two
   estimates, the weight grid, the residuals and the noise estimate are in the results.
2. Keeps 30 and 60 of the 181 views, evenly spaced (indices ``round(k * 181 / n)``, their
   angles from the file), and reconstructs them with FBP, CG least squares (early stopping
   regularises: the iteration count is tuned) and TV (the weight is tuned).
3. Tuning is honest: the detector has two rows, two different slices of the tooth. Every
   parameter is chosen on **row 1** (validation: PSNR against row 1's own all-view
   reference) and the table scores **row 0** (test) with it. The TV weights of one grid are
   solved in one batched PDHG run (:func:`medldm.recon.sinogram.tv_for_weights`: TV is
   1-homogeneous, so scaled copies of the data give every weight with the same iterates).
   The weight that would have been best on row 0 in hindsight is reported beside the
   chosen one, so the cost of tuning on another slice is visible.
4. Scores: PSNR and SSIM (:mod:`medldm.metrics`) against the row-0 reference, data range
   = the reference's max - min, inside the reconstruction circle (pixels outside it are
   not measured by every view); images in attenuation per detector pixel (the file gives
   no pixel size). Seconds: one run of the method on row 0 at its chosen setting, one CPU
   thread. A sensitivity check rescores every estimate against the all-view TV references
   one grid step weaker and stronger.

Writes ``sparse_view.md`` (the table and the settings), ``sparse_view.json`` (every
number) and ``sparse_view.png`` (the images) under ``--out``. Run (about 10-15 minutes on one
CPU core; ``OMP_NUM_THREADS=1``; 500 PDHG iterations for every TV, the reference's
included)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tooth_sparse_view.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.data.root import find_data_root
from medldm.metrics import psnr, ssim
from medldm.physics.ct import ParallelBeamCT, inscribed_circle
from medldm.recon.sinogram import TV_STEP_RATIO, reconstruct_sinogram, tv_for_weights
from medldm.solvers.cg import ConjugateGradient
from medldm.solvers.tv import TotalVariation

TEST_ROW, VALIDATION_ROW = 0, 1
TV_GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
CG_MAX_ITERATIONS = 60


def evenly_spaced(n_total: int, n_views: int) -> np.ndarray:
    """Indices of ``n_views`` of ``n_total`` views, evenly spaced: ``round(k n_total / n)``."""
    return np.round(np.arange(n_views) * n_total / n_views).astype(int)


def scores(estimate: np.ndarray, reference: np.ndarray, circle: np.ndarray) -> dict[str, float]:
    data_range = float(reference.max() - reference.min())
    return {
        "psnr": float(psnr(estimate, reference, data_range=data_range, mask=circle)),
        "ssim": float(ssim(estimate, reference, data_range=data_range, mask=circle)),
    }


def timed(function, *args, **kwargs) -> tuple[Any, float]:
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def sparse_experiment(
    n_views: int,
    window: np.ndarray,
    angles: np.ndarray,
    offset: float,
    references: np.ndarray,
    tv_iterations: int,
) -> dict[str, Any]:
    """FBP, CG and TV from ``n_views`` views; parameters tuned on the validation row."""
    side = window.shape[1]
    circle = inscribed_circle((side, side)).numpy()
    index = evenly_spaced(window.shape[-1], n_views)
    physics = ParallelBeamCT(
        side, angles[index], n_detectors=side, circle=True, centre_offset=offset
    )
    y = torch.from_numpy(np.ascontiguousarray(window[:, None][..., index]))  # (rows, 1, bins, n)
    result: dict[str, Any] = {"views": n_views, "view_indices": index.tolist()}

    def score_row(images: torch.Tensor | np.ndarray, row: int) -> dict[str, float]:
        image = images[row, 0] if images.ndim == 4 else images[row]
        image = image.numpy() if isinstance(image, torch.Tensor) else image
        return scores(image, references[row], circle)

    # FBP: nothing to tune
    with torch.no_grad():
        fbp = physics.fbp(y)
    _, fbp_seconds = timed(physics.fbp, y[TEST_ROW : TEST_ROW + 1])
    result["fbp"] = {
        "test": score_row(fbp, TEST_ROW),
        "validation": score_row(fbp, VALIDATION_ROW),
        "seconds": fbp_seconds,
        "setting": "ramp filter",
    }

    # CG: the iteration count, read off one long run of both rows
    per_iteration: list[dict[str, dict[str, float]]] = []

    def record(_: int, x: torch.Tensor) -> None:
        per_iteration.append(
            {"test": score_row(x, TEST_ROW), "validation": score_row(x, VALIDATION_ROW)}
        )

    ConjugateGradient(n_iter=CG_MAX_ITERATIONS, tol=0.0).solve(y, physics, callback=record)
    validation_psnr = [entry["validation"]["psnr"] for entry in per_iteration]
    test_psnr = [entry["test"]["psnr"] for entry in per_iteration]
    chosen = int(np.argmax(validation_psnr))
    _, cg_seconds = timed(
        ConjugateGradient(n_iter=chosen + 1, tol=0.0).solve, y[TEST_ROW : TEST_ROW + 1], physics
    )
    result["cg"] = {
        "test": per_iteration[chosen]["test"],
        "validation": per_iteration[chosen]["validation"],
        "seconds": cg_seconds,
        "setting": f"{chosen + 1} iterations",
        "n_iter": chosen + 1,
        "validation_psnr_per_iteration": validation_psnr,
        "test_psnr_per_iteration": test_psnr,
        "test_best_in_hindsight": {
            "n_iter": int(np.argmax(test_psnr)) + 1,
            "psnr": float(np.max(test_psnr)),
        },
    }

    # TV: the weight, every weight of the grid in one batched run of both rows; each row
    # is scaled so that its own FBP's 99.5th percentile is 1 (as medldm-recon does)
    scale = torch.tensor(
        [float(np.percentile(fbp[row, 0].numpy(), 99.5)) for row in range(fbp.shape[0])]
    ).reshape(-1, 1, 1, 1)
    (estimates, tv_change), _ = timed(
        tv_for_weights, y / scale, physics, TV_GRID, tv_iterations, return_change=True
    )
    estimates = estimates * scale[None]
    tv_scores = [
        {"test": score_row(x, TEST_ROW), "validation": score_row(x, VALIDATION_ROW)}
        for x in estimates
    ]
    validation_psnr = [entry["validation"]["psnr"] for entry in tv_scores]
    test_psnr = [entry["test"]["psnr"] for entry in tv_scores]
    best = int(np.argmax(validation_psnr))
    solver = TotalVariation(
        weight=TV_GRID[best],
        n_iter=tv_iterations,
        constraint="nonnegative",
        step_ratio=TV_STEP_RATIO,
    )
    row_scale = scale[TEST_ROW : TEST_ROW + 1]
    _, tv_seconds = timed(solver.solve, y[TEST_ROW : TEST_ROW + 1] / row_scale, physics)
    result["tv"] = {
        "test": tv_scores[best]["test"],
        "validation": tv_scores[best]["validation"],
        "seconds": tv_seconds,
        "setting": f"weight {TV_GRID[best]:g}, {tv_iterations} iterations",
        "weight": TV_GRID[best],
        "grid": list(TV_GRID),
        "validation_psnr_per_weight": validation_psnr,
        "test_psnr_per_weight": test_psnr,
        "test_best_in_hindsight": {
            "weight": TV_GRID[int(np.argmax(test_psnr))],
            "psnr": float(np.max(test_psnr)),
        },
        "on_grid_edge": best in (0, len(TV_GRID) - 1),
        "last_relative_change": tv_change,
        "intensity_scale_per_row": scale.flatten().tolist(),
    }
    images = {
        "fbp": fbp[TEST_ROW, 0].numpy(),
        "tv": estimates[best][TEST_ROW, 0].numpy(),
    }
    cg_final = ConjugateGradient(n_iter=chosen + 1, tol=0.0).solve(
        y[TEST_ROW : TEST_ROW + 1], physics
    )
    images["cg"] = cg_final.estimate[0, 0].numpy()
    result["images"] = images
    result["all_tv_test_images"] = estimates[:, TEST_ROW, 0].numpy()
    return result


def sensitivity(
    experiments: list[dict[str, Any]], candidates: dict[float, np.ndarray], chosen: float, side: int
) -> list[dict[str, Any]]:
    """Every method's row-0 PSNR against the all-view TV references one grid step weaker
    and stronger than the chosen one."""
    circle = inscribed_circle((side, side)).numpy()
    weights = sorted(candidates)
    position = weights.index(chosen)
    rows = []
    for neighbour in (position - 1, position + 1):
        if not 0 <= neighbour < len(weights):
            continue
        reference = candidates[weights[neighbour]][TEST_ROW]
        for experiment in experiments:
            for method in ("fbp", "cg", "tv"):
                rows.append(
                    {
                        "reference_weight": weights[neighbour],
                        "views": experiment["views"],
                        "method": method,
                        **scores(experiment["images"][method], reference, circle),
                    }
                )
    return rows


def figure(
    experiments: list[dict[str, Any]], reference: np.ndarray, path: Path, centre: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmin, vmax = np.percentile(reference, [0.5, 99.8])
    columns = 1 + len(experiments)
    fig, axes = plt.subplots(3, columns, figsize=(3.2 * columns, 9.6), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    axes[0, 0].imshow(reference, cmap="gray", vmin=vmin, vmax=vmax)
    axes[0, 0].set_title("reference: TV, all 181 views", fontsize=9)
    for column, experiment in enumerate(experiments, start=1):
        for row, method in enumerate(("fbp", "cg", "tv")):
            entry = experiment[method]
            axes[row, column].imshow(
                experiment["images"][method], cmap="gray", vmin=vmin, vmax=vmax
            )
            axes[row, column].set_title(
                f"{method.upper()}, {experiment['views']} views: "
                f"{entry['test']['psnr']:.2f} dB / {entry['test']['ssim']:.3f}",
                fontsize=9,
            )
    fig.suptitle(
        f"APS tooth micro-CT, detector row {TEST_ROW} (test), rotation centre {centre:.2f}; "
        f"parameters tuned on row {VALIDATION_ROW}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(summary: dict[str, Any]) -> str:
    centre = summary["rotation_centre"]
    lines = [
        "# Sparse-view CT on measured data: the APS tooth micro-CT",
        "",
        "Written by `benchmarks/tooth_sparse_view.py` (rerun it, do not edit). Command:",
        "",
        "    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tooth_sparse_view.py",
        "",
        f"Data: `{summary['data']}` (181 views over 180 degrees from the file, 2 detector "
        "rows x 640 pixels, flat/dark corrected, -log). No pixel size in the file: "
        "intensities are attenuation per detector pixel.",
        "",
        "## Rotation centre (detector bin, 0-based; the middle bin is "
        f"{centre['detector_middle_bin']})",
        "",
        "| row | opposite views | FBP sharpness | difference (px) |",
        "|---|---|---|---|",
    ]
    for row, entry in centre["estimates"].items():
        lines.append(
            f"| {row} | {entry['opposite_views']:.3f} | {entry['fbp_sharpness']:.3f} | "
            f"{entry['difference_px']:.3f} |"
        )
    reference = summary["reference"]
    lines += [
        "",
        f"Used: {centre['used']:.3f} (the mean of the four), offset "
        f"{centre['offset_from_middle']:+.3f} bins from the middle.",
        "",
        "## Sparse views, scored on row 0 (test), every parameter tuned on row 1",
        "",
        f"Reference: the TV reconstruction of row 0 from all 181 views (weight "
        f"{reference['weight']:g}, chosen by the discrepancy principle: residual RMS "
        f"{reference['residual_rms_chosen']:.4g} within the noise RMS estimate "
        f"{reference['noise_rms_estimate']:.4g}; {reference['n_iter']} PDHG iterations, last "
        f"relative change {reference['last_relative_change']:.1e}). "
        "PSNR/SSIM inside the reconstruction circle, data range = the reference's "
        "max - min.",
        "",
        "| views | method | PSNR (dB) | SSIM | setting (tuned on row 1) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for experiment in summary["experiments"]:
        for method in ("fbp", "cg", "tv"):
            entry = experiment[method]
            lines.append(
                f"| {experiment['views']} | {method.upper()} | {entry['test']['psnr']:.2f} | "
                f"{entry['test']['ssim']:.4f} | {entry['setting']} | {entry['seconds']:.2f} |"
            )
    lines += ["", "Tuning transfer (row 0's own best setting in hindsight):", ""]
    for experiment in summary["experiments"]:
        cg, tv = experiment["cg"], experiment["tv"]
        lines.append(
            f"- {experiment['views']} views: CG best at {cg['test_best_in_hindsight']['n_iter']}"
            f" iterations ({cg['test_best_in_hindsight']['psnr']:.2f} dB); TV best at weight "
            f"{tv['test_best_in_hindsight']['weight']:g} "
            f"({tv['test_best_in_hindsight']['psnr']:.2f} dB)"
            + ("; the chosen TV weight is on the grid's edge" if tv["on_grid_edge"] else "")
            + f"; TV's last relative change {tv['last_relative_change']:.2e}."
        )
    lines += [
        "",
        "Sensitivity to the reference's weight (row-0 PSNR in dB against the all-view TV "
        "one grid step weaker / stronger):",
        "",
        "| reference weight | views | FBP | CG | TV |",
        "|---|---|---|---|---|",
    ]
    keyed: dict[tuple[float, int], dict[str, float]] = {}
    for row in summary["sensitivity"]:
        keyed.setdefault((row["reference_weight"], row["views"]), {})[row["method"]] = row["psnr"]
    for (weight, views), values in sorted(keyed.items()):
        lines.append(
            f"| {weight:g} | {views} | {values['fbp']:.2f} | {values['cg']:.2f} | "
            f"{values['tv']:.2f} |"
        )
    lines += [
        "",
        f"Timings: centre estimates {summary['seconds']['centres']:.1f} s (both rows, both "
        f"methods), all-view reference {summary['seconds']['reference']:.1f} s, whole script "
        f"{summary['seconds']['total']:.1f} s on one CPU thread.",
        "",
        "![images](sparse_view.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="the Data Exchange file")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "tooth", help="folder"
    )
    parser.add_argument("--views", type=int, nargs="+", default=[30, 60])
    parser.add_argument("--tv-iterations", type=int, default=500)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    path = args.data or find_data_root() / "raw_ct" / "tooth_aps_microct.h5"

    full = reconstruct_sinogram(path, tv_iterations=args.tv_iterations, device="cpu")
    m = full.metrics
    # the references in the window's units (attenuation per pixel, as the solvers give it)
    pixel = full.scan.pixel_size_mm or 1.0
    references = full.tv * pixel
    candidates = {w: images * pixel for w, images in full.tv_candidates.items()}
    reference_seconds = m["tv"]["seconds"] + m["fbp"]["seconds"]
    centre_seconds = sum(
        entry.get("opposite_views_seconds", 0) + entry.get("fbp_sharpness_seconds", 0)
        for entry in full.centre_estimates.values()
    )
    experiments = [
        sparse_experiment(
            n,
            full.measurement,
            full.scan.angles_deg,
            full.centre_offset,
            references,
            args.tv_iterations,
        )
        for n in args.views
    ]
    side = full.image_side
    chosen_index = m["tv"]["grid"].index(m["tv"]["weight"])
    summary = {
        "data": str(path),
        "rotation_centre": {
            key: m["rotation_centre"][key]
            for key in ("used", "detector_middle_bin", "offset_from_middle", "convention")
        },
        "window": m["window"],
        "reference": {
            "weight": m["tv"]["weight"],
            "rule": m["tv"]["rule"],
            "grid": m["tv"]["grid"],
            "residual_rms_per_weight": m["tv"]["residual_rms_per_weight"],
            "residual_rms_chosen": m["tv"]["residual_rms_per_weight"][chosen_index],
            "noise_rms_estimate": m["tv"]["noise_rms_estimate"],
            "n_iter": m["tv"]["n_iter"],
            "last_relative_change": m["tv"]["last_relative_change"],
        },
        "experiments": [
            {k: v for k, v in e.items() if k not in ("images", "all_tv_test_images")}
            for e in experiments
        ],
        "sensitivity": sensitivity(experiments, candidates, m["tv"]["weight"], side),
        "seconds": {
            "centres": centre_seconds,
            "reference": reference_seconds,
            "total": time.perf_counter() - started,
        },
    }
    summary["rotation_centre"]["estimates"] = {
        row: {
            key: entry[key]
            for key in ("opposite_views", "fbp_sharpness", "difference_px")
            if key in entry
        }
        for row, entry in full.centre_estimates.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    figure(experiments, references[TEST_ROW], args.out / "sparse_view.png", full.centre)
    summary["seconds"]["total"] = time.perf_counter() - started
    (args.out / "sparse_view.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "sparse_view.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
