"""Peak signal-to-noise ratio with an explicit data range.

``PSNR = 10 log10(data_range^2 / MSE)`` in dB, ``MSE`` the mean squared error of the
magnitude images over the ROI (all pixels without one); ``data_range`` defaults to
``reference.max() - reference.min()``. See :data:`~medldm.metrics.METRIC_CONVENTION`.

Example
-------
>>> import numpy as np
>>> reference = np.array([[0.0, 1.0], [2.0, 4.0]])
>>> round(psnr(reference + 0.1, reference), 2)  # range 4, MSE 0.01: 10 log10(1600)
32.04
>>> psnr(reference, reference)
inf
"""

from __future__ import annotations

import numpy as np

from medldm.metrics.inputs import (
    ArrayLike,
    DataRange,
    per_slice_values,
    prepare_pair,
    resolve_data_range,
)


def _psnr(est: np.ndarray, ref: np.ndarray, data_range: float, roi: np.ndarray | None) -> float:
    error = (est - ref) if roi is None else (est - ref)[roi]
    mse = float(np.mean(error**2))
    if mse == 0:
        return float("inf")
    return float(10 * np.log10(data_range**2 / mse))


def psnr(
    estimate: ArrayLike,
    reference: ArrayLike,
    *,
    data_range: DataRange = None,
    mask: ArrayLike | None = None,
    per_slice: bool = False,
    slice_axis: int = 0,
) -> float | np.ndarray:
    """PSNR in dB of ``estimate`` against the ground truth ``reference``.

    Parameters
    ----------
    estimate, reference:
        2D images or 3D volumes of one shape (NumPy, torch or MedImage; complex inputs
        are compared as magnitudes; leading singleton axes are dropped).
    data_range:
        Peak-to-peak intensity range in the reference's units; default
        ``reference.max() - reference.min()`` (of the whole volume, also per slice). With
        ``per_slice=True`` it may be one value per slice. Must be positive.
    mask:
        Optional ROI (non-zero = inside), shaped like the reference; the MSE is averaged
        over the ROI pixels only.
    per_slice:
        For a volume, one PSNR per 2D slice along ``slice_axis`` (NaN where the ROI slice
        is empty) instead of one for the volume.

    Returns
    -------
    float, or an array of one float per slice; ``inf`` for identical images.
    """
    est, ref, roi = prepare_pair(estimate, reference, mask)
    if per_slice:
        return per_slice_values(_psnr, est, ref, data_range, roi, slice_axis)
    return _psnr(est, ref, resolve_data_range(data_range, ref), roi)
