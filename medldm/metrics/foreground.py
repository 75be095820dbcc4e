"""Foreground (region-of-interest) masks of ground-truth images.

A pixel is foreground when its magnitude exceeds ``min + threshold_fraction * (max - min)``
of the image (or Otsu's threshold when ``threshold_fraction is None``); enclosed holes
(dark ventricles, lumens) are then filled with :func:`scipy.ndimage.binary_fill_holes`
in 2D, or in 3D on the whole volume.

Example
-------
>>> import numpy as np
>>> ring = np.zeros((7, 7)); ring[1:6, 1:6] = 1.0; ring[3, 3] = 0.0  # a ring with a hole
>>> mask = foreground_mask(ring)
>>> int(mask.sum()), bool(mask[3, 3])
(25, True)
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from medldm.errors import InvalidInputError
from medldm.metrics.inputs import ArrayLike, as_magnitude


def foreground_mask(reference: ArrayLike, threshold_fraction: float | None = 0.05) -> np.ndarray:
    """Boolean foreground mask of a 2D image or 3D volume (leading singleton axes dropped).

    Parameters
    ----------
    reference:
        The ground truth (magnitude is used).
    threshold_fraction:
        Fraction of the intensity span above the minimum that counts as foreground, in
        ``[0, 1)``; ``None`` uses Otsu's threshold instead.
    """
    image = as_magnitude(reference)
    low, high = float(image.min()), float(image.max())
    if high <= low:
        raise InvalidInputError(
            "the reference is constant, it has no foreground", fix="pass the ROI explicitly"
        )
    if threshold_fraction is None:
        from skimage.filters import threshold_otsu

        threshold = float(threshold_otsu(image))
    else:
        if not 0 <= threshold_fraction < 1:
            raise InvalidInputError(
                f"threshold_fraction must be in [0, 1), got {threshold_fraction}"
            )
        threshold = low + threshold_fraction * (high - low)
    return ndimage.binary_fill_holes(image > threshold)
