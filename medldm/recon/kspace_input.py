"""Measured MRI k-space in: the ``read`` stage of the measured path (:func:`read_kspace`).

One slice of k-space is read with :func:`medldm.io.raw_mri.read_raw_kspace` (``.npy``,
BART ``.cfl``, Siemens twix ``.dat``, ISMRMRD or fastMRI ``.h5``); its sampling mask is
``mask=`` when given, else a retrospective ``acceleration=`` of fully sampled data (the
project's fastMRI random-line mask along the phase-encode axis, seeded), else the file's
own mask, else the non-zero locations; the reference for the scores is ``reference=``, else
the fully sampled input itself when the mask undersamples it, else none.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> np.save(folder / "full.npy", np.ones((2, 16, 16), np.complex64))
>>> read = read_kspace(folder / "full.npy", None, acceleration=4, seed=0)
>>> read.raw.n_coils, read.reference_info["kind"], bool(read.mask.mean() < 0.5)
(2, 'retrospective', True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.io.raw_mri import RawKSpace, read_raw_kspace, sampling_mask_from_zeros
from medldm.physics.mri import ifftnc, rss

#: Where the intensity units of raw k-space come from.
RAW_UNIT = "arbitrary MR units (raw k-space)"


@dataclass
class KSpaceInput:
    """``read``: one slice of k-space, its sampling and its reference (made here, beside
    its reader; the later stages' records are in :mod:`medldm.recon.kspace_records`)."""

    raw: RawKSpace
    mask: np.ndarray  # (rows, cols), True = sampled
    mask_source: str  # where the mask came from, in words
    measured: np.ndarray  # ``raw.kspace * mask``, complex64 (coils, rows, cols)
    reference_picture: np.ndarray | None  # in the k-space's layout and units
    reference_info: dict[str, str] | None  # its kind and description, for metrics.json
    reference_kspace: np.ndarray | None  # fully sampled, when the reference has one


def read_kspace(
    path: Any,
    mask_path: Any,
    *,
    reference: Any = None,
    acceleration: float | None = None,
    kspace_slice: int | None = None,
    seed: int = 0,
) -> KSpaceInput:
    """Read one slice of k-space with its sampling mask and reference (module text)."""
    raw = read_raw_kspace(path, kspace_slice)
    mask, mask_source = sampling_mask(raw, mask_path, acceleration, seed)
    picture, info, reference_kspace = reference_for(raw, mask, reference, kspace_slice)
    measured = (raw.kspace * mask[None]).astype(np.complex64)
    return KSpaceInput(raw, mask, mask_source, measured, picture, info, reference_kspace)


def sampling_mask(
    raw: RawKSpace, mask_path: Any, acceleration: float | None, seed: int
) -> tuple[np.ndarray, str]:
    """The sampling mask and where it came from (``mask=``, a retrospective
    ``acceleration=``, the file's own mask, or the non-zero k-space locations)."""
    file_mask = sampling_mask_from_zeros(raw.kspace)
    if mask_path is not None:
        mask, source = read_mask(Path(mask_path), raw.shape), f"mask= ({Path(mask_path).name})"
    elif acceleration is not None:
        if not file_mask.all():
            raise InvalidInputError(
                f"acceleration= undersamples fully sampled k-space, but this file holds "
                f"{100 * file_mask.mean():.1f} % of its k-space",
                path=raw.path,
                fix="drop acceleration= (the file's own sampling is used)",
            )
        mask = retrospective_mask(raw.shape, acceleration, raw.phase_encode_axis, seed)
        axis = {0: "rows", 1: "columns"}.get(raw.phase_encode_axis, "columns (axis unknown)")
        source = (
            f"retrospective fastMRI random lines along the {axis}, {acceleration:g}x, "
            f"centre fraction {0.32 / float(acceleration):.3g}, seed {seed}"
        )
    elif raw.mask is not None:
        mask, source = raw.mask, "the file's own mask"
    else:
        mask, source = file_mask, "the non-zero k-space locations"
    if not mask.any():
        raise InvalidInputError("the sampling mask samples nothing", path=mask_path or raw.path)
    return mask, source


def reference_for(
    raw: RawKSpace, mask: np.ndarray, reference: Any, kspace_slice: int | None
) -> tuple[np.ndarray | None, dict[str, str] | None, np.ndarray | None]:
    """The reference picture, its description and its k-space: ``reference=``, else the
    fully sampled input itself when the mask undersamples it, else none."""
    if reference is not None:
        picture, text, kspace = reference_image(Path(reference), raw.shape, kspace_slice)
        return picture, {"kind": "file", "description": text}, kspace
    if sampling_mask_from_zeros(raw.kspace).all() and not mask.all():
        info = {
            "kind": "retrospective",
            "description": "root sum of squares of the fully sampled input's coil images",
        }
        return root_sum_of_squares(raw.kspace), info, raw.kspace
    return None, None, None


def retrospective_mask(
    shape: tuple[int, int], acceleration: float, phase_encode_axis: int | None, seed: int
) -> np.ndarray:
    """A fastMRI random-line mask (:class:`~medldm.physics.masks.RandomLineMask`, centre
    fraction ``0.32 / acceleration``) of ``shape``, whole lines along the phase-encode axis
    (columns when unknown), drawn from ``torch.Generator().manual_seed(seed)``."""
    from medldm.physics.masks import RandomLineMask

    generator = torch.Generator().manual_seed(int(seed))
    make_mask = RandomLineMask(float(acceleration))
    if phase_encode_axis == 0:  # lines are rows: draw over (cols, rows), transpose
        return make_mask(shape[::-1], generator=generator).numpy().T.copy()
    return make_mask(shape, generator=generator).numpy()


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise InvalidInputError("mask file not found", path=path, fix="give mask=/path/mask.npy")
    try:
        mask = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InvalidInputError(
            f"cannot read the mask: {error}", path=path, fix="save it with numpy.save"
        ) from error
    mask = np.asarray(mask) != 0
    rows, cols = shape
    if mask.shape == (cols,):
        mask = np.broadcast_to(mask[None, :], shape)
    if mask.shape != shape:
        raise InvalidInputError(
            f"mask shape {mask.shape} fits neither ({cols},) nor ({rows}, {cols})",
            path=path,
            fix="give a mask over the k-space matrix (non-zero = sampled)",
        )
    return np.ascontiguousarray(mask)


def root_sum_of_squares(kspace: np.ndarray) -> np.ndarray:
    """Magnitude image ``(rows, cols)``: root sum of squares of the coil images
    ``ifft2c(kspace)`` (one coil: its magnitude), in the k-space's layout and units."""
    return rss(ifftnc(torch.from_numpy(np.asarray(kspace, np.complex64)), 2), dim=0).numpy()


def reference_image(
    path: Path, shape: tuple[int, int], slice_index: int | None
) -> tuple[np.ndarray, str, np.ndarray | None]:
    """``(image in the k-space's layout, description, its k-space or None)`` of a
    ``reference=`` file: a real ``.npy`` image of the k-space's matrix, or fully sampled
    k-space in any raw format."""
    if path.suffix.lower() == ".npy" and path.is_file():
        array = np.load(path, allow_pickle=False)
        if not np.iscomplexobj(array) and array.ndim == 2:
            if array.shape != shape:
                raise InvalidInputError(
                    f"reference image {array.shape} does not match the k-space {shape}",
                    path=path,
                    fix="give the reference on the k-space's matrix, in its layout",
                )
            return np.abs(array).astype(np.float32), f"the image in {path.name}", None
    raw = read_raw_kspace(path, slice_index)
    if raw.shape != shape:
        raise InvalidInputError(
            f"reference k-space {raw.shape} does not match the k-space {shape}",
            path=path,
            fix="give the fully sampled k-space of the same slice and matrix",
        )
    fraction = float(sampling_mask_from_zeros(raw.kspace).mean())
    if fraction < 1.0:
        raise InvalidInputError(
            f"the reference k-space is not fully sampled ({100 * fraction:.1f} % of it)",
            path=path,
            fix="give fully sampled k-space (or a reference image as a real .npy)",
        )
    return root_sum_of_squares(raw.kspace), f"root sum of squares of {path.name}", raw.kspace


def source_image(raw: RawKSpace) -> MedImage:
    """A geometry-only stand-in for the input: ``[x, y, 1]`` with the pixel spacing (x =
    columns, y = rows of the model view) and the slice thickness when the file has one."""
    rows, cols = raw.shape
    thickness = float(raw.metadata.get("slice_thickness_mm") or 1.0)
    affine = np.diag([raw.spacing_mm[1], raw.spacing_mm[0], thickness, 1.0])
    metadata = {
        "format": "measured-kspace",
        "kspace_format": raw.format,
        "source_path": str(raw.path),
        "pixel_spacing_from_file": raw.spacing_from_file,
    }
    return MedImage(
        np.zeros((cols, rows, 1), np.float32),
        affine,
        axes=("x", "y", "z"),
        modality="MR",
        unit=RAW_UNIT,
        metadata=metadata,
    )
