"""Scoring an estimate against its ground truth: the one place the benchmark and the
reconstruction app get their PSNR, SSIM and NMSE numbers from.

The convention is :data:`~medldm.metrics.METRIC_CONVENTION`: magnitude images in the
ground truth's units (for medldm's apps, the model range [0, 1] the ground truth was
normalised to: a linear map of the input's units, so PSNR and NMSE are the same as in
physical units when ``data_range`` is mapped too), ``data_range`` explicit.

* :func:`score`: one value per 2D image or 3D volume, ``data_range = max - min`` of the
  whole ground truth, over the whole image or a foreground ROI (the benchmark);
* :func:`mean_slice_scores`: the mean over the 2D slices of a stack, each slice with its
  own ``data_range`` (its ground truth's ``max - min``; ``constant_range`` for a constant
  slice), whole image (the reconstruction app);
* :func:`volume_slice_scores`: PSNR and SSIM of chosen 2D slices of a volume, every slice
  with the *volume's* ``data_range`` and ROI (the benchmark's per-slice scores of a whole
  volume, beside its :func:`score`).

Example
-------
>>> import numpy as np
>>> truth = np.linspace(0, 1, 64 * 64).reshape(64, 64)
>>> scores = score(truth + 0.01, truth)
>>> round(scores["psnr"], 1), scores["data_range"], scores["roi"]
(40.0, 1.0, 'none')
>>> stack = np.stack([truth, 0.5 * truth])
>>> round(mean_slice_scores(stack + 0.01, stack)["psnr"], 1)  # (40.0 + 34.0) / 2
37.0
>>> volume_slice_scores(stack + 0.01, stack, [1])["psnr"].round(1)  # the volume's range 1
array([40.])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medldm.errors import InvalidInputError
from medldm.metrics.foreground import foreground_mask
from medldm.metrics.inputs import ArrayLike
from medldm.metrics.nmse import nmse
from medldm.metrics.psnr import psnr
from medldm.metrics.ssim import ssim

#: Allowed ROI choices: the whole image, or the ground truth's foreground mask.
ROI_CHOICES = ("none", "foreground")


def _checked(
    estimate: ArrayLike, ground_truth: ArrayLike, roi: str | None
) -> tuple[str, np.ndarray, np.ndarray]:
    """``(roi, |estimate|, ground truth as float64)``, or InvalidInputError for an unknown
    ROI or an estimate with NaN/inf values."""
    roi = roi or "none"
    if roi not in ROI_CHOICES:
        raise InvalidInputError(f"unknown ROI {roi!r}", fix=f"use one of {ROI_CHOICES}")
    estimate = np.abs(np.asarray(estimate))
    if not np.all(np.isfinite(estimate)):
        raise InvalidInputError(
            "the estimate contains NaN or inf values", fix="check the solver's settings"
        )
    return roi, estimate, np.asarray(ground_truth, dtype=np.float64)


def score(
    estimate: ArrayLike,
    ground_truth: ArrayLike,
    roi: str | None = None,
    *,
    data_range: float | None = None,
) -> dict:
    """``{"psnr", "ssim", "nmse", "data_range", "roi"}`` of a magnitude estimate of one 2D
    image or 3D volume.

    ``data_range`` defaults to ``max - min`` of the ground truth; ``roi`` is ``"none"``
    (default) or ``"foreground"`` (:func:`~medldm.metrics.foreground_mask` of the ground
    truth). NMSE is NaN when the ground truth has no energy in the ROI.

    Raises InvalidInputError for an estimate with NaN/inf values (recorded as failed by the
    benchmark) and for a constant ground truth without an explicit ``data_range``.
    """
    roi, estimate, truth = _checked(estimate, ground_truth, roi)
    if data_range is None:
        data_range = float(truth.max() - truth.min())
    mask = foreground_mask(truth) if roi == "foreground" else None
    options = {"data_range": data_range, "mask": mask}
    has_energy = bool(np.any(truth != 0) if mask is None else np.any(truth[mask] != 0))
    return {
        "psnr": float(psnr(estimate, truth, **options)),
        "ssim": float(ssim(estimate, truth, **options)),
        "nmse": float(nmse(estimate, truth, mask=mask)) if has_energy else float("nan"),
        "data_range": data_range,
        "roi": roi,
    }


def mean_slice_scores(
    estimates: ArrayLike, ground_truths: ArrayLike, *, constant_range: float = 1.0
) -> dict[str, float]:
    """``{"psnr", "ssim", "nmse"}``, each the mean of :func:`score` over the 2D slices
    ``estimates[i]`` / ``ground_truths[i]`` of two ``(S, H, W)`` stacks, every slice with
    its own data range (its ground truth's ``max - min``, or ``constant_range`` where the
    slice is constant: ``1.0`` is the model range)."""
    values: dict[str, list[float]] = {"psnr": [], "ssim": [], "nmse": []}
    for estimate, truth in zip(estimates, ground_truths, strict=True):
        truth = np.asarray(truth, dtype=np.float64)
        data_range = float(truth.max() - truth.min()) or float(constant_range)
        scores = score(estimate, truth, data_range=data_range)
        for key, slice_values in values.items():
            slice_values.append(scores[key])
    return {key: float(np.mean(v)) for key, v in values.items()}


def volume_slice_scores(
    estimate: ArrayLike,
    ground_truth: ArrayLike,
    slices: Sequence[int],
    roi: str | None = None,
    *,
    data_range: float | None = None,
) -> dict[str, np.ndarray]:
    """``{"psnr", "ssim"}``: one value per 2D slice ``ground_truth[k]`` for ``k`` in
    ``slices`` (axis 0 of a ``(S, H, W)`` volume), in that order.

    Every slice is scored with the volume's ``data_range`` (default: ``max - min`` of the
    whole ground truth, as :func:`score` takes it) and, for ``roi="foreground"``, the
    volume's foreground mask sliced (NaN for a slice whose mask is empty); SSIM is 2D per
    slice. Raises InvalidInputError for an estimate with NaN/inf values.
    """
    roi, estimate, truth = _checked(estimate, ground_truth, roi)
    if truth.ndim != 3:
        raise InvalidInputError(
            f"slice scores need a 3D volume, got shape {truth.shape}", fix="use score()"
        )
    if data_range is None:
        data_range = float(truth.max() - truth.min())
    mask = foreground_mask(truth) if roi == "foreground" else None
    values: dict[str, list[float]] = {"psnr": [], "ssim": []}
    for k in slices:
        # slice by slice: a one-slice sub-volume would read as a 2D image
        inside = None if mask is None else mask[int(k)]
        if inside is not None and not inside.any():
            values["psnr"].append(float("nan"))
            values["ssim"].append(float("nan"))
            continue
        options = {"data_range": data_range, "mask": inside}
        values["psnr"].append(float(psnr(estimate[int(k)], truth[int(k)], **options)))
        values["ssim"].append(float(ssim(estimate[int(k)], truth[int(k)], **options)))
    return {name: np.asarray(v, np.float64) for name, v in values.items()}
