"""``metrics.json`` of a measured k-space run (the ``score`` stage's record): what was read
and how, the relative data residual ``||A x - y|| / ||y||`` of every method, PSNR / SSIM /
NMSE against the reference where there is one (magnitude, the reference's units, data
range = its max - min), the k-space hold-out errors where they were run, and the LDM's
lead over the baseline and the best classical method.

Example
-------
>>> metrics = {"ldm": {"psnr_db": 30.0}, "classical": {"tv": {"psnr_db": 28.0},
...            "cg": {"psnr_db": 29.5}}}
>>> add_comparisons(metrics, "tv", scored=True)
>>> metrics["best_classical"], metrics["ldm_minus_best_classical_psnr_db"]
('cg', 0.5)
>>> metrics["ldm_minus_baseline_psnr_db"]
2.0
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medldm.problems.grid import GridPlan
from medldm.recon.kspace_input import RAW_UNIT, KSpaceInput
from medldm.recon.kspace_methods import KSpaceSolved, MeasuredMethods, Solved
from medldm.recon.kspace_records import KSpaceImages, KSpaceMeasurement, KSpaceView


def measured_metrics(
    read: KSpaceInput,
    view: KSpaceView,
    measurement: KSpaceMeasurement,
    solved: KSpaceSolved,
    images: KSpaceImages,
    holdout: dict[str, Any] | None,
) -> dict[str, Any]:
    """``metrics.json`` of a measured run (see :mod:`medldm.recon.measured` for the fields)."""
    metrics: dict[str, Any] = {
        **_input_record(read, measurement, solved),
        **_processing_record(read, view, solved.methods),
        **_method_rows(view, measurement, solved, images, holdout),
        "kspace_holdout": holdout,
        "weight_search": solved.weight_search,
        "phase": _phase_text(solved.solved),
    }
    add_comparisons(metrics, solved.methods.preset.baseline, view.truth is not None)
    return metrics


def _input_record(
    read: KSpaceInput, measurement: KSpaceMeasurement, solved: KSpaceSolved
) -> dict[str, Any]:
    """What ran on what: the preset and solvers, the k-space, its sampling and coil maps."""
    methods, raw = solved.methods, read.raw
    accel = 1.0 / float(read.mask.mean())
    return {
        "preset": methods.preset.name,
        "solver": methods.ldm_name,
        "solver_preset": solved.solved[methods.ldm_name].source,
        "prior": getattr(methods.prior, "name", None),
        "baseline_solver": methods.preset.baseline if methods.classical else None,
        "physics": (
            f"measured {raw.n_coils}-coil Cartesian k-space"
            + (" (SENSE)" if raw.n_coils > 1 else "")
            + f", {accel:.2f}x ({100 / accel:.1f} % sampled)"
        ),
        "input": raw.describe(),
        "reading": raw.notes,
        "sampling_mask": read.mask_source,
        "acceleration": round(accel, 3),
        "coil_maps": measurement.maps_text,
        "coil_maps_seconds": round(measurement.maps_seconds, 3),
        "tuned_for": methods.operator,
    }


def _processing_record(
    read: KSpaceInput, view: KSpaceView, methods: MeasuredMethods
) -> dict[str, Any]:
    """How the k-space was brought to the prior and scored."""
    normalization, reference_info = view.normalization, read.reference_info
    return {
        "slices": 1,
        "volume_mode": False,
        "grid": grid_text(methods.plan) + _grid_solve_text(methods),
        "orientation": "the k-space's image is taken with row 0 at the top (anterior); "
        "rows are reversed into the model view (rows towards A) and back for the outputs",
        "intensity": f"{methods.preset.intensity}: {normalization.method or 'rule'} fitted to "
        f"the zero-filled root-sum-of-squares image: low {normalization.low:.6g}, high "
        f"{normalization.high:.6g} ({RAW_UNIT}); k-space divided by high - low = "
        f"{normalization.scale:.6g} (the offset low is not subtracted: k-space is linear), "
        "outputs multiplied back",
        "convention": "measured data: relative data residual ||A x - y|| / ||y|| on the "
        "measured k-space for every method"
        + (
            "; PSNR/SSIM/NMSE of magnitudes against the reference ("
            + reference_info["description"]
            + "), data range = its max - min, whole image"
            if reference_info
            else "; no reference, so no PSNR/SSIM"
        ),
        "reference": reference_info,
        "seed": methods.seed,
        "device": str(methods.device),
    }


def _method_rows(
    view: KSpaceView,
    measurement: KSpaceMeasurement,
    solved: KSpaceSolved,
    images: KSpaceImages,
    holdout: dict[str, Any] | None,
) -> dict[str, Any]:
    """One row per method: the LDM solver, the zero-filled image, the classical solvers."""
    methods, truth = solved.methods, view.truth
    ldm = solved.solved[methods.ldm_name]
    holdout_methods = (holdout or {}).get("methods", {})
    return {
        "ldm": {
            "nfe": ldm.reconstruction.nfe,
            "seconds": round(ldm.seconds, 3),
            "residual": measurement.physics.residual(ldm.estimate, measurement.y),
            "residual_on_prior_grid": ldm.reconstruction.residual,
            "residual_over_noise": ldm.reconstruction.residual_over_noise,
            "n_samples": ldm.reconstruction.info.get("n_samples"),
            **(
                {"final_weight": methods.weights[methods.ldm_name]}
                if methods.ldm_name in methods.weights
                else {}
            ),
            **_scores(images.images[methods.ldm_name], truth),
            **_holdout_entry(holdout_methods.get(methods.ldm_name)),
        },
        "direct": {
            "image": "root sum of squares of the zero-filled coil images",
            **_scores(images.direct, truth),
        },
        "classical": {
            name: {
                "seconds": round(solved.solved[name].seconds, 3),
                "residual": solved.solved[name].reconstruction.residual,
                "preset": solved.solved[name].source,
                **({"weight": methods.weights[name]} if name in methods.weights else {}),
                **_scores(images.images[name], truth),
                **_holdout_entry(holdout_methods.get(name)),
            }
            for name in methods.classical
        },
    }


def _phase_text(solved: dict[str, Solved]) -> str:
    """Which solvers got the CG-SENSE phase instead of their own, for the record."""
    magnitude = [name for name, method in solved.items() if method.magnitude]
    return (
        f"{', '.join(magnitude)}: a real magnitude behind the phase of the CG-SENSE "
        f"estimate ({solved['cg'].source if 'cg' in solved else 'cg'}) instead of their own "
        "low-resolution phase (a Gaussian k-space window of 4 % of the matrix, too coarse "
        "for the coil-combined phase of measured multi-coil data)"
        if magnitude
        else "every solver estimates a complex image (or its own phase)"
    )


def _grid_solve_text(methods: MeasuredMethods) -> str:
    """What was done on the measured grid after the prior's estimate, for the record."""
    if not methods.plan.resampled:
        return ""
    if methods.grid_solve == "none":
        return "; the prior's estimate was Fourier-resampled to the measured grid as it is"
    what = (
        "least-squares"
        if methods.grid_solve == "least_squares"
        else "regularised (the LDM preset's final step: TV, or wavelets where it has them)"
    )
    return (
        f"; the prior's estimate, Fourier-resampled to the measured grid, anchored a final "
        f"{what} data-consistent solve there (grid_solve={methods.grid_solve}, weight: the "
        "LDM preset's final_dc_weight), so the output keeps the measured grid's detail"
    )


def _holdout_entry(summary: dict[str, Any] | None) -> dict[str, float]:
    """The hold-out mean and spread of one method, for its row in ``metrics.json``."""
    if summary is None:
        return {}
    return {"holdout_error": summary["mean"], "holdout_error_std": summary["std"]}


def add_comparisons(metrics: dict[str, Any], baseline: str | None, scored: bool) -> None:
    """The baseline's row, the best classical method and the LDM's lead over both."""
    classical = metrics["classical"]
    if baseline in classical:
        metrics["baseline"] = classical[baseline]
    if not (scored and classical):
        return
    best = max(classical, key=lambda n: classical[n]["psnr_db"])
    metrics["best_classical"] = best
    metrics["ldm_minus_best_classical_psnr_db"] = (
        metrics["ldm"]["psnr_db"] - classical[best]["psnr_db"]
    )
    if "baseline" in metrics:
        metrics["ldm_minus_baseline_psnr_db"] = (
            metrics["ldm"]["psnr_db"] - metrics["baseline"]["psnr_db"]
        )


def grid_text(plan: GridPlan) -> str:
    """The grid plan in words, with the resampling this path does (Fourier, not linear)."""
    return plan.describe().replace(
        "RESAMPLED (linear)", "RESAMPLED (Fourier: k-space cropped / zero-padded)"
    )


def _scores(estimate: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    if truth is None:
        return {}
    from medldm.metrics import mean_slice_scores

    scores = mean_slice_scores(estimate, truth)
    return {"psnr_db": scores["psnr"], "ssim": scores["ssim"], "nmse": scores["nmse"]}
