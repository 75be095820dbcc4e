"""Normalised mean squared error (as in the fastMRI challenge).

``NMSE = ||estimate - reference||^2 / ||reference||^2`` of the magnitude images over the
ROI (all pixels without one); no unit, 0 for a perfect estimate. It needs no data range.

Example
-------
>>> import numpy as np
>>> reference = np.array([[3.0, 4.0]])
>>> nmse(np.zeros((1, 2)), reference)
1.0
>>> nmse(reference, reference)
0.0
"""

from __future__ import annotations

import numpy as np

from medldm.errors import InvalidInputError
from medldm.metrics.inputs import ArrayLike, per_slice_values, prepare_pair


def _nmse(est: np.ndarray, ref: np.ndarray, _range: float, roi: np.ndarray | None) -> float:
    if roi is not None:
        est, ref = est[roi], ref[roi]
    energy = float(np.sum(ref**2))
    if energy == 0:
        raise InvalidInputError(
            "the reference is zero everywhere (in the ROI), so NMSE is undefined",
            fix="use PSNR with an explicit data_range, or a ROI with signal",
        )
    return float(np.sum((est - ref) ** 2) / energy)


def nmse(
    estimate: ArrayLike,
    reference: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    per_slice: bool = False,
    slice_axis: int = 0,
) -> float | np.ndarray:
    """NMSE of ``estimate`` against the ground truth ``reference``.

    Parameters are those of :func:`~medldm.metrics.psnr` (no data range is needed). A
    reference with zero energy raises InvalidInputError; per-slice values are NaN where
    the ROI slice is empty.
    """
    est, ref, roi = prepare_pair(estimate, reference, mask)
    if per_slice:
        return per_slice_values(_nmse, est, ref, 1.0, roi, slice_axis)
    return _nmse(est, ref, 1.0, roi)
