"""Structural similarity with the settings of Wang et al. (2004), via scikit-image.

``skimage.metrics.structural_similarity(reference, estimate, data_range=data_range,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` (K1 = 0.01, K2 = 0.03)
on the whole magnitude image, or on the whole volume with a 3D Gaussian window. The SSIM
map is averaged over the pixels at least 5 pixels from every edge (as scikit-image does),
intersected with the ROI when a mask is given.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE TIP 13(4), 2004.

Example
-------
>>> from skimage.data import camera
>>> image = camera().astype(float)
>>> ssim(image, image, data_range=255.0)
1.0
>>> round(ssim(image + 10.0, image, data_range=255.0), 4)
0.9712
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from medldm.errors import InvalidInputError
from medldm.metrics.convention import SSIM_SIGMA, SSIM_WINDOW
from medldm.metrics.inputs import (
    ArrayLike,
    DataRange,
    per_slice_values,
    prepare_pair,
    resolve_data_range,
)


def ssim_map(estimate: np.ndarray, reference: np.ndarray, data_range: float) -> np.ndarray:
    """The full SSIM map (same shape as the inputs, float64) of two magnitude images."""
    if min(reference.shape) < SSIM_WINDOW:
        raise InvalidInputError(
            f"SSIM needs at least {SSIM_WINDOW} pixels along every axis, got shape "
            f"{reference.shape}",
            fix="use per_slice=True for thin volumes, or larger images",
        )
    _, full_map = structural_similarity(
        reference,
        estimate,
        data_range=data_range,
        gaussian_weights=True,
        sigma=SSIM_SIGMA,
        use_sample_covariance=False,
        full=True,
    )
    return full_map


def _ssim(est: np.ndarray, ref: np.ndarray, data_range: float, roi: np.ndarray | None) -> float:
    full_map = ssim_map(est, ref, data_range)
    border = (SSIM_WINDOW - 1) // 2
    interior = np.zeros(full_map.shape, dtype=bool)
    interior[tuple(slice(border, n - border) for n in full_map.shape)] = True
    inside = interior if roi is None else interior & roi
    if not inside.any():
        return float("nan")
    return float(np.mean(full_map[inside]))


def ssim(
    estimate: ArrayLike,
    reference: ArrayLike,
    *,
    data_range: DataRange = None,
    mask: ArrayLike | None = None,
    per_slice: bool = False,
    slice_axis: int = 0,
) -> float | np.ndarray:
    """Mean SSIM of ``estimate`` against the ground truth ``reference`` (1 = identical).

    Parameters are those of :func:`~medldm.metrics.psnr`. With a ``mask``, the SSIM map
    (computed on the whole image, so windows see the context) is averaged over the ROI
    pixels away from the edges; NaN if none is left. 3D volumes use a 3D window and need
    at least 11 pixels along every axis; ``per_slice=True`` gives 2D SSIM per slice.
    """
    est, ref, roi = prepare_pair(estimate, reference, mask)
    if per_slice:
        return per_slice_values(_ssim, est, ref, data_range, roi, slice_axis)
    return _ssim(est, ref, resolve_data_range(data_range, ref), roi)
