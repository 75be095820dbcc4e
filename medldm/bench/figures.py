"""Per-case figure grids for the report (matplotlib, PNG).

Top row: the ground truth, the measurement seen in image space, and each solver's
estimate, all on the grey scale [0, 1] of the normalised ground truth. Bottom row: the
absolute error ``|estimate - ground truth|`` of the measurement view and of each solver,
all on one shared colour scale (0 to the 99.5th percentile of the solvers' errors, so the
solvers can be compared panel to panel; brighter is worse). Titles give PSNR (dB) and
SSIM from the results table.

Example
-------
>>> import numpy as np, tempfile, pathlib
>>> from medldm.bench.figure_arrays import CaseArrays
>>> gt = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
>>> arrays = CaseArrays("d", "c", "mri_4x", 0, gt, gt * 0.5, {"tv": gt * 0.9})
>>> path = case_figure(arrays, {"tv": {"psnr": "30.1", "ssim": "0.95"}},
...                    pathlib.Path(tempfile.mkdtemp()) / "c.png")
>>> path.stat().st_size > 0
True
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from medldm.bench.figure_arrays import CaseArrays
from medldm.utils.files import atomic_output


def _title(name: str, scores: Mapping[str, str] | None) -> str:
    if not scores:
        return name
    try:
        return f"{name}\n{float(scores['psnr']):.2f} dB / SSIM {float(scores['ssim']):.3f}"
    except (KeyError, TypeError, ValueError):
        return name


def case_figure(
    arrays: CaseArrays,
    scores: Mapping[str, Mapping[str, str]],
    path: str | Path,
    solver_order: Sequence[str] | None = None,
    dpi: int = 80,
) -> Path:
    """Draw and save the figure grid of one (case, operator, seed); returns ``path``.

    ``scores`` maps a solver name to its results row (``psnr``, ``ssim`` as text).
    """
    solvers = [s for s in (solver_order or sorted(arrays.estimates)) if s in arrays.estimates]
    truth = arrays.ground_truth
    errors = {name: np.abs(arrays.estimates[name] - truth) for name in solvers}
    pooled = np.concatenate([e.ravel() for e in errors.values()]) if errors else np.zeros(1)
    error_max = float(np.percentile(pooled, 99.5)) or 1e-6
    columns = 2 + len(solvers)
    figure, axes = plt.subplots(2, columns, figsize=(2.3 * columns, 5.0), squeeze=False)
    panels = [("ground truth", truth, None), ("measurement", arrays.measurement, None)]
    panels += [(name, arrays.estimates[name], scores.get(name)) for name in solvers]
    for column, (name, image, row_scores) in enumerate(panels):
        axes[0, column].imshow(
            image,
            cmap="gray",
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
            origin=arrays.display_origin,
        )
        axes[0, column].set_title(_title(name, row_scores), fontsize=8)
    error_panels = [("measurement", np.abs(arrays.measurement - truth))]
    error_panels += [(name, errors[name]) for name in solvers]
    mappable = None
    for column, (name, error) in enumerate(error_panels, start=1):
        mappable = axes[1, column].imshow(
            error,
            cmap="inferno",
            vmin=0.0,
            vmax=error_max,
            interpolation="nearest",
            origin=arrays.display_origin,
        )
        axes[1, column].set_title(f"|error| {name}", fontsize=8)
    for axis in axes.ravel():
        axis.set_axis_off()
    if mappable is not None:
        bar = figure.colorbar(mappable, ax=axes[1, 0], fraction=0.9, location="left")
        bar.set_label("|estimate - ground truth| (shared scale)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    figure.suptitle(
        f"{arrays.dataset} / {arrays.case} / {arrays.operator} / seed {arrays.seed}", fontsize=9
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    plt.close(figure)
    # A 256-colour palette halves the file (the HTML report embeds every figure).
    picture = Image.open(buffer).convert("RGB").quantize(256)
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return path
