"""Training images for the LDM: 2D slices, 2D patches or 3D volumes in ``[0, 1]``.

Sources (``kind``):

* ``ixi_slices``: axial (or coronal/sagittal) slices of the IXI T1 volumes of a split,
  each volume scaled by the card's percentile rule, padded/cropped to ``size``, keeping
  only slices with foreground (``min_foreground`` of the pixels above 0.1); with
  ``slice_positions``, the slices of each volume's foreground extent instead, each with its
  position in it (the model view's rule, :mod:`medldm.problems.model_view`: 0 inferior,
  1 superior), for a slice-conditioned diffusion stage; with ``neighbour_slices`` too, each
  slice also carries the slices below and above it (:func:`extent_neighbours`), for a
  stack-aware one;
* ``ixi_volumes``: whole IXI volumes downsampled by ``downsample`` (2 -> 4 mm voxels) and
  padded/cropped to ``size`` (three numbers);
* ``native_brain_slices``: axial slices of the clinical ``brain_mri_native`` series of a
  split at the scanner's own matrix and spacing (``contrasts``: any of T1W, T2W, FLAIR),
  from which :class:`ImageDataset` cuts random ``patch`` x ``patch`` crops;
* ``mednist``: the MedNIST classes of a split (8-bit, ``/255``);
* ``microscopy``: the microscopy images of a split (per-image percentile scaling), from
  which :class:`ImageDataset` cuts random ``patch`` x ``patch`` crops;
* ``folder``: every NIfTI/DICOM/TIFF/.npz image of a folder (percentile scaling);
* ``arrays``: a pack written by :func:`save_packed_arrays` (``train`` and ``validation``
  images already in [0, 1], stored as 8-bit), for a machine without the data root, such as
  a bare GPU machine (``benchmarks/gpu_pack.py``).

Augmentation uses MONAI transforms (small random affine, optional left-right flip).

Example
-------
>>> import numpy as np
>>> ds = ImageDataset(np.random.rand(10, 32, 32).astype("float32"), augment=False)
>>> ds.get(3, np.random.default_rng(0)).shape
(1, 32, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medldm.data.cards import load_card
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.problems.model_view import (
    FOREGROUND_LEVEL,
    MIN_FOREGROUND_FRACTION,
    fit_intensity,
    model_slices,
    sample_model_slices,
    slice_to_model,
)


def _pad_or_crop(array: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Centred zero pad / crop of every axis to ``size``, as float32."""
    from medldm.data.slices import crop_or_pad_to

    return crop_or_pad_to(np.asarray(array, np.float32), size).astype(np.float32, copy=False)


def ixi_slices(
    split: str,
    size: int = 128,
    axis: str = "axial",
    min_foreground: float = MIN_FOREGROUND_FRACTION,
    root: str | Path | None = None,
) -> tuple[np.ndarray, list[str]]:
    """All foreground slices of the IXI volumes of ``split``: ``(N, size, size)`` in [0, 1],
    and the subject id of each slice."""
    from medldm.data.datasets import iter_images

    normalizer = load_card("ixi_t1").normalizer()
    slices, subjects = [], []
    for volume in iter_images("ixi_t1", split, root=root):
        volume = volume.with_array(fit_intensity(normalizer, volume.array).forward(volume.array))
        for _, pixels in model_slices(volume, plane=axis):
            array = _pad_or_crop(np.asarray(pixels, np.float32), (size, size))
            if (array > FOREGROUND_LEVEL).mean() >= min_foreground:
                slices.append(array)
                subjects.append(volume.metadata.get("subject", ""))
    if not slices:
        raise DataNotFoundError(f"no IXI slices found for split {split!r}")
    return np.stack(slices).astype(np.float32), subjects


def ixi_extent_slices(
    split: str, size: int = 128, axis: str = "axial", root: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every slice of the foreground extent of each IXI volume of ``split`` (the model
    view's rule): ``(N, size, size)`` in [0, 1], each slice's position in its volume's
    extent (0 at the inferior end, 1 at the superior end) and its subject id."""
    from medldm.data.datasets import iter_images

    normalizer = load_card("ixi_t1").normalizer()
    slices, positions, subjects = [], [], []
    for volume in iter_images("ixi_t1", split, root=root):
        volume = volume.with_array(fit_intensity(normalizer, volume.array).forward(volume.array))
        for item in sample_model_slices(volume, None, plane=axis, sampling="foreground"):
            slices.append(_pad_or_crop(np.asarray(item.pixels, np.float32), (size, size)))
            positions.append(float(item.position))
            subjects.append(volume.metadata.get("subject", ""))
    if not slices:
        raise DataNotFoundError(f"no IXI slices found for split {split!r}")
    return np.stack(slices).astype(np.float32), np.asarray(positions, np.float32), subjects


def extent_neighbours(subjects: Sequence[str], positions: Sequence[float]) -> np.ndarray:
    """``(N, 2)`` indices of the slice below and above each extent slice of
    :func:`ixi_extent_slices` (consecutive slices of one subject, ordered by position), the
    slice itself at its extent's ends.

    >>> extent_neighbours(["a", "a", "a", "b"], [0.0, 0.5, 1.0, 0.5]).tolist()
    [[0, 1], [0, 2], [1, 2], [3, 3]]
    """
    index = np.arange(len(subjects))
    same_below = np.r_[False, np.asarray(subjects[1:]) == np.asarray(subjects[:-1])]
    same_above = np.r_[same_below[1:], False]
    rising = np.diff(np.asarray(positions, np.float64))[same_below[1:]]
    if np.any(rising <= 0):
        raise InvalidInputError("extent slices are not ordered inferior to superior")
    below = np.where(same_below, index - 1, index)
    above = np.where(same_above, index + 1, index)
    return np.stack([below, above], axis=1)


def native_brain_slices(
    split: str,
    contrasts: Sequence[str] = ("T1W", "T2W", "FLAIR"),
    min_foreground: float = MIN_FOREGROUND_FRACTION,
    root: str | Path | None = None,
) -> tuple[list[np.ndarray], list[str]]:
    """The axial slices of the ``brain_mri_native`` series of ``split`` at the scanner's
    own matrix and spacing (no resampling), each series scaled by the card's percentile
    rule: a list of 2D arrays in [0, 1] (sizes differ between series) and, per slice,
    ``"<patient>/<study>/<contrast>"``. Slices with less than ``min_foreground`` of their
    pixels above 0.1 are left out."""
    from medldm.data.datasets import iter_images

    normalizer = load_card("brain_mri_native").normalizer()
    slices, names = [], []
    for volume in iter_images("brain_mri_native", split, root=root):
        contrast = volume.metadata["contrast"]
        if contrast not in contrasts:
            continue
        scaled = fit_intensity(normalizer, volume.array).forward(volume.array)
        volume = volume.with_array(np.clip(scaled, 0.0, 1.0).astype(np.float32))
        name = f"{volume.metadata['subject']}/{volume.metadata['study']}/{contrast}"
        for _, pixels in model_slices(volume, plane="axial"):
            array = np.ascontiguousarray(pixels, dtype=np.float32)
            if (array > FOREGROUND_LEVEL).mean() >= min_foreground:
                slices.append(array)
                names.append(name)
    if not slices:
        raise DataNotFoundError(f"no brain_mri_native slices found for split {split!r}")
    return slices, names


def ixi_volumes(
    split: str,
    size: Sequence[int] = (64, 64, 48),
    downsample: int = 2,
    root: str | Path | None = None,
) -> tuple[np.ndarray, list[str]]:
    """IXI volumes of ``split`` averaged over ``downsample``^3 blocks (2 mm -> 4 mm) and
    padded/cropped to ``size``: ``(N, *size)`` in [0, 1]."""
    import torch.nn.functional as F

    from medldm.data.datasets import iter_images

    normalizer = load_card("ixi_t1").normalizer()
    volumes, subjects = [], []
    for volume in iter_images("ixi_t1", split, root=root):
        array = fit_intensity(normalizer, volume.array).forward(volume.array).astype(np.float32)
        tensor = torch.from_numpy(array)[None, None]
        if downsample > 1:
            tensor = F.avg_pool3d(tensor, downsample, ceil_mode=True)
        volumes.append(_pad_or_crop(tensor[0, 0].numpy(), size))
        subjects.append(volume.metadata.get("subject", ""))
    return np.stack(volumes), subjects


def mednist_images(
    split: str, classes: Sequence[str] = ("HeadCT", "ChestCT", "AbdomenCT"), root=None
) -> tuple[np.ndarray, list[str]]:
    """MedNIST images of ``split`` for ``classes`` as ``(N, 64, 64)`` floats in [0, 1]."""
    from medldm.data.datasets import mednist_block

    blocks, labels = [], []
    for name in classes:
        block = mednist_block(name, split, root=root)
        blocks.append(block.astype(np.float32) / 255.0)
        labels += [name] * len(block)
    return np.concatenate(blocks), labels


def microscopy_images(
    split: str, root: str | Path | None = None
) -> tuple[list[np.ndarray], list[str]]:
    """The 2D planes of the microscopy images of ``split``, each scaled to [0, 1] by the
    card's per-image percentile rule (3D stacks contribute every plane)."""
    from medldm.data.datasets import iter_images

    normalizer = load_card("microscopy").normalizer()
    images, names = [], []
    for image in iter_images("microscopy", split, root=root):
        array = np.asarray(image.array, np.float32)
        if "c" in image.axes:
            array = np.moveaxis(array, image.axes.index("c"), -1).reshape(*array.shape[:2], -1)
        planes = [array] if array.ndim == 2 else [array[..., k] for k in range(array.shape[2])]
        for plane in planes:
            scaled = np.clip(fit_intensity(normalizer, plane).forward(plane), 0, 1)
            images.append(slice_to_model(scaled.astype(np.float32)))
            names.append(str(image.metadata.get("source", "")))
    return images, names


def folder_images(folder: str | Path, size: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Every image in ``folder`` (any format medldm reads; .npz with ``images``), scaled to
    [0, 1] by its 0.5-99.5 percentiles and padded/cropped to ``size``. A volume gives
    every axial slice, laid out in the model view (:mod:`medldm.problems.model_view`)."""
    from medldm.data.normalize import PercentileNormalizer
    from medldm.io import load

    folder = Path(folder)
    if not folder.is_dir():
        raise DataNotFoundError("training folder does not exist", path=folder)
    normalizer = PercentileNormalizer(0.5, 99.5)
    images, names = [], []
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if path.suffix == ".npz":  # "images": (N, *spatial), 2D or 3D
            with np.load(path) as data:
                arrays = list(data["images"].astype(np.float32))
        else:
            image = load(path)
            if image.n_spatial == 3:  # every axial slice, RAS-reoriented
                arrays = [np.asarray(p, np.float32) for _, p in model_slices(image)]
            else:
                arrays = [slice_to_model(np.asarray(image.array, np.float32))]
        for array in arrays:
            scaled = np.clip(fit_intensity(normalizer, array).forward(array), 0, 1)
            images.append(_pad_or_crop(scaled, size))
            names.append(path.name)
    if not images:
        raise DataNotFoundError("no images in training folder", path=folder)
    return np.stack(images), names


def save_packed_arrays(
    path: str | Path,
    train: np.ndarray,
    validation: np.ndarray,
    flip_axis: int | None,
    description: dict,
) -> Path:
    """Write training images in [0, 1] as an 8-bit ``.npz`` pack (quantisation step 1/255,
    far below the autoencoders' errors) with the augmentation's flip axis and a description."""
    import json

    from medldm.utils.files import atomic_output

    def quantise(images: np.ndarray) -> np.ndarray:
        return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)

    with atomic_output(Path(path), overwrite=True) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            train=quantise(train),
            validation=quantise(validation),
            flip_axis=np.array(-1 if flip_axis is None else flip_axis),
            description=np.array(json.dumps(description)),
        )
    return Path(path)


def packed_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Read a pack of :func:`save_packed_arrays`: train, validation (float32 in [0, 1]) and
    the flip axis."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError("training pack not found", path=path)
    with np.load(path, allow_pickle=False) as pack:
        train = pack["train"].astype(np.float32) / 255.0
        validation = pack["validation"].astype(np.float32) / 255.0
        flip = int(pack["flip_axis"])
    return train, validation, None if flip < 0 else flip


@dataclass
class TrainingData:
    """Training and validation arrays plus where they came from."""

    train: ImageDataset
    validation: ImageDataset
    description: dict


class ImageDataset:
    """Images (or patches of larger images) with optional MONAI augmentation.

    ``images`` is an array ``(N, *spatial)`` or a list of 2D arrays of any size (then
    ``patch`` gives the crop size). :meth:`get` takes the index and a NumPy generator so
    augmentation is reproducible and resumable. With ``positions`` (2D), each item also
    carries the two position maps of its pixels in the whole image
    (:func:`medldm.models.positions.image_coordinates`), cropped, flipped and transformed
    with it: channels ``(image, row, column)``. With ``slice_positions`` (one number per
    image, in ``[0, 1]``), each item carries one more channel after those, constant at its
    slice's position (added after augmentation, which neither moves nor pads it). With
    ``neighbours`` (``(N, 2)`` indices of the images below and above each one), the two
    neighbour images come right after the image, moved with it: channels
    ``(image, below, above[, slice position])``. With ``pad=False`` a crop of an image
    smaller than ``patch`` keeps the image's size instead of being zero-padded to ``patch``
    (whole slices at their own matrix; a batch then needs images of one size, e.g.
    ``batch_size: 1``), rounded down to a multiple of ``crop_multiple`` pixels (what the
    networks' downsampling needs, e.g. 16 for a factor-4 autoencoder under a 3-level UNet).
    """

    def __init__(
        self,
        images: np.ndarray | list[np.ndarray],
        *,
        patch: int | None = None,
        augment: bool = True,
        flip_axis: int | None = None,
        positions: bool = False,
        slice_positions: Sequence[float] | np.ndarray | None = None,
        neighbours: np.ndarray | None = None,
        pad: bool = True,
        crop_multiple: int = 1,
    ):
        self.images = images
        self.pad = bool(pad)
        self.crop_multiple = int(crop_multiple)
        self.neighbours = None if neighbours is None else np.asarray(neighbours, np.int64)
        self.image_channels = 1 if neighbours is None else 3
        self.patch = patch
        self.augment = augment
        self.flip_axis = flip_axis
        self.positions = bool(positions)
        self.slice_positions = (
            None if slice_positions is None else np.asarray(slice_positions, np.float32)
        )
        if len(images) == 0:
            raise InvalidInputError("no training images", fix="check the data source and split")
        if self.slice_positions is not None and len(self.slice_positions) != len(images):
            raise InvalidInputError(
                f"{len(self.slice_positions)} slice positions for {len(images)} images",
                fix="give one position per image",
            )
        if self.neighbours is not None and (positions or self.neighbours.shape != (len(images), 2)):
            raise InvalidInputError(
                "neighbours are one (below, above) index pair per image, without positions",
                fix="give an (N, 2) index array and positions=false",
            )
        first = images[0]
        self.spatial_dims = first.ndim
        self.shape = (patch,) * first.ndim if patch else tuple(first.shape)
        if self.positions and self.spatial_dims != 2:
            raise InvalidInputError("position channels are for 2D images", fix="positions=false")

    def __len__(self) -> int:
        return len(self.images)

    def get(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Image ``index`` (a random patch of it if ``patch``), augmented, ``(1, *spatial)``
        (``(3, H, W)`` with ``positions`` or ``neighbours``)."""
        array = np.asarray(self.images[index], np.float32)[None]
        if self.neighbours is not None:
            below, above = (np.asarray(self.images[i], np.float32) for i in self.neighbours[index])
            array = np.concatenate([array, below[None], above[None]])
        if self.positions:
            from medldm.models.positions import image_coordinates

            array = np.concatenate([array, image_coordinates(array.shape[1:]).numpy()])
        if self.patch:
            sizes = [self._crop_size(s) for s in array.shape[1:]]
            starts = [
                int(rng.integers(0, s - c + 1)) for s, c in zip(array.shape[1:], sizes, strict=True)
            ]
            array = array[
                (slice(None), *(slice(s, s + c) for s, c in zip(starts, sizes, strict=True)))
            ]
            if self.pad:
                array = np.stack([_pad_or_crop(channel, self.shape) for channel in array])
        if self.augment:
            array = self._augment(array, rng)
        if self.slice_positions is not None:
            level = np.full((1, *array.shape[1:]), self.slice_positions[index], np.float32)
            array = np.concatenate([array, level])
        return array.astype(np.float32)

    def _crop_size(self, size: int) -> int:
        """The crop's size along an axis of ``size`` pixels: ``patch`` (padded later), or
        without padding the image's size up to ``patch``, to a multiple of ``crop_multiple``."""
        if self.pad:
            return min(size, self.patch)
        return max(min(size, self.patch) // self.crop_multiple * self.crop_multiple, 1)

    def _augment(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Flip and small affine transform of ``(channels, *spatial)``; the image channel
        (and the neighbour images) clipped to [0, 1]. A flipped position map is negated
        along the flip, so it still increases along its axis: a flipped crop of one side of
        a (nearly symmetric) head is shown as a crop of the other side."""
        from monai.transforms import Affine

        if self.flip_axis is not None and rng.random() < 0.5:
            array = np.flip(array, axis=1 + self.flip_axis).copy()
            if self.positions:
                array[1 + self.flip_axis] *= -1.0
        if rng.random() < 0.5:
            n = array.ndim - 1
            rotate = rng.uniform(-0.1, 0.1, size=1 if n == 2 else 3).tolist()
            scale = [float(rng.uniform(0.93, 1.07))] * n
            shift = rng.uniform(-0.03, 0.03, size=n) * np.array(array.shape[1:])
            affine = Affine(
                rotate_params=rotate,
                scale_params=scale,
                translate_params=shift.tolist(),
                padding_mode="zeros",
                image_only=True,
            )
            array = np.asarray(affine(torch.from_numpy(np.ascontiguousarray(array))))
        array[: self.image_channels] = np.clip(array[: self.image_channels], 0.0, 1.0)
        return array

    def batch(self, indices: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
        """Stacked images ``(len(indices), 1, *spatial)`` (``3`` channels with ``positions``,
        one more with ``slice_positions``)."""
        items = [self.get(int(i), rng) for i in indices]
        shapes = sorted({item.shape for item in items})
        if len(shapes) > 1:
            raise InvalidInputError(
                f"unpadded crops of different sizes cannot share a batch: {shapes}",
                fix="use batch_size: 1 with data.pad: false, or data.pad: true",
            )
        return torch.from_numpy(np.stack(items))


def build_training_data(
    kind: str,
    *,
    size: Sequence[int] | int = 128,
    patch: int | None = None,
    root: str | Path | None = None,
    folder: str | Path | None = None,
    path: str | Path | None = None,
    axis: str = "axial",
    downsample: int = 2,
    classes: Sequence[str] = ("HeadCT", "ChestCT", "AbdomenCT"),
    contrasts: Sequence[str] = ("T1W", "T2W", "FLAIR"),
    validation_fraction: float = 0.1,
    augment: bool = True,
    limit: int | None = None,
    positions: bool = False,
    slice_positions: bool = False,
    pad: bool = True,
    crop_multiple: int = 1,
    neighbour_slices: bool = False,
) -> TrainingData:
    """Training and validation sets for ``kind`` (see the module docstring), split by
    subject / block / image as the data cards say; ``positions`` adds the pixels' position
    maps in their whole image as channels (for a position-conditioned diffusion stage);
    ``slice_positions`` (``ixi_slices`` only) takes each volume's foreground extent and adds
    each slice's position in it as a channel (for a slice-conditioned diffusion stage), and
    ``neighbour_slices`` (with it) the slices below and above each one (a stack-aware one).
    ``pad=False`` leaves the training crops of images smaller than ``patch`` at their own
    size (to a multiple of ``crop_multiple``; :class:`ImageDataset`); the validation crops
    are always padded to one shape."""
    size_list = [size] if isinstance(size, int) else list(size)
    flip = None
    train_at = val_at = train_next = val_next = None
    if neighbour_slices and not slice_positions:
        raise InvalidInputError(
            "neighbour_slices needs slice_positions (the extent's contiguous slices)",
            fix="slice_positions=true",
        )
    if slice_positions and kind != "ixi_slices":
        raise InvalidInputError(
            f"slice_positions is for kind=ixi_slices, not {kind!r}", fix="slice_positions=false"
        )
    if kind == "ixi_slices" and slice_positions:
        train, train_at, train_ids = ixi_extent_slices("train", size_list[0], axis, root=root)
        val, val_at, val_ids = ixi_extent_slices("validation", size_list[0], axis, root=root)
        if neighbour_slices:
            train_next = extent_neighbours(train_ids, train_at)
            val_next = extent_neighbours(val_ids, val_at)
        flip = 1
    elif kind == "ixi_slices":
        train, _ = ixi_slices("train", size_list[0], axis, root=root)
        val, _ = ixi_slices("validation", size_list[0], axis, root=root)
        flip = 1  # left-right in the upright (rows=A-P, cols=R-L) axial slice
    elif kind == "ixi_volumes":
        shape = size_list if len(size_list) == 3 else size_list * 3
        train, _ = ixi_volumes("train", shape, downsample, root=root)
        val, _ = ixi_volumes("validation", shape, downsample, root=root)
        flip = 0
    elif kind == "native_brain_slices":
        train, _ = native_brain_slices("train", contrasts, root=root)
        val, _ = native_brain_slices("validation", contrasts, root=root)
        patch = patch or size_list[0]
        flip = 1
    elif kind == "mednist":
        train, _ = mednist_images("train", classes, root=root)
        val, _ = mednist_images("validation", classes, root=root)
    elif kind == "microscopy":
        train, _ = microscopy_images("train", root=root)
        val, _ = microscopy_images("validation", root=root)
        patch = patch or size_list[0]
    elif kind == "arrays":
        if path is None:
            raise InvalidInputError("kind=arrays needs path=/path/to/pack.npz")
        train, val, flip = packed_arrays(path)
    elif kind == "folder":
        if folder is None:
            raise InvalidInputError("kind=folder needs folder=/path/to/images")
        images, _ = folder_images(folder, size_list if len(size_list) > 1 else size_list * 2)
        n_val = max(1, int(len(images) * validation_fraction))
        train, val = images[:-n_val], images[-n_val:]  # contiguous blocks, not shuffled
    else:
        raise InvalidInputError(
            f"unknown training data kind {kind!r}",
            fix="use ixi_slices, ixi_volumes, native_brain_slices, mednist, microscopy, folder "
            "or arrays",
        )
    if limit:
        n_val = max(1, limit // 4)
        train, val = train[:limit], val[:n_val]
        train_at = None if train_at is None else train_at[:limit]
        val_at = None if val_at is None else val_at[:n_val]
        train_next = None if train_next is None else np.minimum(train_next[:limit], limit - 1)
        val_next = None if val_next is None else np.minimum(val_next[:n_val], n_val - 1)
    return TrainingData(
        train=ImageDataset(
            train,
            patch=patch,
            pad=pad,
            crop_multiple=crop_multiple,
            augment=augment,
            flip_axis=flip,
            positions=positions,
            slice_positions=train_at,
            neighbours=train_next,
        ),
        validation=ImageDataset(
            val,
            patch=patch,
            augment=False,
            positions=positions,
            slice_positions=val_at,
            neighbours=val_next,
        ),
        description={
            "kind": kind,
            "n_train": len(train),
            "n_validation": len(val),
            **({"positions": True} if positions else {}),
            **({"slice_positions": True} if slice_positions else {}),
            **({"neighbour_slices": True} if neighbour_slices else {}),
        },
    )
