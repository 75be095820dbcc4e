"""The summary table of a results file: mean +- std per dataset x operator x solver.

Means and standard deviations are over every ``ok`` row of a group, i.e. over cases and
seeds together; the standard deviation is the sample one (``ddof=1``; 0 for one row).
``failed`` counts the group's failed rows. Rows read back as strings from the CSV.

Rows of slices sampled over a volume's foreground extent carry a ``third`` ("inferior",
"middle", "superior") and a ``position`` (0-1); :func:`summarise_by_third` gives the
mean PSNR and SSIM of each third per dataset x operator x solver (the report's "By
position" section), and :func:`third_order` orders the thirds by their mean position.

Example
-------
>>> rows = [{"dataset": "d", "operator": "mri_4x", "solver": "tv", "status": "ok",
...          "psnr": p, "ssim": "0.9", "nmse": "0.01", "seconds": "2", "nfe": "0",
...          "peak_mem_mb": "5"} for p in ("30", "32")]
>>> line = summarise(rows)[0]
>>> line.n_ok, line.psnr.text(2)
(2, '31.00 ± 1.41')
>>> rows[0].update(third="inferior", position="0.0"); rows[1].update(third="superior", position="1")
>>> [(t.third, t.psnr.mean) for t in summarise_by_third(rows)]
[('inferior', 30.0), ('superior', 32.0)]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from medldm.bench.results import STATUS_OK


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of one metric over a group."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat:
        array = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
        if array.size == 0:
            return cls(math.nan, math.nan, 0)
        with np.errstate(invalid="ignore"):  # inf PSNR (a perfect estimate) has no spread
            std = float(array.std(ddof=1)) if array.size > 1 else 0.0
        return cls(float(array.mean()), std if math.isfinite(std) else math.nan, int(array.size))

    def text(self, digits: int = 2) -> str:
        """``"mean ± std"`` with ``digits`` decimals (``"-"`` when empty)."""
        if self.n == 0:
            return "-"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


@dataclass(frozen=True)
class SummaryLine:
    """One dataset x operator x solver group."""

    dataset: str
    operator: str
    solver: str
    n_ok: int
    n_failed: int
    psnr: Stat
    ssim: Stat
    nmse: Stat
    seconds: Stat
    nfe: Stat
    peak_mem_mb: Stat


def _number(text: str | float | None) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def summarise(rows: Iterable[Mapping[str, str]]) -> list[SummaryLine]:
    """Summary lines sorted by dataset, operator and solver (first-seen solver order)."""
    groups: dict[tuple[str, str, str], list[Mapping[str, str]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["operator"], row["solver"]), []).append(row)
    lines = []
    for (dataset, operator, solver), members in groups.items():
        ok = [r for r in members if r.get("status") == STATUS_OK]

        def stat(column: str, ok: list = ok) -> Stat:
            return Stat.of(_number(r.get(column)) for r in ok)

        lines.append(
            SummaryLine(
                dataset,
                operator,
                solver,
                len(ok),
                len(members) - len(ok),
                stat("psnr"),
                stat("ssim"),
                stat("nmse"),
                stat("seconds"),
                stat("nfe"),
                stat("peak_mem_mb"),
            )
        )
    order = {key: i for i, key in enumerate(groups)}
    return sorted(
        lines, key=lambda s: (s.dataset, s.operator, order[(s.dataset, s.operator, s.solver)])
    )


@dataclass(frozen=True)
class ThirdLine:
    """One third of the foreground extent within a dataset x operator x solver group
    (``ok`` rows only)."""

    dataset: str
    operator: str
    solver: str
    third: str
    psnr: Stat
    ssim: Stat


def has_thirds(rows: Iterable[Mapping[str, str]]) -> bool:
    """Whether any ``ok`` row carries a ``third`` (a table from before the column: no)."""
    return any(r.get("status") == STATUS_OK and r.get("third") for r in rows)


def third_order(rows: Iterable[Mapping[str, str]]) -> list[str]:
    """The thirds present in ``ok`` rows, by their mean ``position`` (inferior first; a
    third without positions counts as 0.5, ties by name)."""
    positions: dict[str, list[float]] = {}
    for row in rows:
        if row.get("status") == STATUS_OK and row.get("third"):
            positions.setdefault(str(row["third"]), []).append(_number(row.get("position")))

    def mean_position(third: str) -> float:
        known = [p for p in positions[third] if math.isfinite(p)]
        return float(np.mean(known)) if known else 0.5

    return sorted(positions, key=lambda third: (mean_position(third), third))


def summarise_by_third(rows: Iterable[Mapping[str, str]]) -> list[ThirdLine]:
    """Mean ± std of PSNR and SSIM per dataset x operator x solver x third, over the ``ok``
    rows that carry a third; sorted like :func:`summarise`, thirds inferior first."""
    rows = [r for r in rows if r.get("status") == STATUS_OK and r.get("third")]
    order = {third: i for i, third in enumerate(third_order(rows))}
    groups: dict[tuple[str, str, str], dict[str, list[Mapping[str, str]]]] = {}
    for row in rows:
        key = (row["dataset"], row["operator"], row["solver"])
        groups.setdefault(key, {}).setdefault(str(row["third"]), []).append(row)
    solver_rank = {key: i for i, key in enumerate(groups)}
    lines = [
        ThirdLine(
            dataset,
            operator,
            solver,
            third,
            Stat.of(_number(r.get("psnr")) for r in members),
            Stat.of(_number(r.get("ssim")) for r in members),
        )
        for (dataset, operator, solver), by_third in groups.items()
        for third, members in by_third.items()
    ]
    return sorted(
        lines,
        key=lambda t: (
            t.dataset,
            t.operator,
            solver_rank[(t.dataset, t.operator, t.solver)],
            order[t.third],
        ),
    )


def status_counts(rows: Iterable[Mapping[str, str]]) -> dict[str, int]:
    """Rows per status, plus ``cases`` (distinct dataset/case) and ``failed_cases``."""
    counts: dict[str, int] = {}
    cases, failed_cases = set(), set()
    for row in rows:
        status = row.get("status", "")
        counts[status] = counts.get(status, 0) + 1
        cases.add((row["dataset"], row["case"]))
        if status != STATUS_OK:
            failed_cases.add((row["dataset"], row["case"]))
    counts["cases"] = len(cases)
    counts["failed_cases"] = len(failed_cases)
    return counts
