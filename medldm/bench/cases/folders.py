"""Cases from any folder of NIfTI, DICOM, TIFF and ``.npz`` files (a user's own cohort).

What counts as an input, searched recursively in sorted order (hidden files skipped):

* ``.nii`` / ``.nii.gz``: one image or volume each;
* ``.tif`` / ``.tiff`` (OME-TIFF too): one image or stack each;
* ``.npz``: an ``images`` array of shape ``(N, H, W)`` gives ``N`` cases (``(H, W)``
  gives one), already in display order (rows, columns);
* DICOM: every image series found in the folder (by ``SeriesInstanceUID``, files ``.dcm``,
  ``.ima``, ``.dicom``, ``.dcm.gz`` or without suffix), read from the folder holding it.

Case ids are paths relative to the folder (``"sub/a.nii.gz"``, ``"scans.npz[3]"``,
``"series/CT_head#2"``). Intensities are normalised per file (per volume) with the
0.5-99.5 percentile rule unless another normaliser is given. A file that cannot be read
becomes a :class:`~medldm.bench.cases.case.CaseFailure` and the others go on.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> np.savez(folder / "stack.npz", images=np.random.default_rng(0).random((2, 8, 8)))
>>> [case.case_id for case in folder_cases(folder)]
['stack.npz[0]', 'stack.npz[1]']
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.cases.from_images import array_cases, image_cases
from medldm.data.normalize import Normalizer, PercentileNormalizer
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.io import list_dicom_series, load, read_dicom
from medldm.io.formats import DICOM_SUFFIXES, NIFTI_SUFFIXES, TIFF_SUFFIXES

#: Default intensity rule for folders: per file, 0.5th percentile -> 0, 99.5th -> 1.
FOLDER_NORMALIZER = PercentileNormalizer(0.5, 99.5)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _input_files(root: Path) -> tuple[list[Path], bool]:
    """Image files other than DICOM (sorted), and whether DICOM candidates were seen."""
    files, has_dicom = [], False
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            lower = name.lower()
            if lower.endswith(NIFTI_SUFFIXES + TIFF_SUFFIXES + (".npz",)):
                files.append(Path(folder) / name)
            elif lower.endswith(DICOM_SUFFIXES) or "." not in name:
                has_dicom = True
    return files, has_dicom


def _npz_cases(path: Path, relative: str, dataset: str, normalizer: Normalizer, size: int | None):
    with np.load(path, allow_pickle=False) as archive:
        if "images" not in archive.files:
            raise InvalidInputError(
                f"the .npz holds {sorted(archive.files)}, not an 'images' array",
                path=path,
                fix="save the images as np.savez(path, images=array_of_shape_N_H_W)",
            )
        images = np.asarray(archive["images"])
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise InvalidInputError(
            f"'images' has shape {images.shape}; expected (N, H, W) or (H, W)",
            path=path,
            fix="store 2D images stacked along the first axis",
        )
    for index, image in enumerate(images):
        yield from array_cases(
            image,
            dataset=dataset,
            case_id=f"{relative}[{index}]",
            normalizer=normalizer,
            size=size,
            source=str(path),
            metadata={"index": index},
        )


def _dicom_cases(root: Path, dataset: str, options: dict) -> Iterator[Case | CaseFailure]:
    try:
        series_list = [s for s in list_dicom_series(root) if s.is_image]
    except InvalidInputError:
        return  # candidate files, but none of them DICOM
    for series in series_list:
        folder = Path(os.path.commonpath([str(f) for f in series.files]))
        if folder.is_file():
            folder = folder.parent
        name = folder.relative_to(root).as_posix()
        label = f"{name}#{series.number if series.number is not None else series.uid}"
        try:
            image = read_dicom(folder, series=series.uid)
            yield from image_cases(
                image, dataset=dataset, case_id=label, source=str(folder), **options
            )
        except Exception as error:  # a bad series must not stop the others
            yield CaseFailure(dataset, label, _describe(error))


def folder_cases(
    root: str | Path,
    *,
    dataset: str | None = None,
    slices: int | str | None = None,
    axis: str | int = "axial",
    size: int | None = None,
    normalizer: Normalizer = FOLDER_NORMALIZER,
    slice_sampling: str = "central",
) -> Iterator[Case | CaseFailure]:
    """Yield the cases of every readable image in ``root`` (see module docstring).

    Parameters
    ----------
    root:
        The folder (searched recursively).
    dataset:
        Dataset label (default: the folder's name).
    slices, axis, size, slice_sampling:
        As in :func:`~medldm.bench.cases.from_images.image_cases`.
    normalizer:
        Intensity rule fitted per file (per volume, per ``.npz`` image).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataNotFoundError(
            "benchmark data folder not found",
            path=root,
            fix="set data.root to a folder of NIfTI/DICOM/TIFF/.npz files",
        )
    dataset = dataset or root.resolve().name
    options = {
        "normalizer": normalizer,
        "slices": slices,
        "axis": axis,
        "size": size,
        "slice_sampling": slice_sampling,
    }
    files, has_dicom = _input_files(root)
    for path in files:
        relative = path.relative_to(root).as_posix()
        try:
            if path.name.lower().endswith(".npz"):
                yield from _npz_cases(path, relative, dataset, normalizer, size)
            else:
                image = load(path)
                yield from image_cases(
                    image, dataset=dataset, case_id=relative, source=str(path), **options
                )
        except Exception as error:  # a corrupt file is recorded, the others go on
            yield CaseFailure(dataset, relative, _describe(error))
    if has_dicom:
        yield from _dicom_cases(root, dataset, options)
