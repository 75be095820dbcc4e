"""Cases from the named datasets of :mod:`medldm.data` (the data cards).

Each card's own normalisation is used (IXI: per volume 0.5-99.5 percentiles; MedNIST:
grey levels 0-255; microscopy: per image 0.1-99.9 percentiles), fitted before slicing so
the slices of one volume share a scale. MedNIST comes as 64x64 blocks per class
(``classes``, at most ``per_class`` images each, from the start of the block); the
other cards go through :func:`medldm.data.datasets.iter_images`.

Example
-------
>>> # needs the data root (MEDLDM_DATA_DIR or ../shared/data):
>>> cases = list(card_cases("ixi_t1", "test", slices=2, size=128))  # doctest: +SKIP
>>> cases[0].case_id, cases[0].image.shape  # doctest: +SKIP
('IXI603/slice059', (128, 128))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.cases.from_images import array_cases, image_cases
from medldm.data.cards import load_card
from medldm.data.datasets import iter_images, mednist_block, mednist_block_range

#: MedNIST classes that are CT images (the CT benchmark uses these by default).
MEDNIST_CT_CLASSES = ("HeadCT", "ChestCT", "AbdomenCT")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _mednist_cases(
    dataset: str,
    split: str,
    classes: Sequence[str],
    per_class: int | None,
    size: int | None,
    data_root: str | Path | None,
) -> Iterator[Case | CaseFailure]:
    card = load_card("mednist")
    normalizer = card.normalizer()
    for name in classes:
        try:
            block = mednist_block(name, split, data_root)
            start = mednist_block_range(card, name, split).start
        except Exception as error:
            yield CaseFailure(dataset, f"{name}/*", _describe(error))
            continue
        count = len(block) if per_class is None else min(int(per_class), len(block))
        for offset in range(count):
            index = start + offset
            yield from array_cases(
                block[offset],
                dataset=dataset,
                case_id=f"{name}/{index:06d}",
                normalizer=normalizer,
                size=size,
                unit=card.intensity_units,
                source=f"mednist/{name}.npz",
                metadata={"class": name, "index": index},
            )


def _case_label(metadata: dict, position: int) -> str:
    for key in ("case", "subject", "name"):
        if metadata.get(key):
            return str(metadata[key])
    return f"image{position:03d}"


def card_cases(
    card_id: str,
    split: str = "test",
    *,
    dataset: str | None = None,
    slices: int | str | None = None,
    axis: str | int = "axial",
    size: int | None = None,
    slice_sampling: str = "central",
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    data_root: str | Path | None = None,
) -> Iterator[Case | CaseFailure]:
    """Yield the cases of one split of a named dataset.

    Parameters
    ----------
    card_id, split:
        A data card id (``"ixi_t1"``, ``"mednist"``, ``"microscopy"``, ``"dicom_qa"``)
        and ``"train"``, ``"validation"`` or ``"test"``.
    dataset:
        Dataset label in the results (default ``"<card>_<split>"``).
    slices, axis, size, slice_sampling:
        As in :func:`~medldm.bench.cases.from_images.image_cases`.
    classes, per_class:
        MedNIST only: which classes (default: the CT ones) and how many images of each.
    data_root:
        The data root (default ``MEDLDM_DATA_DIR`` or ``../shared/data``).
    """
    dataset = dataset or f"{card_id}_{split}"
    if card_id == "mednist":
        yield from _mednist_cases(
            dataset, split, tuple(classes or MEDNIST_CT_CLASSES), per_class, size, data_root
        )
        return
    card = load_card(card_id)
    normalizer = card.normalizer()
    images = iter_images(card, split, data_root)
    position = 0
    while True:
        try:
            image = next(images)
        except StopIteration:
            return
        except Exception as error:  # the reader cannot go on past this item
            yield CaseFailure(dataset, f"item{position:03d}", _describe(error))
            return
        label = _case_label(image.metadata, position)
        source = str(image.metadata.get("source", ""))
        try:
            yield from image_cases(
                image,
                dataset=dataset,
                case_id=label,
                normalizer=normalizer,
                slices=slices,
                axis=axis,
                size=size,
                source=source,
                slice_sampling=slice_sampling,
            )
        except Exception as error:
            yield CaseFailure(dataset, label, _describe(error))
        position += 1
