"""Image-quality metrics with a written convention: PSNR, SSIM and NMSE; and checks of a
posterior std map (coverage, std-error rank correlation, reliability curve:
:mod:`medldm.metrics.uncertainty`, convention :data:`UNCERTAINTY_CONVENTION`).

All three compare magnitude images (complex inputs -> ``abs``) in the ground truth's units,
with ``data_range`` explicit (default: ground truth ``max - min``, never the dtype), an
optional foreground ROI mask, and one value per image/volume or per slice. The full
convention is :data:`METRIC_CONVENTION`; benchmark reports print it. :func:`score` and
:func:`mean_slice_scores` (:mod:`medldm.metrics.scoring`) give the three at once, as the
benchmark and the reconstruction app report them; :func:`volume_slice_scores` gives the
benchmark's per-slice PSNR and SSIM of a whole volume.

Example
-------
>>> import numpy as np
>>> from skimage.data import camera
>>> reference = camera().astype(float)
>>> noisy = reference + np.random.default_rng(0).normal(0, 5, reference.shape)
>>> round(psnr(noisy, reference), 1), round(ssim(noisy, reference), 2)
(34.1, 0.83)
>>> round(nmse(noisy, reference), 4)
0.0011
>>> roi = np.zeros(reference.shape, bool); roi[100:400, 100:400] = True
>>> round(psnr(noisy, reference, mask=roi, data_range=255.0), 1)
34.1
"""

from medldm.metrics.convention import METRIC_CONVENTION, UNCERTAINTY_CONVENTION
from medldm.metrics.foreground import foreground_mask
from medldm.metrics.nmse import nmse
from medldm.metrics.psnr import psnr
from medldm.metrics.scoring import mean_slice_scores, score, volume_slice_scores
from medldm.metrics.ssim import ssim, ssim_map
from medldm.metrics.uncertainty import (
    ReliabilityCurve,
    reliability_curve,
    sample_coverage,
    std_coverage,
    std_error_spearman,
    uncertainty_scores,
)

__all__ = [
    "METRIC_CONVENTION",
    "UNCERTAINTY_CONVENTION",
    "ReliabilityCurve",
    "foreground_mask",
    "mean_slice_scores",
    "nmse",
    "psnr",
    "reliability_curve",
    "sample_coverage",
    "score",
    "ssim",
    "ssim_map",
    "std_coverage",
    "std_error_spearman",
    "uncertainty_scores",
    "volume_slice_scores",
]
