"""The benchmark's scores: :func:`medldm.metrics.scoring.score` (PSNR, SSIM and NMSE of
one magnitude estimate, ``data_range = max - min`` of the ground truth, one value per 2D
image or 3D volume, over the whole image or a foreground ROI), re-exported here for the
runner and the tuning scripts.

Example
-------
>>> import numpy as np
>>> truth = np.linspace(0, 1, 64 * 64).reshape(64, 64)
>>> round(score(truth + 0.01, truth)["psnr"], 1)
40.0
"""

from __future__ import annotations

from medldm.metrics.scoring import ROI_CHOICES, score

__all__ = ["ROI_CHOICES", "score"]
