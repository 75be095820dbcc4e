"""Small ``.npz`` files with the images behind the report's figures.

Under ``output_dir/cases/<dataset>/``, for one (case, operator, seed):

* ``<case>__<operator>__seed<k>.npz``: ``ground_truth`` and ``measurement`` (the
  measurement seen in image space, see :mod:`medldm.bench.measurement_view`);
* ``<case>__<operator>__seed<k>__<solver>.npz``: ``estimate`` (magnitude).

Arrays are float32 in the model range [0, 1] (3D cases: the central slice only), and each
file stores its own labels (``dataset``, ``case``, ``operator``, ``seed``, ``solver``), so
nothing is parsed from file names. Files are written atomically.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> gt = np.zeros((4, 4), np.float32)
>>> _ = save_measurement(out, "d", "a/b", "mri_4x", 0, gt, gt)
>>> _ = save_estimate(out, "d", "a/b", "mri_4x", 0, "tv", gt + 1)
>>> [(g.case, sorted(g.estimates)) for g in load_case_arrays(out)]
[('a/b', ['tv'])]
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medldm.utils.files import atomic_output

CASES_DIR = "cases"


def safe_name(text: str) -> str:
    """File-name-safe version of a label (letters, digits, ``-``, ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", str(text)).strip("_") or "_"


def display_slice(array: np.ndarray) -> np.ndarray:
    """2D view of a case array: itself, or the central slice of a volume."""
    array = np.asarray(array, dtype=np.float32)
    return array[array.shape[0] // 2] if array.ndim == 3 else array


def _stem(dataset: str, case: str, operator: str, seed: int) -> str:
    return f"{safe_name(case)}__{safe_name(operator)}__seed{int(seed)}"


def _save(path: Path, labels: dict, **arrays: np.ndarray) -> Path:
    with atomic_output(path, overwrite=True) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, labels=np.array(json.dumps(labels)), **arrays)
    return path


def save_measurement(
    output_dir: str | Path,
    dataset: str,
    case: str,
    operator: str,
    seed: int,
    ground_truth: np.ndarray,
    measurement: np.ndarray,
    display_origin: str = "upper",
) -> Path:
    """Write the ground truth and the measurement view of one (case, operator, seed);
    ``display_origin`` is how figures show it (``"lower"`` for slices of volumes in the
    model view, :func:`medldm.problems.model_view.display_origin`)."""
    folder = Path(output_dir) / CASES_DIR / safe_name(dataset)
    labels = {
        "dataset": dataset,
        "case": case,
        "operator": operator,
        "seed": int(seed),
        "display_origin": display_origin,
    }
    return _save(
        folder / f"{_stem(dataset, case, operator, seed)}.npz",
        labels,
        ground_truth=display_slice(ground_truth),
        measurement=display_slice(measurement),
    )


def save_estimate(
    output_dir: str | Path,
    dataset: str,
    case: str,
    operator: str,
    seed: int,
    solver: str,
    estimate: np.ndarray,
) -> Path:
    """Write one solver's estimate (magnitude) of one (case, operator, seed)."""
    folder = Path(output_dir) / CASES_DIR / safe_name(dataset)
    labels = {
        "dataset": dataset,
        "case": case,
        "operator": operator,
        "seed": int(seed),
        "solver": solver,
    }
    name = f"{_stem(dataset, case, operator, seed)}__{safe_name(solver)}.npz"
    return _save(folder / name, labels, estimate=display_slice(np.abs(estimate)))


@dataclass
class CaseArrays:
    """The saved images of one (dataset, case, operator, seed)."""

    dataset: str
    case: str
    operator: str
    seed: int
    ground_truth: np.ndarray
    measurement: np.ndarray
    estimates: dict[str, np.ndarray] = field(default_factory=dict)
    display_origin: str = "upper"


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as archive:
        labels = json.loads(str(archive["labels"]))
        arrays = {k: np.asarray(archive[k]) for k in archive.files if k != "labels"}
    return labels, arrays


def load_case_arrays(output_dir: str | Path) -> list[CaseArrays]:
    """Every saved (case, operator, seed) with its estimates, sorted by labels.

    Unreadable files (e.g. from an interrupted run) are skipped, and so are the hidden
    temporary files of writes in progress (another job of a multirun sharing the folder).
    """
    groups: dict[tuple, CaseArrays] = {}
    estimates: list[tuple[tuple, str, np.ndarray]] = []
    for path in sorted((Path(output_dir) / CASES_DIR).glob("*/*.npz")):
        if path.name.startswith("."):
            continue
        try:
            labels, arrays = _read(path)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
        key = (labels["dataset"], labels["case"], labels["operator"], int(labels["seed"]))
        if "solver" in labels:
            estimates.append((key, labels["solver"], arrays["estimate"]))
        else:
            groups[key] = CaseArrays(
                *key,
                arrays["ground_truth"],
                arrays["measurement"],
                display_origin=labels.get("display_origin", "upper"),
            )
    for key, solver, estimate in estimates:
        if key in groups:
            groups[key].estimates[solver] = estimate
    return [groups[k] for k in sorted(groups)]
