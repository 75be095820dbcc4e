"""``report.md`` and ``report.html`` from a benchmark folder's ``results.csv``.

The report is rebuilt from *all* rows of the table (every run and multirun job that wrote
to it) and holds: counts of ok and failed rows and cases, the summary table (mean ± std of
PSNR, SSIM and NMSE, mean seconds, NFE and peak memory per dataset x operator x solver,
see :mod:`medldm.bench.summary`), the failures with their errors, per-case figure grids
(:mod:`medldm.bench.figures`, PNG files in ``figures/`` linked from the Markdown and
embedded in the HTML, so the HTML is one self-contained file), the metric convention
(:data:`medldm.metrics.METRIC_CONVENTION`), and the command lines and configs of the runs
(:mod:`medldm.bench.run_log`). Both files are written atomically.

When rows carry the ``third`` of the foreground extent their slice lies in (whole-head
sampling, ``data.slice_sampling=foreground``), a **By position** section follows the
comparison: mean ± std of PSNR and SSIM per third (inferior, middle, superior) for each
dataset x operator x solver (:func:`medldm.bench.summary.summarise_by_third`), and each
latent solver minus the best classical one per third, paired, with its 95 % CI
(:func:`medldm.bench.comparison.versus_best_classical_by_third`). Tables without the
column (older results) get no such section.

When ``slices.csv`` holds rows (whole volumes: 3D cases, scored slice by slice over their
foreground extent by the runner), a **Volumes, slice by slice** section follows: mean ±
std over slices of PSNR and SSIM per third for each dataset x operator x solver, and each
latent solver minus the best classical one (chosen on the volume rows, as in the
comparison) slice by slice, over all slices and per third: mean PSNR difference with a
paired 95 % CI, mean SSIM difference, share of slices won
(:func:`medldm.bench.comparison.versus_best_classical_by_slice`).

When latent solver rows carry uncertainty columns, an **Uncertainty** section follows the
summary: the coverage table (mean ± std over cases of coverage_50/90 from estimate ± z std
and from the samples' quantiles, the calibrated coverage where a calibration was applied,
and the std-|error| Spearman), one line per group saying whether the std is calibrated and
on what (``std_calibration``) and where it is uninformative (|Spearman| below
:data:`UNINFORMATIVE_SPEARMAN`), the reliability curve of each dataset x operator
(``figures/reliability__<dataset>__<operator>.png``, from ``reliability.jsonl``) and the
convention (:data:`medldm.metrics.UNCERTAINTY_CONVENTION`).

Where an operator has at least :data:`SPEED_QUALITY_MIN_POINTS` timed solvers (or solver
variants: a preset with changed options, ``variants:`` in the bench config), a **Speed and
quality** section plots their mean PSNR and SSIM against mean seconds per case
(``figures/speed_quality__<dataset>__<operator>.png``).

Example
-------
>>> import tempfile, pathlib
>>> from medldm.bench.results import ResultsTable
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> _ = ResultsTable(out / "results.csv").append({"dataset": "d", "case": "c",
...     "operator": "mri_4x", "solver": "tv", "seed": 0, "status": "ok", "psnr": 30.0,
...     "ssim": 0.9, "nmse": 0.01, "seconds": 1.0, "nfe": 0, "peak_mem_mb": 3.0})
>>> markdown, html_path = write_report(out)
>>> "30.00 ± 0.00" in markdown.read_text() and "data_range" in html_path.read_text()
True
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from medldm.bench.comparison import BY_SLICE_HEADER as COMPARISON_BY_SLICE_HEADER
from medldm.bench.comparison import BY_THIRD_HEADER as COMPARISON_BY_THIRD_HEADER
from medldm.bench.comparison import HEADER as COMPARISON_HEADER
from medldm.bench.comparison import (
    versus_best_classical,
    versus_best_classical_by_slice,
    versus_best_classical_by_third,
)
from medldm.bench.figure_arrays import CaseArrays, load_case_arrays, safe_name
from medldm.bench.figures import case_figure, reliability_figure, speed_quality_figure
from medldm.bench.results import (
    SLICES_FILE,
    STATUS_OK,
    ReliabilityLog,
    ResultsTable,
    SliceTable,
    row_key,
)
from medldm.bench.run_log import read_runs
from medldm.bench.summary import (
    Stat,
    SummaryLine,
    has_thirds,
    status_counts,
    summarise,
    summarise_by_third,
    third_order,
)
from medldm.metrics import METRIC_CONVENTION, UNCERTAINTY_CONVENTION
from medldm.metrics.uncertainty import ReliabilityCurve
from medldm.problems.model_view import FOREGROUND_LEVEL, MIN_FOREGROUND_FRACTION
from medldm.utils.files import atomic_write_text

RESULTS_FILE = "results.csv"
FIGURES_DIR = "figures"
MAX_FAILURES_LISTED = 50

SUMMARY_HEADER = (
    "dataset",
    "operator",
    "solver",
    "n",
    "PSNR (dB)",
    "SSIM",
    "NMSE",
    "seconds",
    "NFE",
    "peak MiB",
    "failed",
)

BENCH_NOTES = (
    "Images are compared in the model range: each ground truth is normalised to [0, 1] "
    "(the data card's rule, or per-file 0.5-99.5 percentiles for a folder) and the "
    "estimates are scored against it, so data_range is the normalised ground truth's "
    "max - min (usually 1). Values are per 2D image (per slice for volumes taken as "
    "slices) or per 3D volume (volumes kept whole, scored in 3D); mean ± std are over "
    "cases and seeds (sample std). seconds is the wall time of solve(); peak MiB is the "
    "peak extra memory during solve() (CUDA: "
    "torch.cuda.max_memory_allocated; CPU: resident set size sampled every 2 ms). "
    "NFE counts network evaluations (0 for classical solvers)."
)

COMPARISON_NOTE = (
    "Paired over the cases and seeds every solver of a dataset x operator finished: each "
    "latent solver minus the classical solver with the highest mean PSNR on those same "
    "cases (chosen on them, which favours the classical side); 95 % CI: Student t over the "
    "pairs; wins: pairs where the latent PSNR is higher."
)

POSITION_NOTE = (
    "Slices sampled evenly over each volume's foreground extent, or all of it (every slice "
    f"with at least {MIN_FOREGROUND_FRACTION * 100:.0f} % of its pixels above "
    f"{FOREGROUND_LEVEL} of the normalised range), from its inferior end (position 0) to "
    "its superior end (position 1) in RAS+; thirds: position below 1/3, 1/3 to 2/3, above "
    "2/3. Mean ± std over the cases and seeds of each third; n per third in the order of "
    "the columns."
)
POSITION_COMPARISON_NOTE = (
    "Each latent solver minus the best classical solver of the comparison above (chosen on "
    "all the pairs of its dataset x operator, so the thirds split that comparison), over "
    "the pairs of each third; 95 % CI: Student t over those pairs (none for a single pair)."
)

VOLUME_SLICES_NOTE = (
    f"Whole volumes, scored slice by slice ({SLICES_FILE}): every slice (axial unless "
    "data.axis says otherwise) of each ground truth's foreground extent (the slices with at "
    f"least {MIN_FOREGROUND_FRACTION * 100:.0f} % of their pixels above {FOREGROUND_LEVEL} "
    "of the normalised volume, found before any in-plane crop or pad), 2D PSNR and SSIM "
    "with the volume's data_range and ROI, its position from the inferior (0) to the "
    "superior (1) end of the extent and its third. Mean ± std over the slices (of all "
    "volumes and seeds) of each third; n per third in the order of the columns. The volume "
    "rows above stay one per volume."
)
VOLUME_SLICES_COMPARISON_NOTE = (
    "Each latent solver minus the best classical solver of its dataset x operator (the "
    "highest mean volume PSNR over the volumes every solver finished, as in the comparison "
    "above), paired slice by slice (same volume, seed and slice): over all the slices, then "
    "per third. 95 % CI: Student t over the slices; slices of one volume are not "
    "independent, so it is narrower than an interval over volumes. Wins: slices where the "
    "latent PSNR is higher, with their share."
)

UNCERTAINTY_HEADER = (
    "dataset",
    "operator",
    "solver",
    "n",
    "coverage_50 (±z std)",
    "coverage_90 (±z std)",
    "coverage_50 (samples)",
    "coverage_90 (samples)",
    "coverage_50 calibrated",
    "coverage_90 calibrated",
    "Spearman std vs |error|",
)
#: Below this |Spearman| the report calls a std map uninformative.
UNINFORMATIVE_SPEARMAN = 0.1
#: A speed/quality figure needs at least this many timed solvers of one operator.
SPEED_QUALITY_MIN_POINTS = 3
SPEED_QUALITY_NOTE = (
    "Mean PSNR and SSIM against mean seconds per case (wall time of solve(), on the "
    "device and precision recorded per row), one point per solver or solver variant: "
    "a variant is a solver preset with changed options (the bench config's variants:, e.g. "
    "fewer steps or samples). Times from one run compare with each other; another machine "
    "or a busier one moves every point."
)


def _float(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def _uncertainty_groups(rows: list[dict[str, str]]) -> dict[tuple[str, str, str], list[dict]]:
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in rows:
        if row.get("status") == STATUS_OK and (row.get("coverage_90") or "") != "":
            groups.setdefault((row["dataset"], row["operator"], row["solver"]), []).append(row)
    return groups


def _uncertainty_section(rows: list[dict[str, str]]) -> tuple[list[list[str]], list[str]]:
    """The coverage table's body and one sentence per group (calibrated on what; where the
    std is uninformative)."""
    body, notes = [], []
    for (dataset, operator, solver), members in sorted(_uncertainty_groups(rows).items()):

        def stat(column: str, members: list = members) -> Stat:
            return Stat.of(_float(r.get(column)) for r in members)

        columns = (
            "coverage_50",
            "coverage_90",
            "coverage_50_samples",
            "coverage_90_samples",
            "coverage_50_calibrated",
            "coverage_90_calibrated",
            "std_error_spearman",
        )
        stats = [stat(c) for c in columns]
        body.append([dataset, operator, solver, str(len(members))] + [s.text(3) for s in stats])
        where = f"{solver} on {operator} ({dataset})"
        fits = sorted({r.get("std_calibration") or "" for r in members} - {""})
        if fits:
            n_calibrated = sum(1 for r in members if r.get("std_calibration"))
            notes.append(
                f"{where}: std calibrated on {'; '.join(fits)} "
                f"({n_calibrated} of {len(members)} rows); the uncalibrated coverage stays "
                "beside it."
            )
        else:
            notes.append(
                f"{where}: std NOT calibrated (no fit in configs/calibration for this solver "
                "preset, prior and K); intervals use the raw std."
            )
        spearman = stats[-1]
        if spearman.n and abs(spearman.mean) < UNINFORMATIVE_SPEARMAN:
            notes.append(
                f"{where}: the std is uninformative (Spearman with |error| "
                f"{spearman.mean:.3f}, below {UNINFORMATIVE_SPEARMAN})."
            )
    return body, notes


def _reliability_figures(
    output_dir: Path, table: ResultsTable, rows: list[dict[str, str]]
) -> list[tuple[str, Path]]:
    """One reliability figure per dataset x operator from ``reliability.jsonl`` (only the
    curves of rows that are ``ok`` in the table)."""
    ok = {
        (r["dataset"], r["case"], r["operator"], r["solver"], r["seed"])
        for r in rows
        if r.get("status") == STATUS_OK
    }
    pooled: dict[tuple[str, str], dict[str, ReliabilityCurve]] = {}
    for key, data in sorted(ReliabilityLog(table).read().items()):
        if key not in ok:
            continue
        try:
            curve = ReliabilityCurve.from_dict(data)
        except (KeyError, TypeError, ValueError):
            continue
        dataset, _, operator, solver, _ = key
        by_solver = pooled.setdefault((dataset, operator), {})
        try:
            by_solver[solver] = by_solver[solver].merge(curve) if solver in by_solver else curve
        except Exception:
            continue  # curves on other bins (another medldm version): left out
    for stale in (output_dir / FIGURES_DIR).glob("reliability__*.png"):
        stale.unlink(missing_ok=True)
    made = []
    for (dataset, operator), curves in sorted(pooled.items()):
        name = f"reliability__{safe_name(dataset)}__{safe_name(operator)}.png"
        label = f"{dataset} / {operator}"
        path = reliability_figure(curves, output_dir / FIGURES_DIR / name, title=label)
        made.append((label, path))
    return made


def _speed_quality_figures(output_dir: Path, summary: list[SummaryLine]) -> list[tuple[str, Path]]:
    """One speed/quality figure (mean PSNR and SSIM against mean seconds per case) per
    dataset x operator with at least three timed solvers or solver variants."""
    for stale in (output_dir / FIGURES_DIR).glob("speed_quality__*.png"):
        stale.unlink(missing_ok=True)
    groups: dict[tuple[str, str], dict[str, tuple[float, float, float]]] = {}
    for line in summary:
        values = (line.seconds.mean, line.psnr.mean, line.ssim.mean)
        if line.n_ok and all(math.isfinite(v) for v in values) and values[0] > 0:
            groups.setdefault((line.dataset, line.operator), {})[line.solver] = values
    made = []
    for (dataset, operator), points in sorted(groups.items()):
        if len(points) < SPEED_QUALITY_MIN_POINTS:
            continue
        name = f"speed_quality__{safe_name(dataset)}__{safe_name(operator)}.png"
        label = f"{dataset} / {operator}"
        made.append((label, speed_quality_figure(points, output_dir / FIGURES_DIR / name, label)))
    return made


def _position_table(rows: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    """The by-position table: one line per dataset x operator x solver, PSNR and SSIM
    (mean ± std) per third, thirds inferior first."""
    thirds = third_order(rows)
    header = ["dataset", "operator", "solver", f"n ({' / '.join(thirds)})"]
    header += [f"PSNR {third} (dB)" for third in thirds]
    header += [f"SSIM {third}" for third in thirds]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in summarise_by_third(rows):
        groups.setdefault((line.dataset, line.operator, line.solver), {})[line.third] = line
    body = []
    for (dataset, operator, solver), by_third in groups.items():
        found = [by_third.get(third) for third in thirds]
        counts = " / ".join(str(t.psnr.n) if t else "0" for t in found)
        body.append(
            [dataset, operator, solver, counts]
            + [t.psnr.text(2) if t else "-" for t in found]
            + [t.ssim.text(4) if t else "-" for t in found]
        )
    return header, body


def _ok_slice_rows(
    rows: list[dict[str, str]], slice_rows: list[dict[str, str]]
) -> list[dict[str, str]]:
    """The slice rows of ``ok`` volume rows, marked ``ok`` (slices.csv has no status) so the
    by-third summary takes them."""
    ok = {row_key(r) for r in rows if r.get("status") == STATUS_OK}
    return [{**r, "status": STATUS_OK} for r in slice_rows if row_key(r) in ok]


def _summary_cells(line: SummaryLine) -> list[str]:
    def mean(stat: Any, digits: int) -> str:
        return "-" if stat.n == 0 else f"{stat.mean:.{digits}f}"

    return [
        line.dataset,
        line.operator,
        line.solver,
        str(line.n_ok),
        line.psnr.text(2),
        line.ssim.text(4),
        line.nmse.text(4),
        mean(line.seconds, 3),
        mean(line.nfe, 0),
        mean(line.peak_mem_mb, 1),
        str(line.n_failed),
    ]


def _pick_figures(groups: list[CaseArrays], per_operator: int) -> list[CaseArrays]:
    """Up to ``per_operator`` cases per (dataset, operator), spread evenly over the sorted
    case list (first, ..., last: different subjects or classes), at the lowest saved seed."""
    by_operator: dict[tuple[str, str], dict[str, CaseArrays]] = {}
    for arrays in sorted(groups, key=lambda a: (a.dataset, a.operator, a.seed, a.case)):
        cases = by_operator.setdefault((arrays.dataset, arrays.operator), {})
        cases.setdefault(arrays.case, arrays)
    chosen: list[CaseArrays] = []
    for cases in by_operator.values():
        ordered = [cases[name] for name in sorted(cases)]
        count = min(per_operator, len(ordered))
        if count <= 0:
            continue
        picks = sorted({round(i) for i in np.linspace(0, len(ordered) - 1, count)})
        chosen += [ordered[i] for i in picks]
    return chosen


@dataclass(frozen=True)
class _KeptFigure:
    """A figure of an earlier report whose arrays are not here (``cases/`` is not kept with
    the results): listed as it is, never deleted."""

    dataset: str
    case: str
    operator: str
    seed: int


def _kept_figure(path: Path) -> _KeptFigure | None:
    """The labels of ``figures/<dataset>/<case>__<operator>__seed<k>.png``, or None."""
    parts = path.stem.split("__")
    if len(parts) != 3 or not parts[2].startswith("seed") or not parts[2][4:].isdigit():
        return None
    return _KeptFigure(path.parent.name, parts[0], parts[1], int(parts[2][4:]))


def _make_figures(
    output_dir: Path, rows: list[dict[str, str]], per_operator: int, solver_order: Sequence[str]
) -> list[tuple[Any, Path]]:
    by_key = {
        (r["dataset"], r["case"], r["operator"], r["solver"], r["seed"]): r
        for r in rows
        if r.get("status") == STATUS_OK
    }
    saved = load_case_arrays(output_dir)
    made: list[tuple[Any, Path]] = []
    for arrays in _pick_figures(saved, per_operator):
        scores = {
            solver: by_key.get(
                (arrays.dataset, arrays.case, arrays.operator, solver, str(arrays.seed)), {}
            )
            for solver in arrays.estimates
        }
        name = f"{safe_name(arrays.case)}__{safe_name(arrays.operator)}__seed{arrays.seed}.png"
        path = output_dir / FIGURES_DIR / safe_name(arrays.dataset) / name
        made.append((arrays, case_figure(arrays, scores, path, solver_order)))
    # Figures are regenerated each time: drop those of an earlier selection among the
    # groups whose arrays are here; keep (and list) the figures of groups without arrays.
    current = {path for _, path in made}
    with_arrays = {(safe_name(a.dataset), safe_name(a.operator)) for a in saved}
    for existing in sorted((output_dir / FIGURES_DIR).glob("*/*.png")):
        kept = _kept_figure(existing)
        if existing in current:
            continue
        if kept is None or (kept.dataset, kept.operator) in with_arrays:
            existing.unlink(missing_ok=True)
        else:
            made.append((kept, existing))
    return made


def _embedded_png(path: Path, alt: str) -> str:
    """An ``<img>`` holding the PNG at ``path`` (the HTML report is one self-contained file)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _markdown_table(header: Sequence[str], body: list[list[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        text = (str(c).replace("|", "\\|").replace("\n", " ") for c in cells)
        return "| " + " | ".join(text) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, body)])


def _html_section(
    level: str, title: str, note: str, header: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[str]:
    """A heading, its note and its table, as HTML fragments."""
    return [
        f"<{level}>{html.escape(title)}</{level}>",
        f"<p>{html.escape(note)}</p>",
        _html_table(header, rows),
    ]


def _html_table(header: Sequence[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>"
        for cells in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _failure_rows(rows: list[dict[str, str]]) -> list[list[str]]:
    failed = [r for r in rows if r.get("status") != STATUS_OK]
    return [
        [r["dataset"], r["case"], r["operator"], r["solver"], r["seed"], r.get("error", "")]
        for r in failed[:MAX_FAILURES_LISTED]
    ]


def _run_text(run: Mapping[str, Any]) -> str:
    return yaml.safe_dump(
        {
            k: run.get(k)
            for k in (
                "started_at",
                "command",
                "overrides",
                "device",
                "host",
                "medldm_version",
                "config",
            )
        },
        sort_keys=False,
    )


_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1400px}"
    "table{border-collapse:collapse;font-size:90%}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "th{background:#eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto}"
    "img{max-width:100%}"
)


def write_report(
    output_dir: str | Path, *, figures_per_operator: int = 3, title: str = "Benchmark report"
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` in ``output_dir``; returns both paths.

    ``figures_per_operator`` limits the figure grids to that many cases per dataset and
    operator (the ``cases/`` folder keeps the arrays of the others).
    """
    output_dir = Path(output_dir)
    table = ResultsTable(output_dir / RESULTS_FILE)
    rows = table.read()
    summary = summarise(rows)
    counts = status_counts(rows)
    solver_order = list(dict.fromkeys(line.solver for line in summary))
    figures = _make_figures(output_dir, rows, figures_per_operator, solver_order)
    uncertainty_body, uncertainty_notes = _uncertainty_section(rows)
    reliability = _reliability_figures(output_dir, table, rows) if uncertainty_body else []
    speed_quality = _speed_quality_figures(output_dir, summary)
    runs = read_runs(output_dir)
    failures = _failure_rows(rows)
    summary_body = [_summary_cells(line) for line in summary]
    comparison_body = [line.cells() for line in versus_best_classical(rows)]
    position_header, position_body, position_comparison = [], [], []
    if has_thirds(rows):
        position_header, position_body = _position_table(rows)
        position_comparison = [line.cells() for line in versus_best_classical_by_third(rows)]
    volume_slices = _ok_slice_rows(rows, SliceTable(table).read())
    volume_header, volume_body, volume_comparison = [], [], []
    if volume_slices:
        volume_header, volume_body = _position_table(volume_slices)
        volume_comparison = [
            line.cells(share=True) for line in versus_best_classical_by_slice(rows, volume_slices)
        ]
    failure_header = ("dataset", "case", "operator", "solver", "seed", "error")
    n_failed = len(rows) - counts.get(STATUS_OK, 0)
    status_text = (
        f"{len(rows)} result rows: {counts.get(STATUS_OK, 0)} ok, {n_failed} failed; "
        f"{counts['cases']} cases, {counts['failed_cases']} with at least one failure."
    )
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")

    md = [
        f"# {title}",
        "",
        f"Generated {generated} from `{RESULTS_FILE}`.",
        "",
        "## Status",
        "",
        status_text,
        "",
        "## Summary",
        "",
        _markdown_table(SUMMARY_HEADER, summary_body) if summary_body else "(no rows)",
        "",
    ]
    if comparison_body:
        md += [
            "## Latent priors vs the best classical baseline",
            "",
            COMPARISON_NOTE,
            "",
            _markdown_table(COMPARISON_HEADER, comparison_body),
            "",
        ]
    if position_body:
        md += [
            "## By position",
            "",
            POSITION_NOTE,
            "",
            _markdown_table(position_header, position_body),
            "",
        ]
        if position_comparison:
            md += [
                "### Latent priors vs the best classical baseline, by third",
                "",
                POSITION_COMPARISON_NOTE,
                "",
                _markdown_table(COMPARISON_BY_THIRD_HEADER, position_comparison),
                "",
            ]
    if volume_body:
        md += [
            "## Volumes, slice by slice",
            "",
            VOLUME_SLICES_NOTE,
            "",
            _markdown_table(volume_header, volume_body),
            "",
        ]
        if volume_comparison:
            md += [
                "### Latent priors vs the best classical baseline, slice by slice",
                "",
                VOLUME_SLICES_COMPARISON_NOTE,
                "",
                _markdown_table(COMPARISON_BY_SLICE_HEADER, volume_comparison),
                "",
            ]
    if uncertainty_body:
        md += [
            "## Uncertainty (latent solvers)",
            "",
            _markdown_table(UNCERTAINTY_HEADER, uncertainty_body),
            "",
            *[f"- {note}" for note in uncertainty_notes],
            "",
        ]
        for label, path in reliability:
            md += [
                f"### Reliability: {label}",
                "",
                f"![reliability {label}]({path.relative_to(output_dir).as_posix()})",
                "",
            ]
        md += [UNCERTAINTY_CONVENTION, ""]
    if speed_quality:
        md += ["## Speed and quality", "", SPEED_QUALITY_NOTE, ""]
        for label, path in speed_quality:
            md += [f"![speed and quality {label}]({path.relative_to(output_dir).as_posix()})", ""]
    md += [
        "## Metric convention",
        "",
        METRIC_CONVENTION,
        "",
        BENCH_NOTES,
        "",
    ]
    if failures:
        md += ["## Failures", "", _markdown_table(failure_header, failures), ""]
        if n_failed > len(failures):
            md += [f"({n_failed - len(failures)} more in {RESULTS_FILE})", ""]
    md += ["## Figures", ""]
    for arrays, path in figures:
        relative = path.relative_to(output_dir).as_posix()
        md += [
            f"### {arrays.dataset} / {arrays.case} / {arrays.operator} (seed {arrays.seed})",
            "",
            f"![{arrays.case} {arrays.operator}]({relative})",
            "",
        ]
    md += ["## Runs", "", "The command lines and configs that produced these rows:", ""]
    for run in runs:
        md += [f"- `{run.get('command', '')}`", ""]
        md += ["```yaml", _run_text(run).rstrip(), "```", ""]

    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {generated} from <code>{RESULTS_FILE}</code>.</p>",
        "<h2>Status</h2>",
        f"<p>{html.escape(status_text)}</p>",
        "<h2>Summary</h2>",
        _html_table(SUMMARY_HEADER, summary_body),
    ]
    if comparison_body:
        body += _html_section(
            "h2",
            "Latent priors vs the best classical baseline",
            COMPARISON_NOTE,
            COMPARISON_HEADER,
            comparison_body,
        )
    if position_body:
        body += _html_section("h2", "By position", POSITION_NOTE, position_header, position_body)
        if position_comparison:
            body += _html_section(
                "h3",
                "Latent priors vs the best classical baseline, by third",
                POSITION_COMPARISON_NOTE,
                COMPARISON_BY_THIRD_HEADER,
                position_comparison,
            )
    if volume_body:
        body += _html_section(
            "h2", "Volumes, slice by slice", VOLUME_SLICES_NOTE, volume_header, volume_body
        )
        if volume_comparison:
            body += _html_section(
                "h3",
                "Latent priors vs the best classical baseline, slice by slice",
                VOLUME_SLICES_COMPARISON_NOTE,
                COMPARISON_BY_SLICE_HEADER,
                volume_comparison,
            )
    if uncertainty_body:
        body += [
            "<h2>Uncertainty (latent solvers)</h2>",
            _html_table(UNCERTAINTY_HEADER, uncertainty_body),
            "<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in uncertainty_notes) + "</ul>",
        ]
        for label, path in reliability:
            body += [
                f"<h3>Reliability: {html.escape(label)}</h3>",
                _embedded_png(path, f"reliability {label}"),
            ]
        body += [f"<p>{html.escape(UNCERTAINTY_CONVENTION)}</p>"]
    if speed_quality:
        body += ["<h2>Speed and quality</h2>", f"<p>{html.escape(SPEED_QUALITY_NOTE)}</p>"]
        body += [_embedded_png(path, f"speed and quality {label}") for label, path in speed_quality]
    body += [
        "<h2>Metric convention</h2>",
        f"<p>{html.escape(METRIC_CONVENTION)}</p>",
        f"<p>{html.escape(BENCH_NOTES)}</p>",
    ]
    if failures:
        body += ["<h2>Failures</h2>", _html_table(failure_header, failures)]
    body += ["<h2>Figures</h2>"]
    for arrays, path in figures:
        label = f"{arrays.dataset} / {arrays.case} / {arrays.operator} (seed {arrays.seed})"
        body += [f"<h3>{html.escape(label)}</h3>", _embedded_png(path, label)]
    body += ["<h2>Runs</h2>"]
    for run in runs:
        body += [
            f"<p><code>{html.escape(str(run.get('command', '')))}</code></p>",
            f"<details><summary>config</summary><pre>{html.escape(_run_text(run))}</pre></details>",
        ]
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    md_path = atomic_write_text(output_dir / "report.md", "\n".join(md), overwrite=True)
    html_path = atomic_write_text(output_dir / "report.html", page, overwrite=True)
    return md_path, html_path
