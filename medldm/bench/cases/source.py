"""Datasets as benchmark cases: a named data card, or any folder of images.

:class:`CaseSource` is what a ``configs/data/*.yaml`` preset instantiates. Exactly one of
``card`` (a named dataset, read from the data root) and ``root`` (a folder of
NIfTI/DICOM/TIFF/``.npz`` files) is set. Both honour the same options:

* ``slices``: N slices of each volume, or ``"all"`` (``axis``: ``"axial"`` by default,
  ``"coronal"``, ``"sagittal"`` or an array axis 0-2); ``None`` keeps volumes 3D;
* ``slice_sampling``: which slices: ``"central"`` (default: the N central ones) or
  ``"foreground"`` (N evenly spaced over each volume's foreground extent, every slice
  with at least 15 % of its pixels above 0.1 of the normalised range, from the inferior
  to the superior end; each case records its ``position`` and ``third`` there:
  :func:`medldm.problems.model_view.sample_model_slices`);
* ``size``: centre pad or crop the in-plane axes to ``size x size`` pixels;
* ``limit``: at most this many cases (failures included), in the order read.

Intensities: a card's own normalisation, or per-file 0.5-99.5 percentiles for folders;
every :class:`~medldm.bench.cases.case.Case` carries the fitted map back to the input's units.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> np.savez(folder / "a.npz", images=np.random.default_rng(0).random((3, 40, 50)))
>>> source = CaseSource(root=str(folder), size=32, limit=2)
>>> [(c.dataset == folder.name, c.case_id, c.image.shape) for c in source]
[(True, 'a.npz[0]', (32, 32)), (True, 'a.npz[1]', (32, 32))]
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from medldm.bench.cases.cards import card_cases
from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.cases.folders import folder_cases
from medldm.data.normalize import PercentileNormalizer
from medldm.errors import InvalidInputError
from medldm.problems.model_view import SLICE_SAMPLINGS

#: ``data.slices`` value that takes every slice (of the volume, or of its foreground extent).
ALL_SLICES = "all"


def _slice_count(value: int | str | None) -> int | str | None:
    if isinstance(value, str) and value.strip().lower() == ALL_SLICES:
        return ALL_SLICES
    try:
        return _optional_int(value, "slices")
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"data.slices must be a positive integer, {ALL_SLICES!r} or null, got {value!r}"
        ) from error


def _optional_int(value: int | str | None, name: str) -> int | None:
    if value is None:
        return None
    number = int(value)
    if number < 1:
        raise InvalidInputError(f"data.{name} must be a positive integer or null, got {value}")
    return number


@dataclass
class CaseSource:
    """Where the benchmark's ground truths come from (see module docstring).

    Parameters
    ----------
    card:
        Data card id (``"ixi_t1"``, ``"mednist"``, ``"microscopy"``, ``"dicom_qa"``).
    split:
        Split of the card: ``"test"`` (default), ``"validation"`` or ``"train"``.
    root:
        A folder of image files, read instead of a card.
    name:
        Dataset label in the results (default: ``<card>_<split>`` or the folder's name).
    slices, axis, size, limit:
        Slice selection (a count, ``"all"`` or None), in-plane size (pixels) and maximum
        number of cases.
    slice_sampling:
        ``"central"`` or ``"foreground"`` (module docstring).
    classes, per_class:
        MedNIST only: classes to use and images per class.
    data_root:
        Data root holding the cards' folders (default ``MEDLDM_DATA_DIR`` or
        ``../shared/data``); not used with ``root``.
    low_pct, high_pct:
        Percentiles of the folder normalisation (ignored for cards).
    """

    card: str | None = None
    split: str = "test"
    root: str | None = None
    name: str | None = None
    slices: int | str | None = None
    slice_sampling: str = "central"
    axis: str | int = "axial"
    size: int | None = None
    limit: int | None = None
    classes: Sequence[str] | None = None
    per_class: int | None = None
    data_root: str | None = None
    low_pct: float = 0.5
    high_pct: float = 99.5

    def __post_init__(self) -> None:
        if (self.card is None) == (self.root is None):
            raise InvalidInputError(
                "give exactly one of data.card (a named dataset) and data.root (a folder)"
                f", got card={self.card!r} root={self.root!r}",
                fix="pass data.root=/your/folder (folder preset, the default) or "
                "data=ixi_t1_test for a named dataset; the data root of named datasets "
                "is set with MEDLDM_DATA_DIR or data.data_root",
            )
        self.slices = _slice_count(self.slices)
        if self.slice_sampling not in SLICE_SAMPLINGS:
            raise InvalidInputError(
                f"data.slice_sampling={self.slice_sampling!r}",
                fix=f"use one of {list(SLICE_SAMPLINGS)}",
            )
        if self.slice_sampling != "central" and self.slices is None:
            raise InvalidInputError(
                f"data.slice_sampling={self.slice_sampling} takes slices, but data.slices is "
                "null (volumes kept 3D)",
                fix="set data.slices=N or data.slices=all",
            )
        self.size = _optional_int(self.size, "size")
        self.limit = _optional_int(self.limit, "limit")
        self.per_class = _optional_int(self.per_class, "per_class")
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]
        if isinstance(self.axis, str) and self.axis.lstrip("-").isdigit():
            self.axis = int(self.axis)

    @property
    def dataset_name(self) -> str:
        """Label of the dataset in the results table."""
        if self.name:
            return str(self.name)
        if self.root is not None:
            return Path(self.root).expanduser().resolve().name
        return f"{self.card}_{self.split}"

    def __iter__(self) -> Iterator[Case | CaseFailure]:
        options = {
            "slices": self.slices,
            "axis": self.axis,
            "size": self.size,
            "slice_sampling": self.slice_sampling,
        }
        if self.root is not None:
            items = folder_cases(
                self.root,
                dataset=self.dataset_name,
                normalizer=PercentileNormalizer(self.low_pct, self.high_pct),
                **options,
            )
        else:
            items = card_cases(
                str(self.card),
                self.split,
                dataset=self.dataset_name,
                classes=self.classes,
                per_class=self.per_class,
                data_root=self.data_root,
                **options,
            )
        return itertools.islice(items, self.limit) if self.limit else items
