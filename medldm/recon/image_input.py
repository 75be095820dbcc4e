"""An image in (NIfTI, DICOM, TIFF or a :class:`~medldm.io.MedImage`): the ``read`` stage of
the simulated path, and the slab of it the solvers see.

The image is read as one image (trailing non-spatial axes of size 1 dropped), its voxel
axes brought to RAS+ (world geometry unchanged, so an axial slice has rows towards A and
columns towards R, the orientation the 2D priors were trained in) and checked finite.

Example
-------
>>> import numpy as np
>>> from medldm.io import MedImage
>>> volume = MedImage(np.ones((4, 5, 6), np.float32), np.diag([-1.0, 1.0, 1.0, 1.0]))
>>> read = read_image(volume, example="mni152_t1_2mm")
>>> float(read.canonical.affine[0, 0]), read.array.shape
(1.0, (4, 5, 6))
>>> start, stack = slab_stack(read.canonical, read.array, slices=2)
>>> start, stack.shape  # two central axial slices, (S, rows = y, cols = x)
(2, (2, 5, 4))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.problems.model_view import slice_to_model, volume_to_model_stack


@dataclass
class ImageInput:
    """The ``read`` stage's product: the input as read, in RAS+ voxel order, as float32."""

    source: MedImage  # the input as read (its own orientation)
    canonical: MedImage  # the input in RAS+ voxel order
    array: np.ndarray  # ``canonical``'s voxels, float32, all finite


def read_image(image_or_path: MedImage | str | Path | None, example: str) -> ImageInput:
    """Read ``image_or_path`` (``None``: the preset's ``example`` input) as one finite
    image in RAS+ voxel order."""
    if image_or_path is None:
        from medldm.recon.examples import example_input

        image_or_path = example_input(example)
    source = image_or_path if isinstance(image_or_path, MedImage) else None
    if source is None:
        from medldm.io import load

        source = load(image_or_path)
        source.metadata.setdefault("source_path", str(image_or_path))
    source = single_image(source)
    canonical = canonical_image(source)
    array = np.asarray(canonical.array, np.float32)
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(
            "the input image contains NaN or Inf values",
            path=source.metadata.get("source_path"),
            fix="fill or mask them before reconstructing",
        )
    return ImageInput(source, canonical, array)


def canonical_image(image: MedImage) -> MedImage:
    """The image with voxel axes permuted/flipped to RAS+ (world geometry unchanged)."""
    import nibabel as nib

    n = image.n_spatial
    affine3 = image.affine
    ornt = nib.orientations.io_orientation(affine3)[:n] if n == 3 else None
    if n != 3:
        return image
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return image
    array = nib.orientations.apply_orientation(image.array, ornt)
    shape = image.array.shape[:3]
    affine = affine3 @ nib.orientations.inv_ornt_aff(ornt, shape)
    return image.replace(array=np.ascontiguousarray(array), affine=affine)


def single_image(image: MedImage) -> MedImage:
    """Drop trailing non-spatial axes of size 1; refuse real multi-channel/time data."""
    extra = [
        (name, size)
        for name, size in zip(image.axes, image.array.shape, strict=True)
        if name not in ("x", "y", "z")
    ]
    big = [f"{name}={size}" for name, size in extra if size > 1]
    if big:
        raise InvalidInputError(
            f"the input has non-spatial axes {', '.join(big)}; one image is reconstructed "
            "at a time",
            path=image.metadata.get("source_path"),
            fix="select one channel / time point first (e.g. save it as its own file)",
        )
    n = image.n_spatial
    array = image.array.reshape(image.array.shape[:n])
    return image.replace(array=array, axes=image.axes[:n])


def slab_bounds(n_total: int, slices: Any) -> tuple[int, int]:
    """``(start, stop)`` of the central ``slices`` of ``n_total`` (``"all"``/``"volume"``:
    every slice)."""
    if slices in (None, "all", "volume"):
        return 0, n_total
    count = int(slices)
    if count < 1:
        raise InvalidInputError(f"slices must be >= 1, 'all' or 'volume', got {slices!r}")
    count = min(count, n_total)
    start = (n_total - count) // 2
    return start, start + count


def slab_stack(canonical: MedImage, array: np.ndarray, slices: Any) -> tuple[int, np.ndarray]:
    """``(first slice, stack)``: the central ``slices`` axial slices of a volume (a 2D image:
    itself) as a model-view stack ``(S, rows = y, cols = x)``, in the input's units."""
    if canonical.n_spatial == 3:
        start, stop = slab_bounds(array.shape[2], slices)
        return start, volume_to_model_stack(array[:, :, start:stop])
    return 0, slice_to_model(array)[None]
