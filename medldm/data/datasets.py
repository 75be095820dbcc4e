"""Named datasets on disk: which are present, their split cases, and their images.

Cases are identified by strings: IXI subject IDs (``"IXI012"``), MedNIST
``"<class>/<index:06d>"``, microscopy file names, DICOM QA series folders. Splits come from
the data cards (:mod:`medldm.data.cards`) and are subject-level (IXI), contiguous index
blocks per class (MedNIST) or whole files/series (microscopy, DICOM QA).

Images are yielded as :class:`~medldm.io.image.MedImage` in raw units (arbitrary MR units
for IXI as float32, 8-bit grey levels for MedNIST as uint8, microscopy in the file's dtype
and units: counts for integer files, "unknown" for float files); normalise them with the
card's normaliser.

Example
-------
>>> subjects("ixi_t1", "test")
['IXI603', 'IXI606', 'IXI632']
>>> # needs the data root (MEDLDM_DATA_DIR or ../shared/data):
>>> image = next(iter_images("ixi_t1", "test"))  # doctest: +SKIP
>>> image.metadata["subject"], image.spatial_shape, image.spacing  # doctest: +SKIP
('IXI603', (120, 120, 90), (2.0, 2.0, 2.0))
"""

from __future__ import annotations

import importlib
import importlib.util
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from medldm.data.cards import DataCard, check_split, list_cards, load_card
from medldm.data.root import find_data_root
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.io.image import UNIT_COUNTS, UNIT_MR, UNIT_UNKNOWN, MedImage

#: MedImage modality code of each MedNIST class.
MEDNIST_MODALITY = {"HeadCT": "CT", "ChestCT": "CT", "AbdomenCT": "CT", "BreastMRI": "MR"}


def _card(card: str | DataCard) -> DataCard:
    return card if isinstance(card, DataCard) else load_card(card)


def dataset_dir(card: str | DataCard, root: str | Path | None = None) -> Path:
    """Folder of a dataset under the data root; DataNotFoundError if it is missing."""
    card = _card(card)
    base = Path(root) if root is not None else find_data_root()
    folder = base / card.folder
    if not folder.is_dir():
        raise DataNotFoundError(
            f"dataset {card.id!r} is not in the data root",
            path=folder,
            fix=f"place the {card.folder}/ folder there or set MEDLDM_DATA_DIR to a data root "
            "that holds it",
        )
    return folder


def list_datasets(root: str | Path | None = None) -> list[str]:
    """Ids of the cards whose folder exists under the data root (``[]`` if no root)."""
    base = Path(root) if root is not None else find_data_root(required=False)
    if base is None:
        return []
    return [cid for cid in list_cards() if (base / load_card(cid).folder).is_dir()]


# --- splits ------------------------------------------------------------------------------
def mednist_block_range(card: str | DataCard, class_name: str, split: str) -> range:
    """Index range of ``split`` within one MedNIST class (contiguous block).

    Example
    -------
    >>> mednist_block_range("mednist", "HeadCT", "validation")
    range(7200, 8100)
    """
    card = _card(card)
    check_split(split)
    counts = card.classes or {}
    if class_name not in counts:
        raise InvalidInputError(
            f"unknown {card.id} class {class_name!r}", fix=f"use one of {sorted(counts)}"
        )
    n = int(counts[class_name])
    fractions = card.split["fractions"]
    # Integer boundaries: floor(0.8 N) and floor(0.9 N), computed without float drift.
    train_end = round(fractions["train"] * 1000) * n // 1000
    val_end = round((fractions["train"] + fractions["validation"]) * 1000) * n // 1000
    bounds = {"train": (0, train_end), "validation": (train_end, val_end), "test": (val_end, n)}
    return range(*bounds[split])


def subjects(card: str | DataCard, split: str) -> list[str]:
    """Ordered case ids of ``split`` (``"train"``, ``"validation"`` or ``"test"``).

    Needs no data on disk: the cards fix the splits.

    Example
    -------
    >>> subjects("ixi_t1", "validation")
    ['IXI527', 'IXI565', 'IXI577']
    >>> subjects("mednist", "test")[:2]
    ['HeadCT/008100', 'HeadCT/008101']
    """
    card = _card(card)
    check_split(split)
    if "fractions" in card.split:
        return [
            f"{name}/{index:06d}"
            for name in card.classes or {}
            for index in mednist_block_range(card, name, split)
        ]
    return card.split_cases(split)


# --- MedNIST ---------------------------------------------------------------------------
def _npz_images_shape(path: Path) -> tuple[int, ...]:
    """Shape of ``images`` in a MedNIST .npz, read from the header only (no decompression)."""
    with zipfile.ZipFile(path) as archive, archive.open("images.npy") as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(member)
    return tuple(shape)


def mednist_block(class_name: str, split: str, root: str | Path | None = None) -> np.ndarray:
    """The uint8 images ``(N, 64, 64)`` (rows, columns) of one class and split.

    Example
    -------
    >>> # needs the data root (MEDLDM_DATA_DIR or ../shared/data):
    >>> block = mednist_block("BreastMRI", "test")  # doctest: +SKIP
    >>> block.shape, block.dtype  # doctest: +SKIP
    ((796, 64, 64), dtype('uint8'))
    """
    card = load_card("mednist")
    index = mednist_block_range(card, class_name, split)
    path = dataset_dir(card, root) / f"{class_name}.npz"
    if not path.is_file():
        raise DataNotFoundError("MedNIST class file missing", path=path, fix="restore the file")
    expected = (card.classes or {})[class_name]
    shape = _npz_images_shape(path)
    if shape[0] != expected or shape[1:] != (64, 64):
        raise InvalidInputError(
            f"expected {expected} images of 64x64, the file holds {shape}",
            path=path,
            fix="the split is defined for the documented file; restore it or update the card",
        )
    with np.load(path) as archive:
        return archive["images"][index.start : index.stop].copy()


def _mednist_images(card: DataCard, split: str, root: str | Path | None) -> Iterator[MedImage]:
    folder = dataset_dir(card, root)
    for name in card.classes or {}:
        index = mednist_block_range(card, name, split)
        block = mednist_block(name, split, root)
        for offset, image in enumerate(block):
            i = index.start + offset
            yield MedImage(
                np.ascontiguousarray(image.T),  # (rows, cols) -> array[x, y]
                np.eye(4),
                modality=MEDNIST_MODALITY.get(name, "OT"),
                unit=card.intensity_units,
                metadata={
                    "dataset": card.id,
                    "class": name,
                    "index": i,
                    "name": f"{i:06d}.jpeg",
                    "case": f"{name}/{i:06d}",
                    "source": str(folder / f"{name}.npz"),
                    "spacing_unknown": True,
                },
            )


# --- IXI ---------------------------------------------------------------------------------
def _io_reader(module: str, name: str) -> Callable[..., MedImage] | None:
    """``medldm.io`` reader ``module.name`` if that module exists (it is being written
    alongside this one), else None. A module that exists but fails to import raises."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        spec = None
    if spec is None:
        return None
    return getattr(importlib.import_module(module), name)


def _read_nifti(path: Path) -> MedImage:
    read_nifti = _io_reader("medldm.io.nifti", "read_nifti")
    if read_nifti is not None:
        return read_nifti(path)
    import nibabel as nib

    img = nib.load(str(path))
    return MedImage(img.get_fdata(dtype=np.float32), img.affine)


def _ixi_images(card: DataCard, split: str, root: str | Path | None) -> Iterator[MedImage]:
    folder = dataset_dir(card, root)
    for subject in subjects(card, split):
        matches = sorted(folder.glob(f"{subject}-*_T1.nii.gz"))
        if len(matches) != 1:
            raise DataNotFoundError(
                f"expected one T1 volume for subject {subject}, found {len(matches)}",
                path=folder,
                fix=f"restore {subject}-*_T1.nii.gz (see the ixi_t1 data card)",
            )
        image = _read_nifti(matches[0])
        metadata = {
            **image.metadata,
            "subject": subject,
            "source": str(matches[0]),
            "dataset": card.id,
        }
        yield image.replace(modality="MR", unit=UNIT_MR, metadata=metadata)


def _native_brain_images(card: DataCard, split: str, root: str | Path | None) -> Iterator[MedImage]:
    """Every series of the split's patients, in file-name order; metadata adds ``subject``
    (the patient), ``study``, ``contrast`` (``T1W``, ``T2W`` or ``FLAIR``) and ``case``
    (``"<patient>/<study>/<contrast>"``, unique per series)."""
    folder = dataset_dir(card, root)
    for patient in subjects(card, split):
        paths = sorted(folder.glob(f"{patient}_study*_*.nii.gz"))
        if not paths:
            raise DataNotFoundError(
                f"no series found for {patient}",
                path=folder,
                fix=f"restore {patient}_study*_*.nii.gz (see the {card.id} data card)",
            )
        for path in paths:
            _, study, contrast = path.name.removesuffix(".nii.gz").split("_")
            image = _read_nifti(path)
            metadata = {
                **image.metadata,
                "subject": patient,
                "study": study,
                "contrast": contrast,
                "case": f"{patient}/{study}/{contrast}",
                "source": str(path),
                "dataset": card.id,
            }
            yield image.replace(modality="MR", unit=UNIT_MR, metadata=metadata)


# --- microscopy ----------------------------------------------------------------------------
#: On-disk axis order (outermost first) -> medldm axes after transposing.
_TIFF_AXES = {
    "yx": ("x", "y"),
    "zyx": ("x", "y", "z"),
    "cyx": ("x", "y", "c"),
    "tyx": ("x", "y", "t"),
}


def _read_tiff(path: Path, disk_axes: str) -> MedImage:
    read_microscopy = _io_reader("medldm.io.microscopy", "read_microscopy")
    if read_microscopy is not None:
        # Unlabelled page stacks are z unless the card says they are time points.
        return read_microscopy(path, stack_axis="t" if disk_axes.startswith("t") else "z")
    import tifffile

    if disk_axes not in _TIFF_AXES:
        raise InvalidInputError(
            f"unsupported TIFF axes {disk_axes!r}", path=path, fix=f"use {sorted(_TIFF_AXES)}"
        )
    data = tifffile.imread(path)
    if data.ndim != len(disk_axes):
        raise InvalidInputError(
            f"TIFF has shape {data.shape}, the card says axes {disk_axes!r}",
            path=path,
            fix="correct the axes in the microscopy data card",
        )
    # yx -> xy; (z|c|t)yx -> xy(z|c|t). Pixel sizes are left to medldm.io.microscopy.
    order = (1, 0) if data.ndim == 2 else (2, 1, 0)
    return MedImage(
        np.ascontiguousarray(data.transpose(order)),
        np.eye(4),
        axes=_TIFF_AXES[disk_axes],
        unit=UNIT_COUNTS if np.issubdtype(data.dtype, np.integer) else UNIT_UNKNOWN,
        metadata={"spacing_unknown": True},
    )


def _microscopy_images(card: DataCard, split: str, root: str | Path | None) -> Iterator[MedImage]:
    folder = dataset_dir(card, root)
    for name in subjects(card, split):
        path = folder / name
        if not path.is_file():
            raise DataNotFoundError("microscopy file missing", path=path, fix="restore it")
        info = (card.files or {}).get(name, {})
        image = _read_tiff(path, info.get("axes", "yx"))
        metadata = {**image.metadata, "name": name, "source": str(path), "dataset": card.id}
        yield image.replace(modality="OT", metadata=metadata)


# --- DICOM QA ------------------------------------------------------------------------------
def _dicom_images(card: DataCard, split: str, root: str | Path | None) -> Iterator[MedImage]:
    folder = dataset_dir(card, root)
    read_dicom = _io_reader("medldm.io.dicom_read", "read_dicom")
    if read_dicom is None:
        raise InvalidInputError(
            "reading the dicom_qa series needs medldm.io.dicom_read.read_dicom",
            path=folder,
            fix="install a medldm version with DICOM support",
        )
    for case in subjects(card, split):
        image = read_dicom(folder / case)
        metadata = {**image.metadata, "case": case, "dataset": card.id}
        yield image.replace(metadata=metadata)


_READERS = {
    "ixi_t1": _ixi_images,
    "brain_mri_native": _native_brain_images,
    "mednist": _mednist_images,
    "microscopy": _microscopy_images,
    "dicom_qa": _dicom_images,
}


def iter_images(
    card_id: str | DataCard, split: str, root: str | Path | None = None
) -> Iterator[MedImage]:
    """Yield the images of one split as MedImages, in :func:`subjects` order.

    ``root`` defaults to :func:`~medldm.data.root.find_data_root` (``MEDLDM_DATA_DIR`` or
    ``../shared/data``). Metadata always holds ``dataset`` and ``source``; IXI adds
    ``subject``, MedNIST ``class``/``index``/``name`` (and ``spacing_unknown``),
    microscopy ``name``.
    """
    card = _card(card_id)
    check_split(split)
    if card.id not in _READERS:
        raise InvalidInputError(
            f"no image reader for dataset {card.id!r}", fix=f"use one of {sorted(_READERS)}"
        )
    dataset_dir(card, root)  # fail now, not at the first next()
    return _READERS[card.id](card, split, root)
