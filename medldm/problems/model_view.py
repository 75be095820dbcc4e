"""The model view: the one mapping between an image on disk and a 2D prior's space.

Training, the benchmark and the reconstruction app all lay images out for a prior through
these functions, so the convention exists once (the benchmark once fed the brain prior
upside-down slices because it had its own: -0.43 dB at MRI 4x, worse on 18 of 18 IXI test
slice x seed pairs; benchmarks/results/orientation/).

**Orientation.** A volume is read in its own storage order; its slices are reoriented to
RAS+ (:func:`~medldm.data.slices.central_slices`: slice ``x`` grows towards R, ``y``
towards A for axial slices, S for coronal and sagittal), and a slice array ``[x, y]`` is
laid out as ``(rows, columns) = (y, x)``: **rows grow towards A, columns towards R**. A 2D
picture (PNG, TIFF, MedNIST) stored ``[x, y]`` with ``y`` the file's row index is laid out
the same way, ``(rows, columns) = (y, x)``, i.e. as it appears in the file. To show a
volume slice with anterior at the top, display it with ``origin="lower"``
(:func:`display_origin`).

**Intensities.** The normaliser of the prior's data card is fitted once per image or
volume on its *signed* values (a CT in HU has negative air; ranking ``|HU|`` would call it
bright) and inverted exactly afterwards (no clipping unless asked).

Example
-------
>>> import numpy as np
>>> from medldm.io.image import MedImage
>>> affine = np.array([[0, 0, 2, -90], [-2, 0, 0, 118], [0, 2, 0, -135], [0, 0, 0, 1.0]])
>>> volume = MedImage(np.random.rand(12, 10, 8).astype(np.float32), affine)  # axes P, S, R
>>> [(index, pixels.shape) for index, pixels in model_slices(volume, 2)]
[(4, (12, 8)), (5, (12, 8))]
>>> display_origin(from_volume=True), display_origin(from_volume=False)
('lower', 'upper')
>>> stack = np.random.rand(3, 4, 5)                       # (S, rows, cols)
>>> bool(np.array_equal(volume_to_model_stack(model_stack_to_volume(stack)), stack))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medldm.data.normalize import Normalization, Normalizer, fit_to_image
from medldm.data.slices import central_slices, plane_axis
from medldm.io.image import MedImage

#: In words, for reports and model cards.
MODEL_ORIENTATION = (
    "rows grow towards A (S for coronal/sagittal slices), columns towards R (A for sagittal); "
    "2D pictures as stored in the file"
)


def slice_to_model(pixels: np.ndarray) -> np.ndarray:
    """A slice array ``[x, y, ...]`` (RAS-reoriented, or a 2D picture) -> ``(rows, cols, ...)``."""
    pixels = np.asarray(pixels)
    return np.swapaxes(pixels, 0, 1)


def model_to_slice(pixels: np.ndarray) -> np.ndarray:
    """Inverse of :func:`slice_to_model`."""
    return np.swapaxes(np.asarray(pixels), 0, 1)


def volume_to_model_stack(array: np.ndarray) -> np.ndarray:
    """A RAS+ canonical volume ``[x, y, z]`` -> axial stack ``(S, rows, cols) = (z, y, x)``."""
    return np.asarray(array).transpose(2, 1, 0)


def model_stack_to_volume(stack: np.ndarray) -> np.ndarray:
    """Inverse of :func:`volume_to_model_stack`."""
    return np.asarray(stack).transpose(2, 1, 0)


def model_slices(
    volume: MedImage, n: int | None = None, plane: str | int = "axial"
) -> list[tuple[int, np.ndarray]]:
    """The ``n`` central slices of ``volume`` along ``plane`` (all when ``n`` is None) as
    ``(index along the volume's array axis, pixels (rows, cols, ...))`` in the model view."""
    if n is None:
        axis = plane_axis(volume.affine, plane) if isinstance(plane, str) else int(plane)
        n = volume.array.shape[axis]
    return [
        (int(item.metadata["slice_index"]), slice_to_model(item.array))
        for item in central_slices(volume, int(n), axis=plane)
    ]


def picture_to_model(picture: np.ndarray) -> np.ndarray:
    """A picture without geometry shown the way scanners show it, row 0 at the top taken as
    anterior (an image reconstructed from raw k-space, ``(..., rows, cols)``), -> the model
    view of volume slices (rows grow towards A): rows reversed. Its own inverse.

    >>> picture_to_model(np.array([[1], [2]])).ravel().tolist()
    [2, 1]
    """
    return np.ascontiguousarray(np.flip(np.asarray(picture), axis=-2))


def display_origin(*, from_volume: bool) -> str:
    """matplotlib ``origin`` that shows a model-view image the way readers expect: anterior
    (superior) at the top for volume slices, the file's own layout for 2D pictures."""
    return "lower" if from_volume else "upper"


def fit_intensity(normalizer: Normalizer, values: Any, unit: str = "unknown") -> Normalization:
    """Fit ``normalizer`` to an image or volume on its signed values (magnitude if complex):
    :func:`medldm.data.normalize.fit_to_image`, the rule solvers use on raw data too."""
    return fit_to_image(normalizer, values, unit=unit)
