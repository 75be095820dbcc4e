"""2D slices of volumes with their own geometry, and centred crop/pad to a square.

A slice keeps a full 4x4 affine: its columns 0 and 1 are the volume's in-plane axis
vectors (mm per pixel), column 2 the through-plane axis vector (normal times spacing) and
the translation the world position (RAS+ mm) of the slice's pixel ``(0, 0)``, so
``slice.affine @ (i, j, 0, 1)`` is the same world point as the volume voxel it came from.

Planes are found from the affine, not from the array order: ``"axial"`` is the array axis
closest to the world S-I axis (nibabel's ``io_orientation``), ``"coronal"`` the one closest to
A-P, ``"sagittal"`` the one closest to L-R. IXI volumes, for example, are stored P, S, R, so
their axial axis is array axis 1.

Example
-------
>>> import numpy as np
>>> from medldm.io.image import MedImage
>>> affine = np.array([[0, 0, 2, -90], [-2, 0, 0, 118], [0, 2, 0, -135], [0, 0, 0, 1.0]])
>>> volume = MedImage(np.zeros((120, 120, 90), np.float32), affine)  # axes P, S, R
>>> slices = central_slices(volume, 3, axis="axial")
>>> [s.metadata["slice_index"] for s in slices], slices[0].spatial_shape
([58, 59, 60], (90, 120))
>>> slices[0].orientation  # x grows to R, y to A, normal to S
'RAS'
>>> crop_or_pad(np.ones((90, 120)), 100).shape
(100, 100)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

import numpy as np

from medldm.errors import InvalidInputError
from medldm.io.image import MedImage

#: World axis (0 = L-R, 1 = A-P, 2 = S-I) that each anatomical plane is perpendicular to.
PLANE_NORMAL_WORLD_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}


def plane_axis(affine: np.ndarray, plane: str) -> int:
    """Array axis (0, 1 or 2) perpendicular to ``plane`` (``"axial"``, ...), from the affine."""
    if plane not in PLANE_NORMAL_WORLD_AXIS:
        raise InvalidInputError(
            f"unknown plane {plane!r}", fix=f"use one of {sorted(PLANE_NORMAL_WORLD_AXIS)}"
        )
    ornt = nib_orientation(affine)
    matches = np.flatnonzero(ornt[:, 0] == PLANE_NORMAL_WORLD_AXIS[plane])
    if matches.size != 1:
        raise InvalidInputError(
            f"cannot tell which array axis is {plane} from the affine",
            fix="check the image affine (it may be degenerate)",
        )
    return int(matches[0])


def nib_orientation(affine: np.ndarray) -> np.ndarray:
    """nibabel ``io_orientation``: per array axis, (closest world axis, +1 or -1)."""
    import nibabel as nib

    return nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))


def _slice_geometry(affine: np.ndarray, axis: int) -> tuple[list[int], list[bool]]:
    """In-plane array axes ordered by world axis, and whether each must be flipped so
    that it grows towards R, A or S (RAS+ in-plane directions)."""
    ornt = nib_orientation(affine)
    in_plane = sorted((a for a in range(3) if a != axis), key=lambda a: ornt[a, 0])
    flips = [bool(ornt[a, 1] < 0) for a in in_plane]
    return in_plane, flips


def central_slices(
    image: MedImage, n: int, axis: str | int = "axial", reorient: bool = True
) -> list[MedImage]:
    """The ``n`` central 2D slices of a volume along a plane normal, each with its affine.

    Parameters
    ----------
    image:
        A volume with spatial axes x, y, z (non-spatial axes after them are kept).
    n:
        Number of slices, at most the number along ``axis``; they are contiguous and
        centred: indices ``start .. start + n - 1`` with ``start = (N - n) // 2``.
    axis:
        ``"axial"``, ``"coronal"``, ``"sagittal"`` (found from the affine) or an array
        axis index 0-2.
    reorient:
        Permute and flip the in-plane axes so that slice ``x`` grows towards R (A for
        sagittal) and ``y`` towards A (S for coronal and sagittal), and the affine's normal
        column points to S (A for coronal, R for sagittal), whatever the volume's storage
        order. Only the pixel order changes; the affine follows, so world positions are
        unchanged. With ``False`` the volume's array order and axis vectors are kept.

    Returns
    -------
    list of MedImage
        2D images (axes ``x, y`` then the volume's non-spatial axes) in the volume's
        units; metadata is the volume's plus ``slice_index`` (along the volume's array
        axis), ``slice_axis`` and ``plane``.
    """
    array_axis, plane = _slice_axis(image, axis)
    size = image.spatial_shape[array_axis]
    if not 1 <= n <= size:
        raise InvalidInputError(
            f"asked for {n} slices, the volume has {size} along {plane}",
            fix=f"choose 1 <= n <= {size}",
        )
    start = (size - n) // 2
    return slices_at(image, range(start, start + n), axis, reorient)


def _slice_axis(image: MedImage, axis: str | int) -> tuple[int, str]:
    """(array axis, plane label) of a slicing request on a 3D volume."""
    if image.n_spatial != 3:
        raise InvalidInputError(
            f"slicing needs a 3D volume, got spatial shape {image.spatial_shape}",
            fix="pass a volume with axes x, y, z",
        )
    if isinstance(axis, str):
        return plane_axis(image.affine, axis), axis
    if axis in (0, 1, 2):
        return int(axis), f"array axis {axis}"
    raise InvalidInputError(f"bad slice axis {axis!r}", fix="use 'axial' or 0, 1, 2")


def slices_at(
    image: MedImage, indices: Iterable[int], axis: str | int = "axial", reorient: bool = True
) -> list[MedImage]:
    """The 2D slices of a volume at the given array ``indices`` along a plane normal, in
    the order given, each with its affine (``axis``, ``reorient`` and what comes back as in
    :func:`central_slices`).

    Example
    -------
    >>> from medldm.io.image import MedImage
    >>> volume = MedImage(np.zeros((4, 5, 6), np.float32), np.eye(4))
    >>> [s.metadata["slice_index"] for s in slices_at(volume, [5, 0])]
    [5, 0]
    """
    array_axis, plane = _slice_axis(image, axis)
    size = image.spatial_shape[array_axis]
    indices = [int(index) for index in indices]
    if any(not 0 <= index < size for index in indices):
        raise InvalidInputError(
            f"slice indices {indices} outside 0..{size - 1} along {plane}",
            fix=f"choose indices in 0..{size - 1}",
        )
    normal_sign = 1.0
    if reorient:
        in_plane, flips = _slice_geometry(image.affine, array_axis)
        if nib_orientation(image.affine)[array_axis, 1] < 0:
            normal_sign = -1.0  # the normal column also points to R, A or S
    else:
        in_plane, flips = [a for a in range(3) if a != array_axis], [False, False]

    out = []
    for index in indices:
        pixels = np.take(image.array, index, axis=array_axis)
        # After np.take the remaining spatial axes keep their relative order.
        remaining = [a for a in range(3) if a != array_axis]
        order = [remaining.index(a) for a in in_plane] + list(range(2, pixels.ndim))
        pixels = pixels.transpose(order)
        affine = np.eye(4)
        voxel = np.zeros(3)
        voxel[array_axis] = index
        for column, (a, flip) in enumerate(zip(in_plane, flips, strict=True)):
            affine[:3, column] = image.affine[:3, a] * (-1.0 if flip else 1.0)
            if flip:
                pixels = np.flip(pixels, axis=column)
                voxel[a] = image.spatial_shape[a] - 1
        affine[:3, 2] = image.affine[:3, array_axis] * normal_sign
        affine[:3, 3] = (image.affine @ np.append(voxel, 1.0))[:3]
        metadata = {
            **image.metadata,
            "slice_index": index,
            "slice_axis": array_axis,
            "plane": plane,
        }
        out.append(
            image.replace(
                array=np.ascontiguousarray(pixels),
                affine=affine,
                axes=("x", "y", *image.axes[3:]),
                metadata=metadata,
            )
        )
    return out


def _centred_bounds(length: int, size: int) -> tuple[int, int, int]:
    """(crop start, pad before, pad after) to take ``length`` to ``size`` centred."""
    if length >= size:
        return (length - size) // 2, 0, 0
    before = (size - length) // 2
    return 0, before, size - length - before


@overload
def crop_or_pad(array2d: np.ndarray, size: int, pad_value: float = 0.0) -> np.ndarray: ...
@overload
def crop_or_pad(array2d: MedImage, size: int, pad_value: float = 0.0) -> MedImage: ...
def crop_or_pad(
    array2d: np.ndarray | MedImage, size: int, pad_value: float = 0.0
) -> np.ndarray | MedImage:
    """Centre-crop and/or pad the first two axes to ``size x size``.

    Each of the two axes is handled on its own: longer axes are cropped (the extra pixel
    of an odd difference comes off the end), shorter ones padded with ``pad_value`` (the
    extra pixel goes at the end). Trailing axes (channels, time) are untouched.
    A MedImage keeps its geometry: the affine's origin moves to the new pixel (0, 0).

    Example
    -------
    >>> crop_or_pad(np.arange(6).reshape(2, 3), 2).tolist()
    [[0, 1], [3, 4]]
    >>> crop_or_pad(np.ones((1, 1)), 3).tolist()
    [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if int(size) < 1:
        raise InvalidInputError(f"size must be a positive integer, got {size}")
    size = int(size)
    if isinstance(array2d, MedImage):
        image = array2d
        result = crop_or_pad(image.array, size, pad_value)
        shift = np.zeros(4)
        for axis in range(2):
            start, before, _ = _centred_bounds(image.array.shape[axis], size)
            shift[axis] = start - before  # old index of new pixel 0
        affine = image.affine.copy()
        affine[:3, 3] = (image.affine @ np.append(shift[:3], 1.0))[:3]
        return image.replace(array=result, affine=affine)

    array = np.asarray(array2d)
    if array.ndim < 2:
        raise InvalidInputError(f"need at least 2 axes, got shape {array.shape}")
    return crop_or_pad_to(array, (size, size), pad_value)


def crop_or_pad_to(array: np.ndarray, shape: Sequence[int], pad_value: float = 0.0) -> np.ndarray:
    """Centre-crop and/or pad the leading ``len(shape)`` axes of ``array`` to ``shape``
    (2D slices or 3D volumes); trailing axes are untouched.

    Example
    -------
    >>> crop_or_pad_to(np.ones((2, 4, 3)), (4, 2, 3)).shape
    (4, 2, 3)
    """
    array = np.asarray(array)
    crops, pads = [], []
    for axis, target in enumerate(shape):
        start, before, after = _centred_bounds(array.shape[axis], int(target))
        crops.append(slice(start, start + min(int(target), array.shape[axis])))
        pads.append((before, after))
    array = array[tuple(crops)]
    pads += [(0, 0)] * (array.ndim - len(shape))
    if any(p != (0, 0) for p in pads):
        array = np.pad(array, pads, mode="constant", constant_values=pad_value)
    return array


def crop_or_pad_in_plane(stack: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Centre-crop and/or pad the *last two* axes (rows, columns) of ``stack`` to ``shape``
    (a slice stack ``(S, rows, cols)``, or a 2D image), as :func:`crop_or_pad_to` does.

    Example
    -------
    >>> crop_or_pad_in_plane(np.ones((3, 5, 4)), (4, 6)).shape
    (3, 4, 6)
    """
    stack = np.asarray(stack)
    if tuple(stack.shape[-2:]) == tuple(int(s) for s in shape):
        return stack
    moved = np.moveaxis(stack, (-2, -1), (0, 1))
    return np.moveaxis(crop_or_pad_to(moved, shape), (0, 1), (-2, -1))
