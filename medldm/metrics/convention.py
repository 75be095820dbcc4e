"""The written convention of every image-quality number medldm reports.

:data:`METRIC_CONVENTION` is printed in every benchmark report so a reader knows exactly
what a PSNR, SSIM or NMSE value means; :data:`UNCERTAINTY_CONVENTION` does the same for
the coverage, rank-correlation and reliability numbers of a posterior std map
(:mod:`medldm.metrics.uncertainty`).

Example
-------
>>> "data_range" in METRIC_CONVENTION and "magnitude" in METRIC_CONVENTION
True
>>> "coverage_90" in UNCERTAINTY_CONVENTION and "Spearman" in UNCERTAINTY_CONVENTION
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

UNCERTAINTY_CONVENTION = (
    "Uncertainty numbers check a solver's pixel-wise posterior std (the sample std of its K "
    "posterior samples) against the ground truth, per 2D image or 3D volume, over the "
    "ground truth's foreground mask (threshold then hole filling, the metrics ROI mask: "
    "the background is trivially covered), on magnitude images in the ground truth's units. "
    "coverage_50 and coverage_90 are the fractions of those pixels whose true value lies in "
    "the central interval estimate +- z std (ends included) with z = 0.674 (50 %) and "
    "1.645 (90 %), the Gaussian quantiles; the estimate is the reported reconstruction (the "
    "posterior mean, after the solver's final step). coverage_50_samples and "
    "coverage_90_samples use instead the 25-75 % and 5-95 % quantiles of the K samples at "
    "each pixel (linear interpolation); with few samples these under-cover even for a "
    "perfect posterior (the truth falls outside the range of K exchangeable samples with "
    "probability 2/(K+1)). A calibrated std gives coverage equal to the nominal level; "
    "lower means over-confident. coverage_50_calibrated and coverage_90_calibrated use "
    "estimate +- s std, where s was fitted on validation cases only (conformal: the level "
    "quantile of |error|/std over their foreground pixels, each case weighted equally) for "
    "the same solver preset, operator, prior and K; the uncalibrated columns are kept "
    "beside them. std_error_spearman is the Spearman rank correlation between std and "
    "|estimate - truth| over the foreground pixels (1: the std ranks the errors perfectly; "
    "near 0: the std map says nothing about where the errors are). The reliability curve "
    "bins the foreground pixels by their std and plots the mean |error| per bin against "
    "the mean std; a Gaussian error whose standard deviation is the reported std lies on "
    "mean |error| = sqrt(2/pi) std = 0.798 std. Coverage and correlation are means over "
    "cases; reliability curves pool the pixels of all cases."
)
