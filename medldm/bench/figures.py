"""Per-case figure grids for the report (matplotlib, PNG).

Top row: the ground truth, the measurement seen in image space, and each solver's
estimate, all on the grey scale [0, 1] of the normalised ground truth. Bottom row: the
absolute error ``|estimate - ground truth|`` of the measurement view and of each solver,
all on one shared colour scale (0 to the 99.5th percentile of the solvers' errors, so the
solvers can be compared panel to panel; brighter is worse). Titles give PSNR (dB) and
SSIM from the results table.

:func:`reliability_figure` draws the error-vs-std reliability curves of the latent solvers
on one operator (pixels pooled over cases; :mod:`medldm.metrics.uncertainty`).

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
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from medldm.bench.figure_arrays import CaseArrays
from medldm.metrics.uncertainty import GAUSSIAN_MEAN_ABS, ReliabilityCurve
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
    return _save_png(figure, path, dpi)


def _save_png(figure: plt.Figure, path: str | Path, dpi: int) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, dpi=dpi, format="png")
    plt.close(figure)
    # A 256-colour palette halves the file (the HTML report embeds every figure).
    picture = Image.open(buffer).convert("RGB").quantize(256)
    path = Path(path)
    with atomic_output(path, overwrite=True) as tmp:
        picture.save(tmp, format="PNG", optimize=True)
    return path


def reliability_figure(
    curves: Mapping[str, ReliabilityCurve],
    path: str | Path,
    title: str = "",
    calibration_factors: Mapping[str, float] | None = None,
    min_pixels: int = 20,
    dpi: int = 80,
) -> Path:
    """Mean ``|error|`` against mean std per std bin, one line per solver (log-log), with
    the line a calibrated Gaussian std would follow (``sqrt(2/pi) std``) and, for a solver
    with a fitted std factor ``f`` (``calibration_factors``), the line ``sqrt(2/pi) f std``
    its calibration assumes. Bins with fewer than ``min_pixels`` pixels are left out.

    >>> import numpy as np, tempfile, pathlib
    >>> from medldm.metrics.uncertainty import STD_BIN_EDGES, reliability_curve
    >>> rng = np.random.default_rng(0); std = rng.uniform(0.01, 0.2, 4096)
    >>> curve = reliability_curve(std * rng.normal(size=std.size), np.zeros(std.size), std,
    ...                           mask=np.ones(std.size, bool), bin_edges=STD_BIN_EDGES)
    >>> path = reliability_figure({"latent_dds": curve}, pathlib.Path(tempfile.mkdtemp()) / "r.png")
    >>> path.stat().st_size > 0
    True
    """
    figure, axis = plt.subplots(figsize=(4.6, 4.0))
    low, high = np.inf, 0.0
    for index, (name, curve) in enumerate(curves.items()):
        keep = curve.counts >= min_pixels
        x, y = curve.mean_std[keep], curve.mean_abs_error[keep]
        keep_positive = (x > 0) & (y > 0)
        x, y = x[keep_positive], y[keep_positive]
        if x.size == 0:
            continue
        colour = f"C{index % 10}"
        label = f"{name} ({int(curve.counts.sum())} px, {curve.n_cases} cases)"
        axis.plot(x, y, "o-", color=colour, label=label, markersize=4)
        factor = (calibration_factors or {}).get(name)
        if factor:
            span = np.array([x.min(), x.max()])
            axis.plot(
                span,
                GAUSSIAN_MEAN_ABS * factor * span,
                ":",
                color=colour,
                linewidth=1,
                label=f"{name} calibrated (std x {factor:.2g})",
            )
        low, high = (
            min(low, float(x.min()), float(y.min())),
            max(high, float(x.max()), float(y.max())),
        )
    if high > 0:
        span = np.array([low / 1.5, high * 1.5])
        axis.plot(
            span,
            GAUSSIAN_MEAN_ABS * span,
            "k--",
            linewidth=1,
            label="calibrated Gaussian: sqrt(2/pi) std",
        )
        axis.set_xscale("log")
        axis.set_yscale("log")
    else:
        axis.text(0.5, 0.5, "no bins with enough pixels", ha="center", transform=axis.transAxes)
    axis.set_xlabel("posterior std (bin mean)", fontsize=8)
    axis.set_ylabel("mean |estimate - ground truth|", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.grid(True, which="both", alpha=0.3)
    if axis.get_legend_handles_labels()[0]:  # nothing to name when no bin had enough pixels
        axis.legend(fontsize=6, loc="upper left")
    axis.set_title(title or "reliability", fontsize=9)
    figure.tight_layout()
    return _save_png(figure, path, dpi)


def speed_quality_figure(
    points: Mapping[str, tuple[float, float, float]],
    path: str | Path,
    title: str = "",
    dpi: int = 80,
) -> Path:
    """Mean PSNR and SSIM against mean seconds per case (log scale), one labelled point per
    solver (or solver variant) of one dataset x operator: the speed/quality trade-off.
    Variants named ``<solver>_<steps>x<samples>`` are joined by a line per number of samples
    (the curve over steps).

    ``points`` maps a solver label to ``(seconds, psnr_db, ssim)``.

    >>> import tempfile, pathlib
    >>> points = {"tv": (0.5, 24.0, 0.70), "latent_dds_4x2": (2.0, 24.6, 0.74),
    ...           "latent_dds_8x2": (3.0, 25.0, 0.76)}
    >>> path = speed_quality_figure(points, pathlib.Path(tempfile.mkdtemp()) / "s.png")
    >>> path.stat().st_size > 0
    True
    """
    curves: dict[str, list[tuple[int, str]]] = {}
    for label in points:
        match = re.search(r"_(\d+)x(\d+)$", label)
        if match:
            curves.setdefault(match.group(2), []).append((int(match.group(1)), label))
    figure, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    for axis, column, name in ((axes[0], 1, "PSNR (dB)"), (axes[1], 2, "SSIM")):
        for index, (samples, members) in enumerate(sorted(curves.items(), key=lambda c: int(c[0]))):
            ordered = [points[label] for _, label in sorted(members)]
            axis.plot(
                [v[0] for v in ordered],
                [v[column] for v in ordered],
                "o-",
                color=f"C{index % 10}",
                markersize=4,
                label=f"{samples} sample(s), steps ->",
            )
            for (steps, _), values in zip(sorted(members), ordered, strict=True):
                axis.annotate(
                    str(steps),
                    (values[0], values[column]),
                    fontsize=6,
                    xytext=(2, 3),
                    textcoords="offset points",
                )
        others = [label for label in points if not re.search(r"_(\d+)x(\d+)$", label)]
        for index, label in enumerate(others):
            values = points[label]
            axis.plot(
                values[0],
                values[column],
                "s",
                color=f"C{(index + 5) % 10}",
                markersize=5,
                label=label,
            )
        axis.set_xscale("log")
        axis.set_xlabel("seconds per case", fontsize=8)
        axis.set_ylabel(f"mean {name}", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=6, loc="lower right")
    figure.suptitle(title or "speed and quality", fontsize=9)
    figure.tight_layout()
    return _save_png(figure, path, dpi)
