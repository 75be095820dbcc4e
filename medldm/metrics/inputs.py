"""Turning metric inputs (arrays, tensors, MedImages; real or complex) into float64
magnitude arrays, and resolving the data range and ROI mask.

Example
-------
>>> import numpy as np
>>> as_magnitude(np.array([3 + 4j, -1 + 0j])).tolist()
[5.0, 1.0]
>>> resolve_data_range(None, np.array([[1.0, 3.0], [2.0, 5.0]]))
4.0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medldm.errors import InvalidInputError

ArrayLike = Any  # numpy array, torch tensor or MedImage
DataRange = float | Sequence[float] | np.ndarray | None


def as_magnitude(image: ArrayLike) -> np.ndarray:
    """``|image|`` as a float64 NumPy array, with leading singleton axes (batch, channel)
    dropped so that a ``(1, 1, H, W)`` tensor becomes ``(H, W)``."""
    if hasattr(image, "array") and hasattr(image, "affine"):  # MedImage
        image = image.array
    if type(image).__module__.startswith("torch"):
        image = image.detach().cpu().numpy()
    array = np.asarray(image)
    array = np.abs(array) if np.iscomplexobj(array) else array
    array = array.astype(np.float64, copy=False)
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    return array


def prepare_pair(
    estimate: ArrayLike, reference: ArrayLike, mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Magnitude estimate and reference of one shape (2D or 3D), and a boolean ROI mask."""
    est, ref = as_magnitude(estimate), as_magnitude(reference)
    if est.shape != ref.shape:
        raise InvalidInputError(
            f"estimate shape {est.shape} differs from reference shape {ref.shape}",
            fix="compare images of the same shape (leading singleton axes are ignored)",
        )
    if ref.ndim not in (2, 3):
        raise InvalidInputError(
            f"metrics take one 2D image or one 3D volume, got shape {ref.shape}",
            fix="loop over the batch and channel axes",
        )
    if not np.all(np.isfinite(ref)):
        raise InvalidInputError(
            "the reference contains NaN or inf", fix="clean the ground truth first"
        )
    roi = None
    if mask is not None:
        roi = as_magnitude(mask) != 0
        if roi.shape != ref.shape:
            raise InvalidInputError(
                f"mask shape {roi.shape} differs from image shape {ref.shape}",
                fix="pass a ROI mask shaped like the reference",
            )
        if not roi.any():
            raise InvalidInputError("the ROI mask is empty", fix="pass a mask with foreground")
    return est, ref, roi


def _check_positive(value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise InvalidInputError(
            f"data_range must be a positive finite number, got {value}",
            fix="pass the intensity range of the ground truth, e.g. max - min",
        )
    return value


def resolve_data_range(data_range: DataRange, reference: np.ndarray) -> float:
    """The explicit ``data_range`` or, when ``None``, ``reference.max() - reference.min()``.

    Raises InvalidInputError for a non-positive range (e.g. a constant reference).
    """
    if data_range is not None:
        if np.ndim(data_range) != 0:
            raise InvalidInputError(
                "a data_range per slice needs per_slice=True",
                fix="pass one number, or per_slice=True",
            )
        return _check_positive(data_range)
    span = float(reference.max() - reference.min())
    if span <= 0:
        raise InvalidInputError(
            "the reference is constant, so its data range max - min is 0",
            fix="pass data_range explicitly (the intensity range of your images)",
        )
    return span


def per_slice_values(
    metric: Callable[[np.ndarray, np.ndarray, float, np.ndarray | None], float],
    est: np.ndarray,
    ref: np.ndarray,
    data_range: DataRange,
    roi: np.ndarray | None,
    slice_axis: int,
) -> np.ndarray:
    """``metric(est_slice, ref_slice, range, roi_slice)`` for every 2D slice along
    ``slice_axis`` of a volume; the range is the volume's (or one given per slice).
    Slices whose ROI is empty give NaN."""
    if ref.ndim != 3:
        raise InvalidInputError(
            f"per_slice=True needs a 3D volume, got shape {ref.shape}",
            fix="use per_slice=False for 2D images",
        )
    axis = slice_axis % 3
    n_slices = ref.shape[axis]
    if data_range is not None and np.ndim(data_range) == 1:
        ranges = [_check_positive(r) for r in data_range]
        if len(ranges) != n_slices:
            raise InvalidInputError(
                f"{len(ranges)} data ranges for {n_slices} slices",
                fix="pass one range per slice or one for the volume",
            )
    else:
        ranges = [resolve_data_range(data_range, ref)] * n_slices
    values = np.empty(n_slices)
    for index in range(n_slices):
        roi_slice = None if roi is None else np.take(roi, index, axis=axis)
        if roi_slice is not None and not roi_slice.any():
            values[index] = np.nan
            continue
        values[index] = metric(
            np.take(est, index, axis=axis), np.take(ref, index, axis=axis), ranges[index], roi_slice
        )
    return values
