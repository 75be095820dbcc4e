"""The written convention of every image-quality number medldm reports.

:data:`METRIC_CONVENTION` is printed in every benchmark report so a reader knows exactly
what a PSNR, SSIM or NMSE value means.

Example
-------
>>> "data_range" in METRIC_CONVENTION and "magnitude" in METRIC_CONVENTION
True
"""

from __future__ import annotations

#: Side of the Gaussian SSIM window used by scikit-image for ``sigma=1.5``
#: (``2 * int(3.5 * 1.5 + 0.5) + 1``); SSIM averages skip this many // 2 border pixels.
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11

METRIC_CONVENTION = (
    "Metrics are computed on magnitude images (complex estimates and references are "
    "replaced by their absolute value first) in the ground truth's own units, in float64. "
    "data_range is explicit: unless given, it is max(reference) - min(reference) of the "
    "magnitude ground truth over the whole image or volume (never taken from the dtype, "
    "never from the estimate), and per-slice values use the same volume range unless a "
    "range per slice is given. PSNR = 10 log10(data_range^2 / MSE) in dB, with MSE the mean "
    "squared error over the ROI pixels (inf when the images are identical). "
    "NMSE = ||estimate - reference||^2 / ||reference||^2 over the ROI pixels (no unit, not "
    "in dB). SSIM is scikit-image's structural_similarity with the settings of Wang et al. "
    "(2004): Gaussian weights with sigma = 1.5 pixels (11-pixel window), "
    "use_sample_covariance=False, K1 = 0.01, K2 = 0.03, computed on the whole 2D image or "
    "the whole 3D volume (3D window), then averaged over the ROI pixels at least 5 pixels "
    "away from every edge (without a ROI: all those pixels, as scikit-image does). "
    "The ROI, when used, is a foreground mask of the ground truth (threshold then hole "
    "filling) and is reported with the numbers. Values are per volume (one number per 2D "
    "image or 3D volume) unless marked per slice."
)
