"""PSNR, SSIM and NMSE of one estimate, with the convention of :mod:`medldm.metrics`.

Magnitude images, in the model range [0, 1] the ground truth was normalised to (a linear
map of the input's units, so PSNR and NMSE are the same as in physical units when
``data_range`` is mapped too), ``data_range = max - min`` of the ground truth, one value
per 2D image or 3D volume, over the whole image or a foreground ROI.

Example
-------
>>> import numpy as np
>>> truth = np.linspace(0, 1, 64 * 64).reshape(64, 64)
>>> scores = score(truth + 0.01, truth)
>>> round(scores["psnr"], 1), scores["data_range"], scores["roi"]
(40.0, 1.0, 'none')
"""

from __future__ import annotations

import numpy as np

from medldm.errors import InvalidInputError
from medldm.metrics import foreground_mask, nmse, psnr, ssim

#: Allowed ROI choices: the whole image, or the ground truth's foreground mask.
ROI_CHOICES = ("none", "foreground")


def score(estimate: np.ndarray, ground_truth: np.ndarray, roi: str | None = None) -> dict:
    """``{"psnr", "ssim", "nmse", "data_range", "roi"}`` of a magnitude estimate.

    Raises InvalidInputError for an estimate with NaN/inf values (recorded as failed).
    """
    roi = roi or "none"
    if roi not in ROI_CHOICES:
        raise InvalidInputError(f"unknown ROI {roi!r}", fix=f"use one of {ROI_CHOICES}")
    estimate = np.abs(np.asarray(estimate))
    if not np.all(np.isfinite(estimate)):
        raise InvalidInputError(
            "the estimate contains NaN or inf values", fix="check the solver's settings"
        )
    truth = np.asarray(ground_truth, dtype=np.float64)
    data_range = float(truth.max() - truth.min())
    mask = foreground_mask(truth) if roi == "foreground" else None
    options = {"data_range": data_range, "mask": mask}
    return {
        "psnr": float(psnr(estimate, truth, **options)),
        "ssim": float(ssim(estimate, truth, **options)),
        "nmse": float(nmse(estimate, truth, mask=mask)),
        "data_range": data_range,
        "roi": roi,
    }
