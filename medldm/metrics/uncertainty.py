"""Does the posterior std mean anything? Coverage, rank correlation and reliability of a
pixel-wise uncertainty map against the ground truth.

A latent solver returns K posterior samples, their mean (the estimate) and their pixel-wise
std. These measures check that uncertainty against the truth, per case (one 2D image or
3D volume), over a region of interest (by default the ground truth's foreground,
:func:`~medldm.metrics.foreground_mask`: the background is trivially covered and would
flatter every number). Everything is computed on magnitudes (complex inputs -> ``abs``) in
the ground truth's units, in float64. The convention in words is
:data:`~medldm.metrics.convention.UNCERTAINTY_CONVENTION`.

* **Coverage** of a central interval at nominal level ``p`` (0.5, 0.9): the fraction of ROI
  pixels whose true value lies in ``[lower, upper]`` (both ends included), with the interval
  either

  - from the samples (:func:`sample_interval`): the ``(1 - p)/2`` and ``(1 + p)/2``
    quantiles of the K samples at each pixel (NumPy's default linear interpolation), or
  - from the std (:func:`std_interval`): ``estimate +- z_p std`` with
    ``z_p = Phi^-1((1 + p)/2)`` (0.674 for 50 %, 1.645 for 90 %), or ``estimate +- s std``
    for a calibrated half-width multiplier ``s``.

  A calibrated uncertainty gives coverage ``p``; below ``p`` means over-confident.
* **Spearman correlation** between the std and the absolute error ``|estimate - truth|``
  over the ROI pixels (:func:`std_error_spearman`): does a pixel with more std have more
  error? 1 is a perfect ranking, near 0 says the std map is uninformative.
* **Reliability curve** (:func:`reliability_curve`): the ROI pixels binned by their std;
  per bin the pixel count, mean std, mean ``|error|`` and RMS error. For Gaussian errors
  with standard deviation equal to the reported std, mean ``|error| = sqrt(2/pi) std``
  (:data:`GAUSSIAN_MEAN_ABS`) and RMS error ``= std``. Curves hold sums, so the curves of
  many cases on the same bins add up (:meth:`ReliabilityCurve.merge`).

Example
-------
>>> import numpy as np
>>> truth = np.array([[0.0, 1.0], [2.0, 3.0]])
>>> estimate, std = np.zeros((2, 2)), np.ones((2, 2))
>>> everywhere = np.ones((2, 2), bool)
>>> std_coverage(truth, estimate, std, 0.5, mask=everywhere)  # only |0 - 0| <= 0.674
0.25
>>> std_coverage(truth, estimate, std, 0.9, mask=everywhere)  # |error| <= 1.645: 0 and 1
0.5
>>> samples = np.stack([truth + d for d in (-2.0, -1.0, 0.5, 1.0, 2.0)])
>>> sample_coverage(truth, samples, 0.5, mask=everywhere)  # [truth - 1, truth + 1]
1.0
>>> round(std_error_spearman(estimate, truth, np.array([[1.0, 3.0], [2.0, 4.0]]),
...                          mask=everywhere), 3)
0.8
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from medldm.errors import InvalidInputError
from medldm.metrics.foreground import foreground_mask
from medldm.metrics.inputs import ArrayLike, as_magnitude

#: The nominal levels the benchmark reports (central 50 % and 90 % intervals).
LEVELS = (0.5, 0.9)

#: Mean absolute value of a standard normal variable, ``sqrt(2/pi)``: a calibrated Gaussian
#: std ``s`` goes with a mean ``|error|`` of ``GAUSSIAN_MEAN_ABS * s``.
GAUSSIAN_MEAN_ABS = math.sqrt(2.0 / math.pi)

#: Fixed std bin edges for images in the model range [0, 1]: ``[0, 1e-3)``, then four bins
#: per decade up to 1, then ``[1, inf)``. Fixed edges let the curves of many cases add up.
STD_BIN_EDGES = np.concatenate([[0.0], np.logspace(-3.0, 0.0, 13), [np.inf]])


def level_name(level: float) -> str:
    """Column suffix of a nominal level: ``0.9 -> "90"``."""
    return f"{round(100 * float(level)):d}"


def check_level(level: float) -> float:
    """``level`` as a float in ``(0, 1)``, else InvalidInputError."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise InvalidInputError(
            f"a nominal coverage level must be in (0, 1), got {level}",
            fix="use e.g. 0.5 or 0.9 (the central 50 % or 90 % interval)",
        )
    return level


def gaussian_quantile(level: float) -> float:
    """``z`` with ``P(|Z| <= z) = level`` for a standard normal ``Z`` (the half-width, in
    stds, of the central Gaussian interval): 0.6745 for 0.5, 1.6449 for 0.9.

    >>> round(gaussian_quantile(0.5), 4), round(gaussian_quantile(0.9), 4)
    (0.6745, 1.6449)
    """
    from scipy.stats import norm

    return float(norm.ppf(0.5 + check_level(level) / 2.0))


# --- inputs ---------------------------------------------------------------------------------
def _image_set(
    estimate: ArrayLike, truth: ArrayLike, std: ArrayLike | None, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Magnitude estimate and truth, std (real, float64), boolean ROI, all of one shape."""
    est, ref = as_magnitude(estimate), as_magnitude(truth)
    if est.shape != ref.shape:
        raise InvalidInputError(
            f"estimate shape {est.shape} differs from ground truth shape {ref.shape}",
            fix="compare images of the same shape (leading singleton axes are ignored)",
        )
    if not np.all(np.isfinite(ref)):
        raise InvalidInputError("the ground truth contains NaN or inf", fix="clean it first")
    spread = None
    if std is not None:
        spread = as_magnitude(std)  # a std is >= 0, so abs changes nothing but the dtype
        if spread.shape != ref.shape:
            raise InvalidInputError(
                f"std shape {spread.shape} differs from ground truth shape {ref.shape}",
                fix="pass the std map of this estimate",
            )
    roi = _roi(ref, mask)
    return est, ref, spread, roi


def _roi(truth: np.ndarray, mask: ArrayLike | None) -> np.ndarray:
    if mask is None:
        return foreground_mask(truth)
    roi = as_magnitude(mask) != 0
    if roi.shape != truth.shape:
        raise InvalidInputError(
            f"mask shape {roi.shape} differs from image shape {truth.shape}",
            fix="pass a ROI mask shaped like the ground truth",
        )
    if not roi.any():
        raise InvalidInputError("the ROI mask is empty", fix="pass a mask with foreground")
    return roi


def _samples(samples: ArrayLike, shape: tuple[int, ...]) -> np.ndarray:
    """``(K, *shape)`` float64 magnitudes from ``(K, ...)`` samples (singleton axes dropped)."""
    if type(samples).__module__.startswith("torch"):
        samples = samples.detach().cpu().numpy()  # type: ignore[union-attr]
    array = np.asarray(samples)
    array = np.abs(array) if np.iscomplexobj(array) else array
    n = array.shape[0] if array.ndim else 0
    if n < 1 or array.size != n * math.prod(shape):
        raise InvalidInputError(
            f"samples of shape {array.shape} do not hold K images of shape {shape}",
            fix="pass the samples as (K, *image_shape) (singleton batch/channel axes allowed)",
        )
    return array.reshape(n, *shape).astype(np.float64, copy=False)


# --- intervals and coverage ---------------------------------------------------------------
def sample_interval(samples: ArrayLike, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-wise central interval of the K samples ``(K, *shape)`` at nominal ``level``:
    their ``(1 - level)/2`` and ``(1 + level)/2`` quantiles (linear interpolation between
    order statistics, NumPy's default). Magnitudes of complex samples.

    >>> lower, upper = sample_interval(np.arange(5.0)[:, None], 0.5)
    >>> float(lower[0]), float(upper[0])
    (1.0, 3.0)
    """
    level = check_level(level)
    array = np.asarray(samples)
    array = np.abs(array) if np.iscomplexobj(array) else array.astype(np.float64, copy=False)
    lower, upper = np.quantile(array, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return lower, upper


def std_interval(
    estimate: ArrayLike, std: ArrayLike, level: float, *, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``estimate -+ h std`` with ``h = z_level`` (:func:`gaussian_quantile`), or ``h = scale``
    when a calibrated half-width multiplier is given."""
    half = gaussian_quantile(level) if scale is None else float(scale)
    centre, spread = as_magnitude(estimate), as_magnitude(std)
    return centre - half * spread, centre + half * spread


def coverage(
    truth: ArrayLike, lower: ArrayLike, upper: ArrayLike, *, mask: ArrayLike | None = None
) -> float:
    """Fraction of ROI pixels with ``lower <= truth <= upper`` (ROI: ``mask``, or the
    ground truth's foreground when None)."""
    ref = as_magnitude(truth)
    low, high = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    low, high = low.reshape(ref.shape), high.reshape(ref.shape)
    roi = _roi(ref, mask)
    inside = (low <= ref) & (ref <= high)
    return float(inside[roi].mean())


def std_coverage(
    truth: ArrayLike,
    estimate: ArrayLike,
    std: ArrayLike,
    level: float,
    *,
    mask: ArrayLike | None = None,
    scale: float | None = None,
) -> float:
    """Coverage of ``estimate -+ z_level std`` (or ``-+ scale std``) over the ROI."""
    est, ref, spread, roi = _image_set(estimate, truth, std, mask)
    lower, upper = std_interval(est, spread, level, scale=scale)
    return coverage(ref, lower, upper, mask=roi)


def sample_coverage(
    truth: ArrayLike, samples: ArrayLike, level: float, *, mask: ArrayLike | None = None
) -> float:
    """Coverage of the K samples' central quantile interval at ``level`` over the ROI.

    With K exchangeable samples and an exchangeable truth, the truth falls between the
    smallest and largest sample with probability ``(K - 1)/(K + 1)`` only (0.6 for K = 4),
    so a 90 % sample interval of few samples under-covers even for a perfect posterior.
    """
    ref = as_magnitude(truth)
    lower, upper = sample_interval(_samples(samples, ref.shape), level)
    return coverage(ref, lower, upper, mask=mask)


# --- ranking --------------------------------------------------------------------------------
def std_error_spearman(
    estimate: ArrayLike, truth: ArrayLike, std: ArrayLike, *, mask: ArrayLike | None = None
) -> float:
    """Spearman rank correlation between ``std`` and ``|estimate - truth|`` over the ROI
    pixels (ties get average ranks); NaN when either is constant over the ROI (e.g. the
    std of a single sample)."""
    from scipy.stats import spearmanr

    est, ref, spread, roi = _image_set(estimate, truth, std, mask)
    errors = np.abs(est - ref)[roi]
    spreads = spread[roi]  # type: ignore[index]
    if errors.size < 2 or np.ptp(errors) == 0 or np.ptp(spreads) == 0:
        return float("nan")
    return float(spearmanr(spreads, errors).statistic)


# --- reliability ----------------------------------------------------------------------------
@dataclass
class ReliabilityCurve:
    """Pixels binned by their std: per bin, the count and the sums of std, ``|error|`` and
    ``error^2`` (sums, so curves on the same edges add up with :meth:`merge`).

    ``bin_edges`` has ``n_bins + 1`` increasing values; a pixel with
    ``bin_edges[k] <= std < bin_edges[k + 1]`` is in bin ``k`` (the last bin also takes
    ``std == bin_edges[-1]``).
    """

    bin_edges: np.ndarray
    counts: np.ndarray
    sum_std: np.ndarray
    sum_abs_error: np.ndarray
    sum_squared_error: np.ndarray
    n_cases: int = 1
    labels: dict[str, str] = field(default_factory=dict)

    def _mean(self, sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, sums / np.maximum(self.counts, 1), np.nan)

    @property
    def mean_std(self) -> np.ndarray:
        """Mean std per bin (NaN for an empty bin)."""
        return self._mean(self.sum_std)

    @property
    def mean_abs_error(self) -> np.ndarray:
        """Mean ``|estimate - truth|`` per bin (NaN for an empty bin)."""
        return self._mean(self.sum_abs_error)

    @property
    def rms_error(self) -> np.ndarray:
        """Root mean squared error per bin (NaN for an empty bin)."""
        return np.sqrt(self._mean(self.sum_squared_error))

    def merge(self, other: ReliabilityCurve) -> ReliabilityCurve:
        """The curve of both pixel sets (same bin edges required)."""
        if not np.array_equal(self.bin_edges, other.bin_edges):
            raise InvalidInputError(
                "reliability curves with different bin edges cannot be merged",
                fix="bin every case on the same edges (e.g. STD_BIN_EDGES)",
            )
        return ReliabilityCurve(
            self.bin_edges.copy(),
            self.counts + other.counts,
            self.sum_std + other.sum_std,
            self.sum_abs_error + other.sum_abs_error,
            self.sum_squared_error + other.sum_squared_error,
            self.n_cases + other.n_cases,
            dict(self.labels),
        )

    def to_dict(self) -> dict:
        """Plain lists and numbers (JSON-ready; an infinite edge is written as ``"inf"``)."""
        return {
            "bin_edges": [float(e) if np.isfinite(e) else "inf" for e in self.bin_edges],
            "counts": [int(c) for c in self.counts],
            "sum_std": [float(v) for v in self.sum_std],
            "sum_abs_error": [float(v) for v in self.sum_abs_error],
            "sum_squared_error": [float(v) for v in self.sum_squared_error],
            "n_cases": int(self.n_cases),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ReliabilityCurve:
        """Inverse of :meth:`to_dict`."""
        return cls(
            np.array([float(e) for e in data["bin_edges"]]),
            np.asarray(data["counts"], dtype=np.int64),
            np.asarray(data["sum_std"], dtype=np.float64),
            np.asarray(data["sum_abs_error"], dtype=np.float64),
            np.asarray(data["sum_squared_error"], dtype=np.float64),
            int(data.get("n_cases", 1)),
            dict(data.get("labels", {})),
        )


def reliability_curve(
    estimate: ArrayLike,
    truth: ArrayLike,
    std: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bin_edges: Sequence[float] | np.ndarray | None = None,
    n_bins: int = 10,
) -> ReliabilityCurve:
    """The error-vs-std reliability curve of one case over the ROI pixels.

    ``bin_edges`` fixes the std bins (e.g. :data:`STD_BIN_EDGES` for [0, 1] images, so the
    curves of many cases can be merged); without them, ``n_bins`` equal-count bins of this
    case's std (quantile edges, duplicates dropped).

    >>> curve = reliability_curve(np.zeros(4), np.array([0.1, 0.3, 0.4, 0.6]),
    ...                           np.array([0.1, 0.1, 0.5, 0.5]),
    ...                           mask=np.ones(4, bool), bin_edges=[0.0, 0.2, 1.0])
    >>> curve.counts.tolist(), curve.mean_std.tolist(), curve.mean_abs_error.round(3).tolist()
    ([2, 2], [0.1, 0.5], [0.2, 0.5])
    """
    est, ref, spread, roi = _image_set(estimate, truth, std, mask)
    spreads = spread[roi]  # type: ignore[index]
    errors = est[roi] - ref[roi]
    if bin_edges is None:
        if int(n_bins) < 1:
            raise InvalidInputError(f"n_bins must be >= 1, got {n_bins}")
        edges = np.unique(np.quantile(spreads, np.linspace(0.0, 1.0, int(n_bins) + 1)))
        if edges.size < 2:  # a constant std: one bin holding every pixel
            edges = np.array([edges[0], edges[0] + max(abs(edges[0]), 1.0) * 1e-12])
    else:
        edges = np.asarray(bin_edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise InvalidInputError(
                f"bin_edges must be at least two increasing values, got {edges.tolist()}"
            )
    index = np.searchsorted(edges, spreads, side="right") - 1
    index[spreads == edges[-1]] = edges.size - 2  # the last bin is closed
    inside = (index >= 0) & (index < edges.size - 1)
    index, spreads, errors = index[inside], spreads[inside], errors[inside]
    n = edges.size - 1

    def sums(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n).astype(np.float64)

    return ReliabilityCurve(
        edges,
        np.bincount(index, minlength=n).astype(np.int64),
        sums(spreads),
        sums(np.abs(errors)),
        sums(errors**2),
    )


# --- all at once ----------------------------------------------------------------------------
def uncertainty_scores(
    estimate: ArrayLike,
    truth: ArrayLike,
    std: ArrayLike,
    samples: ArrayLike | None = None,
    *,
    mask: ArrayLike | None = None,
    levels: Sequence[float] = LEVELS,
    scales: dict[float, float] | None = None,
) -> dict[str, float]:
    """Every uncertainty number of one case, as the benchmark's columns.

    Keys, for each level ``p`` in ``levels`` (``NN = level_name(p)``):
    ``coverage_NN`` (``estimate -+ z_p std``), ``coverage_NN_samples`` (the samples'
    quantile interval; only with ``samples``), ``coverage_NN_calibrated`` (``estimate -+
    scales[p] std``; only with ``scales``); and ``std_error_spearman``, ``roi_pixels``.
    ROI: ``mask``, or the ground truth's foreground.
    """
    est, ref, spread, roi = _image_set(estimate, truth, std, mask)
    scores: dict[str, float] = {}
    stack = None if samples is None else _samples(samples, ref.shape)
    for level in levels:
        name = level_name(level)
        scores[f"coverage_{name}"] = std_coverage(ref, est, spread, level, mask=roi)
        if stack is not None:
            lower, upper = sample_interval(stack, level)
            scores[f"coverage_{name}_samples"] = coverage(ref, lower, upper, mask=roi)
        if scales is not None and level in scales:
            scores[f"coverage_{name}_calibrated"] = std_coverage(
                ref, est, spread, level, mask=roi, scale=scales[level]
            )
    scores["std_error_spearman"] = std_error_spearman(est, ref, spread, mask=roi)
    scores["roi_pixels"] = int(roi.sum())
    return scores
