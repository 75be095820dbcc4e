"""Turning images and volumes into benchmark cases: normalise, slice, orient, pad or crop.

The steps, in order, for one :class:`~medldm.io.image.MedImage`:

1. Non-spatial axes (channels ``c``, time points ``t``) are split: each channel or time
   point is its own case (``case_id`` gets ``/c1`` or ``/t3``).
2. The intensity normaliser is fitted to the whole image or volume (so a volume's slices
   share one scale) and applied, clipped to [0, 1].
3. Volumes: with ``slices=N`` (or ``"all"``) ``N`` slices along ``axis`` become 2D cases
   (``/slice058``: index along the volume's array axis); otherwise the volume stays 3D,
   one stack ``(depth, rows, columns)`` of its slices along ``axis`` in the model view
   (:func:`medldm.problems.model_view.model_stack`; axial: ``(z, y, x)`` of the RAS+
   volume, z growing towards S, whatever the storage order), and its metadata's
   ``extent`` lists the stack indices of its foreground extent with each slice's
   ``position`` and ``third`` (``[]`` without one; what the benchmark scores slice by
   slice: :func:`medldm.problems.model_view.stack_extent`). Which slices is ``slice_sampling``'s
   choice (:func:`medldm.problems.model_view.sample_model_slices`): ``"central"`` (the
   ``N`` central ones) or ``"foreground"`` (``N`` evenly spaced over the normalised
   volume's foreground extent, inferior to superior; each case's metadata then holds its
   ``position`` in the extent, 0 inferior to 1 superior, and its ``third``). Either way
   a slice of a volume with a foreground extent records its ``slice_position`` there (the
   same number, clipped to [0, 1]; what a slice-conditioned prior is told).
4. Orientation: the model view of :mod:`medldm.problems.model_view`, the one the priors
   were trained in: 2D arrays become ``(rows, columns)`` = ``(y, x)``; slices of volumes
   are first reoriented to RAS+ (x towards R, y towards A, or S for coronal and sagittal),
   so rows grow towards A. Such cases carry ``display_origin="lower"`` in their metadata
   (figures then show anterior at the top).
5. ``size``: the in-plane axes are centre-cropped or zero-padded to ``size x size``.

Ground truths with NaN or inf values are refused (a metric against them means nothing).

Example
-------
>>> import numpy as np
>>> from medldm.data.normalize import PercentileNormalizer
>>> cases = array_cases(np.arange(12.0).reshape(3, 4), dataset="demo", case_id="a",
...                     normalizer=PercentileNormalizer(0, 100), size=4)
>>> cases[0].image.shape, float(cases[0].image.max())
((4, 4), 1.0)
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from medldm.bench.cases.case import Case
from medldm.data.normalize import Normalizer
from medldm.data.slices import crop_or_pad_in_plane
from medldm.errors import InvalidInputError
from medldm.io.image import MedImage
from medldm.problems.model_view import (
    display_origin,
    fit_intensity,
    model_stack,
    sample_model_slices,
    slice_positions,
    slice_to_model,
    stack_extent,
)


def _positions_or_none(volume: MedImage, axis: str | int) -> np.ndarray | None:
    """Every slice's position in the volume's foreground extent, or None without one."""
    try:
        return slice_positions(volume, axis)
    except InvalidInputError:
        return None


def _check_finite(array: np.ndarray, source: str) -> None:
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(
            f"the image has {int(np.size(array) - np.isfinite(array).sum())} NaN/inf pixels; "
            "it cannot serve as a ground truth",
            path=source or None,
            fix="clean the image or remove it from the benchmark folder",
        )


def _resize_in_plane(array: np.ndarray, size: int | None) -> np.ndarray:
    """Centre crop/pad the last two axes (rows, columns) to ``size x size``."""
    return array if size is None else crop_or_pad_in_plane(array, (int(size), int(size)))


def array_cases(
    array: np.ndarray,
    *,
    dataset: str,
    case_id: str,
    normalizer: Normalizer,
    size: int | None = None,
    unit: str = "unknown",
    source: str = "",
    metadata: dict[str, Any] | None = None,
) -> list[Case]:
    """One case from a 2D array already in display order ``(rows, columns)``."""
    array = np.asarray(array)
    if array.ndim != 2:
        raise InvalidInputError(
            f"expected a 2D image, got shape {array.shape}", path=source or None
        )
    values = array.astype(np.float32, copy=False)
    _check_finite(values, source)
    normalization = fit_intensity(normalizer, values, unit=unit)
    image = np.asarray(normalization.forward(values), dtype=np.float32)
    image = np.ascontiguousarray(_resize_in_plane(image, size), dtype=np.float32)
    return [Case(dataset, case_id, image, normalization, source, dict(metadata or {}))]


def _split_non_spatial(image: MedImage) -> list[tuple[str, MedImage]]:
    """``[(suffix, image)]`` with one entry per channel/time point (``[("", image)]``)."""
    n_spatial = image.n_spatial
    extra_axes = image.axes[n_spatial:]
    if not extra_axes:
        return [("", image)]
    parts = []
    ranges = [range(image.array.shape[n_spatial + i]) for i in range(len(extra_axes))]
    for index in itertools.product(*ranges):
        pixels = image.array[(Ellipsis, *index)] if index else image.array
        suffix = "".join(f"/{name}{i}" for name, i in zip(extra_axes, index, strict=True))
        parts.append((suffix, image.replace(array=pixels, axes=image.axes[:n_spatial])))
    return parts


def image_cases(
    image: MedImage,
    *,
    dataset: str,
    case_id: str,
    normalizer: Normalizer,
    slices: int | str | None = None,
    axis: str | int = "axial",
    size: int | None = None,
    source: str = "",
    slice_sampling: str = "central",
) -> list[Case]:
    """Cases from one image or volume (steps in the module docstring).

    Parameters
    ----------
    image:
        A 2D image or 3D volume, optionally with channel/time axes.
    dataset, case_id:
        Labels of the cases; slices and channels add suffixes to ``case_id``.
    normalizer:
        Fitted per image/volume (e.g. a card's percentile rule).
    slices:
        Number of slices taken from a volume, or ``"all"`` (``None``: keep volumes 3D).
    axis:
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or an array axis 0-2.
    size:
        In-plane size in pixels after centre crop/pad (``None``: unchanged).
    slice_sampling:
        ``"central"`` or ``"foreground"`` (see step 3).
    """
    cases = []
    for suffix, part in _split_non_spatial(image):
        values = part.array.astype(np.float32, copy=False)
        _check_finite(values, source)
        normalization = fit_intensity(normalizer, values, unit=part.unit)
        normalised = part.replace(array=np.asarray(normalization.forward(values), np.float32))
        label = f"{case_id}{suffix}"
        if part.n_spatial == 3 and slices:
            plane = axis if isinstance(axis, str) else f"array axis {axis}"
            count = None if slices == "all" else int(slices)
            where = _positions_or_none(normalised, axis)
            for item in sample_model_slices(normalised, count, axis, slice_sampling):
                metadata: dict[str, Any] = {
                    "slice_index": item.index,
                    "plane": plane,
                    "display_origin": display_origin(from_volume=True),
                }
                if where is not None:
                    metadata["slice_position"] = float(where[item.index])
                if item.third is not None:
                    metadata.update(position=item.position, third=item.third)
                cases.append(
                    Case(
                        dataset,
                        f"{label}/slice{item.index:03d}",
                        np.ascontiguousarray(_resize_in_plane(item.pixels, size), np.float32),
                        normalization,
                        source,
                        metadata,
                    )
                )
            continue
        if part.n_spatial == 3:
            pixels = model_stack(normalised, axis)
            metadata = {
                "plane": axis if isinstance(axis, str) else f"array axis {axis}",
                "display_origin": display_origin(from_volume=True),
                "extent": _extent_or_empty(normalised, axis),
            }
        else:
            pixels, metadata = slice_to_model(normalised.array), {}
        cases.append(
            Case(
                dataset,
                label,
                np.ascontiguousarray(_resize_in_plane(pixels, size), np.float32),
                normalization,
                source,
                metadata,
            )
        )
    return cases


def _extent_or_empty(volume: MedImage, axis: str | int) -> list[dict[str, Any]]:
    """``[{"slice": stack index, "position": 0..1, "third": ...}]`` of the volume's
    foreground extent (found before any in-plane crop or pad, as foreground sampling finds
    it), inferior first; ``[]`` without one."""
    try:
        extent = stack_extent(volume, axis)
    except InvalidInputError:
        return []
    return [
        {"slice": item.index, "position": float(item.position), "third": str(item.third)}
        for item in extent
    ]
