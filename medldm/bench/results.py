"""The results table ``results.csv``: one row per (dataset, case, operator, solver, seed).

Rows are appended as they finish, each write flushed and ``fsync``-ed, so a crash loses
at most the row being computed. Every write happens under an exclusive ``fcntl`` lock on
``results.csv.lock``, so several processes (Hydra multirun jobs under the joblib
launcher) can share one file: the header is written exactly once, rows never interleave,
and a key already recorded as ``ok`` by another process is not written twice. A key
recorded as ``failed`` is retried by the next run; its new row *replaces* the failed one
(the file is rewritten atomically), so the table never holds two rows for one key.

Beside it, ``reliability.jsonl`` (:class:`ReliabilityLog`, same lock) keeps for every ``ok``
latent-solver row the sums of its error-vs-std reliability curve on fixed std bins
(:func:`medldm.metrics.uncertainty.reliability_curve`), from which the report pools a
curve per dataset x operator x solver.

And ``slices.csv`` (:class:`SliceTable`, same lock): for every ``ok`` row of a 3D case
(a whole volume), one row per slice of its ground truth's foreground extent with that
slice's scores (:data:`SLICE_COLUMNS`). A volume's slice rows are written together, just
before its results row and under the same lock, replacing any earlier slice rows of that
row's key (a run that stopped between the two), so the file never holds a slice twice and
a rerun that skips the volume's ``ok`` row adds none.

Example
-------
>>> import tempfile, pathlib
>>> table = ResultsTable(pathlib.Path(tempfile.mkdtemp()) / "results.csv")
>>> row = {"dataset": "d", "case": "c", "operator": "mri_4x", "solver": "tv", "seed": 0,
...        "status": "ok", "psnr": 31.25}
>>> table.append(row), table.append(row)  # the second is a duplicate: not written
(True, False)
>>> [r["psnr"] for r in table.read()], table.completed_keys()
(['31.25'], {('d', 'c', 'mri_4x', 'tv', '0')})
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from medldm.utils.files import atomic_write_text

#: Columns of results.csv, in order. Units: psnr in dB, seconds of wall time,
#: peak_mem_mb in MiB (see medldm.utils.memory), residual = ||A x - y|| / ||y||;
#: solver_preset names the configs/solver/ file used (e.g. tv_mri_4x); config_digest
#: fingerprints the physics and solver preset files (see medldm.problems.configs.preset_digest)
#: and, for latent solvers, the prior's weight files
#: (medldm.problems.calibration.prior_fingerprint).
#: Latent solver rows (posterior samples and std) also fill the uncertainty columns
#: (medldm.metrics.UNCERTAINTY_CONVENTION; empty for classical rows): coverage_50/90 of
#: estimate +- z std, coverage_50/90_samples of the samples' quantile interval,
#: std_error_spearman, and, when a calibration file matches the solver preset, operator,
#: prior and K (medldm.problems.calibration), coverage_50/90_calibrated and std_calibration
#: (which fit was applied).
#: Cases sampled over a volume's foreground extent (data.slice_sampling=foreground) fill
#: position (0 = inferior end of the extent, 1 = superior end, RAS+) and third ("inferior",
#: "middle", "superior"); other rows leave them empty, and a table from before these
#: columns reads back with neither (``row.get("third")`` is None).
COLUMNS = (
    "dataset",
    "case",
    "operator",
    "solver",
    "seed",
    "status",
    "psnr",
    "ssim",
    "nmse",
    "nfe",
    "seconds",
    "peak_mem_mb",
    "iterations",
    "residual",
    "residual_over_noise",
    "coverage_50",
    "coverage_90",
    "coverage_50_samples",
    "coverage_90_samples",
    "std_error_spearman",
    "coverage_50_calibrated",
    "coverage_90_calibrated",
    "std_calibration",
    "data_range",
    "roi",
    "solver_preset",
    "config_digest",
    "shape",
    "position",
    "third",
    "device",
    "precision",
    "finished_at",
    "error",
)
KEY_COLUMNS = ("dataset", "case", "operator", "solver", "seed")
STATUS_OK = "ok"
STATUS_FAILED = "failed"
#: The reliability-curve sums of the latent rows, beside results.csv.
RELIABILITY_FILE = "reliability.jsonl"
#: The per-slice scores of whole-volume rows, beside results.csv.
SLICES_FILE = "slices.csv"
#: Columns of slices.csv: the key of the volume's results row, the slice (its index along
#: axis 0 of the case's stack, the axial slices for IXI volumes), its position in the
#: ground truth's foreground extent (0 = inferior end, 1 = superior end) and third, PSNR
#: (dB) and SSIM of that 2D slice with the volume's data_range (the results row's), over
#: the row's roi (the volume's foreground mask, sliced, for roi=foreground).
SLICE_COLUMNS = (
    *KEY_COLUMNS,
    "slice",
    "position",
    "third",
    "psnr",
    "ssim",
    "data_range",
    "roi",
)

ResultKey = tuple[str, str, str, str, str]


#: Lock files this thread already holds (the lock is re-entrant within a thread).
_HELD = threading.local()


def row_key(row: Mapping[str, Any]) -> ResultKey:
    """The identity of a row, as strings (the way it reads back from the CSV)."""
    return tuple(str(row[c]) for c in KEY_COLUMNS)  # type: ignore[return-value]


def format_value(value: Any) -> str:
    """CSV text of a value: floats with 8 significant digits, None as empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".8g")
    return str(value)


class ResultsTable:
    """Locked, append-only access to one ``results.csv``.

    Parameters
    ----------
    path:
        The CSV file; its folder is created when needed.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the table's exclusive lock (blocks until other processes release it).

        Re-entrant within one thread: reading the table while holding the lock (as the
        report writer does) does not deadlock.
        """
        held: set[str] = getattr(_HELD, "paths", set())
        _HELD.paths = held
        key = str(self.lock_path.resolve())
        if key in held:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_unlocked(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return list(COLUMNS), []
        with open(self.path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = [dict(r) for r in reader]
            return list(reader.fieldnames or COLUMNS), rows

    def read(self) -> list[dict[str, str]]:
        """All rows as dicts of strings (empty when the file does not exist)."""
        with self.locked():
            return self._read_unlocked()[1]

    def completed_keys(self) -> set[ResultKey]:
        """Keys of the rows with status ``ok`` (a rerun skips them)."""
        return set(self.completed_rows())

    def completed_rows(self) -> dict[ResultKey, dict[str, str]]:
        """The rows with status ``ok``, by key."""
        return {row_key(r): r for r in self.read() if r.get("status") == STATUS_OK}

    def append(self, row: Mapping[str, Any]) -> bool:
        """Write one row; False (nothing written) when its key is already ``ok``.

        A previous ``failed`` row of the same key is replaced by this one.
        """
        values = {column: format_value(value) for column, value in row.items()}
        key = row_key(values)
        with self.locked():
            header, rows = self._read_unlocked()
            new_columns = [c for c in COLUMNS if c in values and c not in header]
            if new_columns and rows:  # a table from an older medldm: extend its header
                header += new_columns
                atomic_write_text(self.path, _to_csv(header, rows), overwrite=True)
            same_key = [r for r in rows if row_key(r) == key]
            if any(r.get("status") == STATUS_OK for r in same_key):
                return False
            if same_key:
                kept = [r for r in rows if row_key(r) != key] + [values]
                atomic_write_text(self.path, _to_csv(header, kept), overwrite=True)
                return True
            new_file = not rows and (not self.path.exists() or self.path.stat().st_size == 0)
            text = _to_csv(header, [values]) if new_file else _to_csv(header, [values], False)
            with open(self.path, "a", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            return True


class ReliabilityLog:
    """``reliability.jsonl`` beside a results table: one JSON line per ``ok`` latent row,
    ``{"key": [dataset, case, operator, solver, seed], "curve": {...}}`` with the curve's
    :meth:`~medldm.metrics.uncertainty.ReliabilityCurve.to_dict`; written under the
    table's lock. A key written twice (a recomputed row) reads back as its last line.
    """

    def __init__(self, table: ResultsTable):
        self.table = table
        self.path = table.path.with_name(RELIABILITY_FILE)

    def append(self, row: Mapping[str, Any], curve: Mapping[str, Any]) -> None:
        """Record the curve of one row (its key columns are taken from ``row``)."""
        line = json.dumps({"key": list(row_key(row)), "curve": dict(curve)}) + "\n"
        with self.table.locked(), open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def read(self) -> dict[ResultKey, dict[str, Any]]:
        """The curves by row key (unreadable lines, e.g. a torn last line, are skipped)."""
        if not self.path.is_file():
            return {}
        curves: dict[ResultKey, dict[str, Any]] = {}
        with self.table.locked():
            text = self.path.read_text(encoding="utf-8")
        for line in text.splitlines():
            try:
                item = json.loads(line)
                curves[tuple(str(k) for k in item["key"])] = dict(item["curve"])  # type: ignore[index]
            except (ValueError, KeyError, TypeError):
                continue
        return curves


class SliceTable:
    """``slices.csv`` beside a results table (module docstring), written under the
    table's lock.

    Example
    -------
    >>> import tempfile, pathlib
    >>> slices = SliceTable(ResultsTable(pathlib.Path(tempfile.mkdtemp()) / "results.csv"))
    >>> volume = {"dataset": "d", "case": "v", "operator": "mri_4x", "solver": "tv", "seed": 0}
    >>> rows = [{"slice": k, "position": k / 2, "third": t, "psnr": 30.0 + k, "ssim": 0.9}
    ...         for k, t in enumerate(("inferior", "middle", "superior"))]
    >>> slices.replace(volume, rows); slices.replace(volume, rows)  # the same volume again
    >>> [(r["slice"], r["third"], r["psnr"]) for r in slices.read()]
    [('0', 'inferior', '30'), ('1', 'middle', '31'), ('2', 'superior', '32')]
    """

    def __init__(self, table: ResultsTable):
        self.table = table
        self.path = table.path.with_name(SLICES_FILE)

    def replace(self, volume: Mapping[str, Any], slices: list[Mapping[str, Any]]) -> None:
        """Write the slice rows of the volume row ``volume`` (its key columns are taken
        from it), in place of any earlier slice rows of that key."""
        key = row_key(volume)
        labels = dict(zip(KEY_COLUMNS, key, strict=True))
        new = [
            {**labels, **{c: format_value(v) for c, v in row.items() if c not in labels}}
            for row in slices
        ]
        header = list(SLICE_COLUMNS)
        with self.table.locked():
            rows = self._read_unlocked()
            if any(row_key(r) == key for r in rows):
                kept = [r for r in rows if row_key(r) != key] + new
                atomic_write_text(self.path, _to_csv(header, kept), overwrite=True)
                return
            if not new:
                return
            new_file = not self.path.exists() or self.path.stat().st_size == 0
            with open(self.path, "a", encoding="utf-8", newline="") as handle:
                handle.write(_to_csv(header, new, with_header=new_file))
                handle.flush()
                os.fsync(handle.fileno())

    def _read_unlocked(self) -> list[dict[str, str]]:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return [dict(r) for r in csv.DictReader(handle)]

    def read(self) -> list[dict[str, str]]:
        """All slice rows as dicts of strings (empty when the file does not exist)."""
        with self.table.locked():
            return self._read_unlocked()


def _to_csv(header: list[str], rows: list[Mapping[str, str]], with_header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", lineterminator="\n")
    if with_header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
