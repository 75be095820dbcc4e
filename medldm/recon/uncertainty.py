"""The posterior std of a simulated run: its calibration and how well it scored.

The std is calibrated where a fit on validation cases exists for the run's solver config
and prior (``configs/calibration``, :mod:`medldm.problems.calibration`); else the central
90 % interval is the Gaussian ``estimate +- 1.645 std`` and says it is uncalibrated.

Example
-------
>>> import numpy as np
>>> interval_scale(None, "no prior")
(1.6448536269514722, 'UNCALIBRATED (Gaussian 1.645 std; no prior)')
>>> truth = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 8, 8)
>>> scores = uncertainty_metrics(truth + 0.1, truth, np.full_like(truth, 0.1), None,
...                              None, "no prior")
>>> scores["calibrated"], scores["reason"], 0 <= scores["coverage_90"] <= 1
(False, 'no prior', True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medldm.recon.presets import Preset

GAUSSIAN_Z90 = 1.6448536269514722  # central 90 % of a Gaussian: mean +- z std


def calibration_for(preset: Preset, prior: Any, volume_mode: bool) -> tuple[Any, str]:
    """The std calibration fitted on validation cases for this preset's solver config and
    prior (``configs/calibration``), or ``(None, why not)``. A slab coupled along z
    (``volume_mode`` with ``slice_weight`` or ``slice_tv_weight``) takes only a fit made on
    whole volumes, independent slices only one made on slices."""
    if prior is None:
        return None, "no prior"
    from medldm.problems.calibration import find_calibration, preset_solver_config
    from medldm.problems.configs import solver_for_operator

    options = dict(preset.solver_options or {})
    _, source = solver_for_operator(preset.solver, preset.physics, options, preset.domain)
    config = preset_solver_config(source, options)
    coupling = [float(config.get(key, 0) or 0) for key in ("slice_weight", "slice_tv_weight")]
    coupled = volume_mode and max(coupling) > 0
    fit = find_calibration(preset.solver, preset.physics, config, prior=prior)
    if fit is None:
        return None, "no fit for this solver config and prior in configs/calibration"
    if coupled and not fit.coupled:
        return None, "its fit was made on independent 2D slices, this slab is coupled along z"
    if fit.coupled and not coupled:
        return None, "its fit was made on whole volumes coupled along z, these slices are not"
    return fit, ""


def interval_scale(calibration: Any, uncalibrated_reason: str) -> tuple[float, str]:
    """``(half-width of the central 90 % interval in stds, what it rests on)``."""
    if calibration is not None:
        return calibration.std_scale(0.9), f"calibrated: {calibration.describe()}"
    return GAUSSIAN_Z90, f"UNCALIBRATED (Gaussian 1.645 std; {uncalibrated_reason})"


def uncertainty_metrics(
    estimate: np.ndarray,
    truth: np.ndarray,
    std: np.ndarray,
    sample_stacks: list[np.ndarray] | None,
    calibration: Any,
    uncalibrated_reason: str,
    observed: np.ndarray | None = None,
) -> dict[str, Any]:
    """metrics.json's ``uncertainty``: coverage of the 50/90 % intervals and the Spearman
    of std against ``|error|`` per slice (model range), mean over slices, over the
    foreground less the ``observed`` pixels (inpainting: a bool stack like ``truth``;
    :func:`~medldm.problems.calibration.uncertainty_roi`)."""
    from medldm.metrics.convention import UNCERTAINTY_CONVENTION
    from medldm.problems.calibration import roi_name

    per_slice = _per_slice_scores(estimate, truth, std, sample_stacks, calibration, observed)
    means = _mean_over_slices(per_slice)
    description: dict[str, Any] = {"calibrated": calibration is not None}
    if calibration is not None:
        description["calibration"] = calibration.describe()
    else:
        description["reason"] = uncalibrated_reason
    return {
        **description,
        "roi": roi_name(observed),
        "per": "slice, mean over slices",
        "convention": UNCERTAINTY_CONVENTION,
        **means,
    }


def _per_slice_scores(
    estimate: np.ndarray,
    truth: np.ndarray,
    std: np.ndarray,
    sample_stacks: list[np.ndarray] | None,
    calibration: Any,
    observed: np.ndarray | None,
) -> list[dict[str, Any]]:
    """The uncertainty scores of every slice with pixels in its ROI."""
    from medldm.problems.calibration import score_uncertainty, uncertainty_roi

    per_slice = []
    for index in range(truth.shape[0]):
        if float(truth[index].max()) <= float(truth[index].min()):
            continue  # a constant slice has no foreground to score
        roi = uncertainty_roi(truth[index], None if observed is None else observed[index])
        if not roi.any():
            continue  # the measurement observes all of this slice's foreground
        samples = None if sample_stacks is None else np.stack([s[index] for s in sample_stacks])
        per_slice.append(
            score_uncertainty(
                estimate[index],
                truth[index],
                std[index],
                samples,
                calibration=calibration,
                mask=roi,
            )
        )
    return per_slice


def _mean_over_slices(per_slice: list[dict[str, Any]]) -> dict[str, float]:
    """The mean of each numeric score over the slices where it is finite."""
    keys = sorted({k for scores in per_slice for k, v in scores.items() if _is_number(v)})
    means = {}
    for key in keys:  # a measure undefined on every slice (e.g. one sample) is left out
        values = [float(s[key]) for s in per_slice if _is_number(s.get(key))]
        finite = [v for v in values if np.isfinite(v)]
        if finite:
            means[key] = float(np.mean(finite))
    return means


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.floating) and not isinstance(value, bool)
