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

**Which slices.** ``sampling="central"`` takes the ``n`` central slices of a volume
(contiguous, array order). ``sampling="foreground"`` takes ``n`` slices evenly spaced over
the volume's *foreground extent* (all of them with ``n=None``), ordered and labelled by
anatomy. The foreground rule lives here and nowhere else in the benchmark: on the volume
in the model range (after the card's intensity fit), a pixel is foreground when it is above
:data:`FOREGROUND_LEVEL` (0.1), and the extent runs from the first to the last slice with
at least :data:`MIN_FOREGROUND_FRACTION` (15 %) of its pixels foreground (the fraction of
the slice as stored in the volume, before any crop or pad). It is the rule training keeps
its IXI slices by (``medldm.train.data``: pixels above 0.1, at least 15 % of the slice
padded to 128 x 128, so a little stricter there), so the extent is about the range of
slices the prior was trained on. Each sampled slice gets a ``position`` in the extent, 0
at its inferior end and 1 at its superior end in RAS+ (L to R for sagittal, P to A for
coronal slices), whatever the storage order, and a ``third`` (``"inferior"``,
``"middle"``, ``"superior"``; for other planes ``left``/``right``,
``posterior``/``anterior``).

**Whole volumes.** :func:`model_stack` lays a whole volume out as one stack
``(S, rows, cols)``: its slices along a plane, each as :func:`model_slices` lays it out,
from the low world end (inferior for axial slices) to the high end, whatever the storage
order (for a RAS+ volume and axial slices, :func:`volume_to_model_stack` of its array);
:func:`stack_extent` gives the stack indices of its foreground extent with the position
and third foreground sampling gives each of those slices.

Example
-------
>>> import numpy as np
>>> from medldm.io.image import MedImage
>>> affine = np.array([[0, 0, 2, -90], [-2, 0, 0, 118], [0, 2, 0, -135], [0, 0, 0, 1.0]])
>>> volume = MedImage(np.random.rand(12, 10, 8).astype(np.float32), affine)  # axes P, S, R
>>> [(index, pixels.shape) for index, pixels in model_slices(volume, 2)]
[(4, (12, 8)), (5, (12, 8))]
>>> volume.array[:, :3] = 0                    # empty: the 3 most inferior axial slices
>>> picked = sample_model_slices(volume, 3, sampling="foreground")
>>> [(s.index, s.position, s.third) for s in picked]
[(3, 0.0, 'inferior'), (6, 0.5, 'middle'), (9, 1.0, 'superior')]
>>> stack = model_stack(volume)                 # stored P, S, R: the axial slices, I to S
>>> stack.shape, [(s.index, s.third) for s in stack_extent(volume)][:2]
((10, 12, 8), [(3, 'inferior'), (4, 'inferior')])
>>> display_origin(from_volume=True), display_origin(from_volume=False)
('lower', 'upper')
>>> stack = np.random.rand(3, 4, 5)                       # (S, rows, cols)
>>> bool(np.array_equal(volume_to_model_stack(model_stack_to_volume(stack)), stack))
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medldm.data.normalize import Normalization, Normalizer, fit_to_image
from medldm.data.slices import central_slices, nib_orientation, plane_axis, slices_at
from medldm.errors import InvalidInputError
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


#: How slices are taken from a volume: the central ones, or evenly over the foreground.
SLICE_SAMPLINGS = ("central", "foreground")
#: A pixel of a volume in the model range ([0, 1]) above this level is foreground.
FOREGROUND_LEVEL = 0.1
#: A slice belongs to the foreground extent with at least this fraction of foreground pixels.
MIN_FOREGROUND_FRACTION = 0.15
#: Names of the thirds of the foreground extent, low to high world coordinate, by the
#: world axis (0 = L-R, 1 = P-A, 2 = I-S) the slices are stacked along.
THIRD_NAMES = {
    0: ("left", "middle", "right"),
    1: ("posterior", "middle", "anterior"),
    2: ("inferior", "middle", "superior"),
}


@dataclass(frozen=True)
class ModelSlice:
    """One slice of a volume in the model view.

    Attributes
    ----------
    index:
        Index along the volume's array axis.
    pixels:
        ``(rows, cols, ...)`` in the model view.
    position:
        Foreground sampling only (else None): where the slice lies in the foreground extent,
        0 at its inferior (left, posterior) end, 1 at its superior (right, anterior) end.
    third:
        Foreground sampling only (else None): the third of the extent the slice is in,
        e.g. ``"inferior"``, ``"middle"``, ``"superior"``.
    """

    index: int
    pixels: np.ndarray
    position: float | None = None
    third: str | None = None


def model_slices(
    volume: MedImage, n: int | None = None, plane: str | int = "axial"
) -> list[tuple[int, np.ndarray]]:
    """The ``n`` central slices of ``volume`` along ``plane`` (all when ``n`` is None) as
    ``(index along the volume's array axis, pixels (rows, cols, ...))`` in the model view."""
    return [(item.index, item.pixels) for item in sample_model_slices(volume, n, plane)]


def sample_model_slices(
    volume: MedImage, n: int | None = None, plane: str | int = "axial", sampling: str = "central"
) -> list[ModelSlice]:
    """Slices of ``volume`` along ``plane`` in the model view (see "Which slices" above).

    Parameters
    ----------
    volume:
        A 3D volume; for ``"foreground"`` in the model range (the card's intensity fit
        applied), since the foreground rule is a level of that range.
    n:
        How many slices; None: all of them (every slice of the volume for ``"central"``,
        of the foreground extent for ``"foreground"``). Foreground sampling with ``n`` at
        least the extent's length takes the whole extent.
    plane:
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or an array axis 0-2.
    sampling:
        ``"central"`` (contiguous, array order) or ``"foreground"`` (evenly spaced over the
        foreground extent, from the inferior end to the superior end, with positions and
        thirds).
    """
    if sampling not in SLICE_SAMPLINGS:
        raise InvalidInputError(
            f"unknown slice sampling {sampling!r}", fix=f"use one of {list(SLICE_SAMPLINGS)}"
        )
    axis = plane_axis(volume.affine, plane) if isinstance(plane, str) else int(plane)
    if sampling == "central":
        count = volume.array.shape[axis] if n is None else int(n)
        return [
            ModelSlice(int(item.metadata["slice_index"]), slice_to_model(item.array))
            for item in central_slices(volume, count, axis=plane)
        ]
    indices, positions, thirds = _foreground_sample(volume, axis, n)
    return [
        ModelSlice(int(item.metadata["slice_index"]), slice_to_model(item.array), pos, third)
        for item, pos, third in zip(
            slices_at(volume, indices, axis=plane), positions, thirds, strict=True
        )
    ]


def foreground_fractions(volume: MedImage, axis: int) -> np.ndarray:
    """Per index along array ``axis``, the fraction of the slice's pixels above
    :data:`FOREGROUND_LEVEL` (the volume in the model range; magnitude if complex)."""
    values = np.abs(np.asarray(volume.array))
    stacked = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return (stacked > FOREGROUND_LEVEL).mean(axis=1)


def foreground_slices(stack: np.ndarray) -> list[int]:
    """Indices of the slices of a model-view stack ``(S, rows, cols)`` (model range) that
    count as foreground by the extent's rule: at least :data:`MIN_FOREGROUND_FRACTION` of
    their pixels above :data:`FOREGROUND_LEVEL`.

    >>> stack = np.zeros((3, 10, 10)); stack[1, :5] = 1.0; stack[2, :1] = 1.0
    >>> foreground_slices(stack)  # 50 % and 10 % foreground: only the first counts
    [1]
    """
    fractions = foreground_fractions(MedImage(np.asarray(stack), np.eye(4)), 0)
    return [int(k) for k in np.flatnonzero(fractions >= MIN_FOREGROUND_FRACTION)]


def _foreground_extent(volume: MedImage, axis: int) -> tuple[int, int]:
    """First and last array index along ``axis`` of the foreground extent."""
    qualifying = np.flatnonzero(foreground_fractions(volume, axis) >= MIN_FOREGROUND_FRACTION)
    if qualifying.size == 0:
        raise InvalidInputError(
            f"no slice has {MIN_FOREGROUND_FRACTION * 100:.0f} % of its pixels above "
            f"{FOREGROUND_LEVEL} (in the model range): the volume has no foreground extent",
            fix="use data.slice_sampling=central for this data",
        )
    return int(qualifying[0]), int(qualifying[-1])


def slice_positions(volume: MedImage, plane: str | int = "axial") -> np.ndarray:
    """Every slice's ``position`` along ``plane`` (array order), as foreground sampling
    gives it: 0 at the inferior (left, posterior) end of the foreground extent, 1 at its
    superior end, slices outside the extent clipped to 0 or 1. ``volume`` in the model
    range. A slice-conditioned prior is told these (``Prior.at_slice_positions``).

    >>> import numpy as np
    >>> from medldm.io.image import MedImage
    >>> array = np.zeros((4, 4, 6), np.float32); array[:, :, 1:5] = 1.0
    >>> [round(float(p), 3) for p in slice_positions(MedImage(array, np.eye(4)))]
    [0.0, 0.0, 0.333, 0.667, 1.0, 1.0]
    """
    axis = plane_axis(volume.affine, plane) if isinstance(plane, str) else int(plane)
    first, last = _foreground_extent(volume, axis)
    _, direction = nib_orientation(volume.affine)[axis]
    index = np.arange(volume.array.shape[axis], dtype=np.float64)
    offset = index - first if direction > 0 else last - index
    span = max(last - first, 1)
    return np.clip(offset / span, 0.0, 1.0).astype(np.float32)


def _foreground_sample(
    volume: MedImage, axis: int, n: int | None
) -> tuple[list[int], list[float], list[str]]:
    """Array indices, positions and thirds of ``n`` slices evenly spaced over the
    foreground extent, from its low (inferior) to its high (superior) world end."""
    first, last = _foreground_extent(volume, axis)
    span = last - first  # slices in the extent: span + 1
    world_axis, direction = nib_orientation(volume.affine)[axis]
    if n is not None and int(n) < 1:
        raise InvalidInputError(f"asked for {n} slices", fix="choose n >= 1, or None for all")
    count = span + 1 if n is None else min(int(n), span + 1)
    if count == 1:
        offsets = [span // 2]
    else:  # round(k * span / (count - 1)), half up, in integers: distinct when count <= span + 1
        offsets = [(2 * k * span + count - 1) // (2 * (count - 1)) for k in range(count)]
    # offsets count from the low world end (I, P or L) of the extent
    indices = [first + o if direction > 0 else last - o for o in offsets]
    positions = [o / span if span else 0.5 for o in offsets]
    low, middle, high = THIRD_NAMES[int(world_axis)]
    thirds = [low if 3 * o < span else high if 3 * o > 2 * span else middle for o in offsets]
    return indices, positions, thirds


def _stack_order(volume: MedImage, axis: int) -> list[int]:
    """Array indices along ``axis`` from the low world end (I, P or L) to the high one."""
    indices = list(range(volume.array.shape[axis]))
    return indices if nib_orientation(volume.affine)[axis][1] > 0 else indices[::-1]


def model_stack(volume: MedImage, plane: str | int = "axial") -> np.ndarray:
    """A whole volume as one stack ``(S, rows, cols, ...)`` in the model view: its slices
    along ``plane``, each laid out as :func:`model_slices` lays it out, from the low world
    end of the plane's normal (inferior for axial slices) to the high end, whatever the
    storage order. For a RAS+ volume and axial slices this is
    ``volume_to_model_stack(volume.array)``."""
    axis = plane_axis(volume.affine, plane) if isinstance(plane, str) else int(plane)
    slices = slices_at(volume, _stack_order(volume, axis), axis=plane)
    return np.stack([slice_to_model(item.array) for item in slices])


def stack_extent(volume: MedImage, plane: str | int = "axial") -> list[ModelSlice]:
    """Every slice of ``volume``'s foreground extent along ``plane``, as foreground
    sampling of all of it gives them (the same slices, positions and thirds:
    :func:`sample_model_slices`), but with ``index`` the slice's index in
    :func:`model_stack` and no pixels (an empty array); ordered inferior first.

    ``volume`` in the model range; raises InvalidInputError when it has no foreground
    extent.
    """
    axis = plane_axis(volume.affine, plane) if isinstance(plane, str) else int(plane)
    stack_index = {index: k for k, index in enumerate(_stack_order(volume, axis))}
    indices, positions, thirds = _foreground_sample(volume, axis, None)
    return [
        ModelSlice(stack_index[index], np.empty(0, np.float32), position, third)
        for index, position, third in zip(indices, positions, thirds, strict=True)
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
