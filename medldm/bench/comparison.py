"""Each latent solver against the best classical baseline, paired case by case.

"The prior beats classical reconstruction" is a claim about paired differences: the same
case, operator and seed reconstructed by both. For every dataset x operator, the *best
classical* solver is the one with the highest mean PSNR over the cases that every solver
of the group finished (solvers whose rows have ``nfe == 0``; ``zero_filled`` is a solver
like any other). Choosing it on the very cases it is compared on favours the classical
side, so a latent solver that wins here wins against the strongest baseline available.
Each latent solver (``nfe > 0``) then gets the mean paired PSNR and SSIM difference, a 95 %
confidence interval of the mean PSNR difference (Student t over the pairs), and the
number of pairs it wins.

When the rows carry the ``third`` of the foreground extent their slice lies in (whole-head
sampling, :mod:`medldm.problems.model_view`), :func:`versus_best_classical_by_third` splits
each line by third: the same latent solver minus the *same* best classical solver (chosen
on all the group's pairs, so the thirds decompose the overall line), over the pairs of
that third, with its own paired 95 % CI.

Whole volumes (``slices.csv``, :class:`~medldm.bench.results.SliceTable`) are compared
slice by slice by :func:`versus_best_classical_by_slice`: the best classical solver is
chosen as above on the *volume* rows (highest mean volume PSNR over the volumes every
solver finished), then each latent solver minus it over the pairs (volume, seed, slice)
of the foreground extents, over all of them (third ``"all"``) and per third. Slices of
one volume are not independent draws, so that CI is narrower than one over volumes.

Example
-------
>>> rows = [{"dataset": "d", "operator": "mri_4x", "solver": s, "case": c, "seed": "0",
...          "status": "ok", "psnr": p, "ssim": "0.9", "nfe": n}
...         for c in ("a", "b") for s, p, n in (("tv", 30, 0), ("cg", 28, 0),
...                                              ("latent_dds", 31, 100))]
>>> line = versus_best_classical(rows)[0]
>>> line.classical, line.latent, line.n_pairs, line.psnr_gain, line.wins
('tv', 'latent_dds', 2, 1.0, 2)
>>> for row in rows:
...     row["third"] = "inferior" if row["case"] == "a" else "superior"
>>> [(t.third, t.n_pairs, t.psnr_gain) for t in versus_best_classical_by_third(rows)]
[('inferior', 1, 1.0), ('superior', 1, 1.0)]
>>> slices = [{"dataset": "d", "operator": "mri_4x", "solver": s, "case": "a", "seed": "0",
...            "slice": str(k), "position": str(k / 2), "third": t, "psnr": p + k,
...            "ssim": "0.9"} for s, p in (("tv", 30), ("latent_dds", 29))
...           for k, t in enumerate(("inferior", "middle", "superior"))]
>>> slices[-1]["psnr"] = 35  # latent_dds on the superior slice
>>> [(t.third, t.n_pairs, t.psnr_gain, t.wins)
...  for t in versus_best_classical_by_slice(rows, slices)]  # doctest: +NORMALIZE_WHITESPACE
[('all', 3, 0.3333333333333333, 1), ('inferior', 1, -1.0, 0), ('middle', 1, -1.0, 0),
 ('superior', 1, 3.0, 1)]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from medldm.bench.results import STATUS_OK
from medldm.bench.summary import third_order

HEADER = (
    "dataset",
    "operator",
    "latent solver",
    "best classical",
    "pairs",
    "ΔPSNR dB (95 % CI)",
    "ΔSSIM",
    "latent wins",
)
#: Columns of the by-third comparison: :data:`HEADER` with the third after the operator.
BY_THIRD_HEADER = (*HEADER[:2], "third", *HEADER[2:])
#: The third of the slice-by-slice lines over all the slices of the foreground extents.
ALL_SLICES = "all"
#: Columns of the slice-by-slice comparison of whole volumes (cells with ``share=True``).
BY_SLICE_HEADER = (
    *HEADER[:2],
    "slices",
    *HEADER[2:4],
    "slice pairs",
    "ΔPSNR dB (95 % CI)",
    "ΔSSIM",
    "latent wins (share)",
)


@dataclass(frozen=True)
class ComparisonLine:
    """One latent solver against the best classical solver of its dataset x operator."""

    dataset: str
    operator: str
    latent: str
    classical: str
    n_pairs: int
    psnr_gain: float  # mean of latent - classical, dB
    psnr_ci: tuple[float, float]  # 95 % CI of that mean (nan for a single pair)
    ssim_gain: float
    wins: int  # pairs where the latent PSNR is higher
    third: str = ""  # the third of the foreground extent the pairs are in ("": all pairs)

    def cells(self, share: bool = False) -> list[str]:
        """Table cells (:data:`HEADER`; :data:`BY_THIRD_HEADER` for a line of one third);
        ``share`` adds the share of pairs won to the wins cell (:data:`BY_SLICE_HEADER`)."""
        low, high = self.psnr_ci
        interval = "" if math.isnan(low) else f" ({low:+.2f}, {high:+.2f})"
        wins = f"{self.wins} / {self.n_pairs}"
        if share and self.n_pairs:
            wins += f" ({self.wins / self.n_pairs:.0%})"
        return [
            self.dataset,
            self.operator,
            *([self.third] if self.third else []),
            self.latent,
            self.classical,
            str(self.n_pairs),
            f"{self.psnr_gain:+.2f}{interval}",
            f"{self.ssim_gain:+.4f}",
            wins,
        ]


def _value(text: object) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _is_latent(rows: Sequence[Mapping[str, str]]) -> bool:
    return any(_value(r.get("nfe")) > 0 for r in rows)


@dataclass(frozen=True)
class _Group:
    """The paired rows of one dataset x operator: its solvers' rows on the common pairs."""

    dataset: str
    operator: str
    latent: list[str]
    best: str
    pairs: list[tuple[str, ...]]  # (case, seed) every solver finished
    rows: dict[str, dict[tuple[str, ...], Mapping]]  # solver -> pair -> row


def _groups(rows: Sequence[Mapping[str, object]]) -> list[_Group]:
    """Each dataset x operator with latent and classical solvers and common pairs, with
    its best classical solver (highest mean PSNR over those pairs)."""
    by_key: dict[tuple[str, str], dict[str, dict[tuple[str, str], Mapping]]] = {}
    for row in rows:
        if row.get("status") != STATUS_OK or math.isnan(_value(row.get("psnr"))):
            continue
        key = (str(row["dataset"]), str(row["operator"]))
        pair = (str(row["case"]), str(row["seed"]))
        by_key.setdefault(key, {}).setdefault(str(row["solver"]), {})[pair] = row
    groups = []
    for (dataset, operator), solvers in by_key.items():
        latent = [s for s, r in solvers.items() if _is_latent(list(r.values()))]
        classical = [s for s in solvers if s not in latent]
        if not latent or not classical:
            continue
        common = set.intersection(*(set(solvers[s]) for s in solvers))
        if not common:
            continue
        pairs = sorted(common)
        best = max(classical, key=lambda s: float(np.mean(_metric(solvers[s], pairs, "psnr"))))
        groups.append(_Group(dataset, operator, latent, best, pairs, solvers))
    return groups


def _line(group: _Group, solver: str, pairs: list[tuple[str, ...]], third: str = ""):
    """``solver`` minus the group's best classical solver over ``pairs``."""
    latent, best = group.rows[solver], group.rows[group.best]
    gain = _metric(latent, pairs, "psnr") - _metric(best, pairs, "psnr")
    ssim_gain = _metric(latent, pairs, "ssim") - _metric(best, pairs, "ssim")
    return ComparisonLine(
        group.dataset,
        group.operator,
        solver,
        group.best,
        len(pairs),
        float(gain.mean()),
        _interval(gain),
        float(np.nanmean(ssim_gain)),
        int((gain > 0).sum()),
        third,
    )


def versus_best_classical(rows: Sequence[Mapping[str, object]]) -> list[ComparisonLine]:
    """The comparison lines of a results table (rows as read from ``results.csv``)."""
    return [_line(g, solver, g.pairs) for g in _groups(rows) for solver in g.latent]


def versus_best_classical_by_third(rows: Sequence[Mapping[str, object]]) -> list[ComparisonLine]:
    """The comparison lines split by the ``third`` of the foreground extent (module
    docstring); pairs without a third are left out, thirds ordered inferior first.
    Empty when no row carries a third."""
    order = third_order(rows)  # type: ignore[arg-type]
    lines = []
    for group in _groups(rows):
        by_third = _by_third(group, group.pairs, order)
        for solver in group.latent:
            lines += [_line(group, solver, pairs, third) for third, pairs in by_third]
    return lines


def versus_best_classical_by_slice(
    rows: Sequence[Mapping[str, object]], slice_rows: Sequence[Mapping[str, object]]
) -> list[ComparisonLine]:
    """Slice-by-slice comparison lines of whole volumes (module docstring): ``rows`` as
    read from ``results.csv``, ``slice_rows`` from ``slices.csv``. Per dataset x operator
    x latent solver, a line over all the slices (third :data:`ALL_SLICES`), then one per
    third, inferior first; ``n_pairs`` and ``wins`` count slices. Slice rows of volume
    rows that are not ``ok`` are left out; empty without slice rows."""
    volumes = {(str(r.get("dataset")), str(r.get("case"))) for r in slice_rows}
    volume_rows = [r for r in rows if (str(r.get("dataset")), str(r.get("case"))) in volumes]
    # slices.csv has no status: its rows are scores of ok volume rows
    order = third_order([{**r, "status": STATUS_OK} for r in slice_rows])  # type: ignore[arg-type]
    lines = []
    for group in _groups(volume_rows):
        volume_pairs = set(group.pairs)
        by_solver: dict[str, dict[tuple[str, ...], Mapping]] = {}
        for row in slice_rows:
            pair = (str(row.get("case")), str(row.get("seed")))
            if (
                (str(row.get("dataset")), str(row.get("operator")))
                != (group.dataset, group.operator)
                or pair not in volume_pairs
                or not math.isfinite(_value(row.get("psnr")))
            ):
                continue
            by_solver.setdefault(str(row.get("solver")), {})[(*pair, str(row.get("slice")))] = row
        best = by_solver.get(group.best, {})
        for solver in group.latent:
            latent = by_solver.get(solver, {})
            pairs = sorted(set(best) & set(latent), key=lambda p: (p[0], p[1], int(p[2])))
            if not pairs:
                continue
            sliced = dataclasses.replace(
                group, pairs=pairs, rows={solver: latent, group.best: best}
            )
            lines.append(_line(sliced, solver, pairs, ALL_SLICES))
            lines += [
                _line(sliced, solver, part, third)
                for third, part in _by_third(sliced, pairs, order)
            ]
    return lines


def _by_third(
    group: _Group, pairs: list[tuple[str, ...]], order: list[str]
) -> list[tuple[str, list[tuple[str, ...]]]]:
    """``pairs`` split by the ``third`` of the best classical solver's row of each (pairs
    without one left out), thirds in ``order`` (others last)."""
    by_third: dict[str, list[tuple[str, ...]]] = {}
    for pair in pairs:
        third = str(group.rows[group.best][pair].get("third") or "")
        if third:
            by_third.setdefault(third, []).append(pair)
    rank = {third: i for i, third in enumerate(order)}
    return [(t, by_third[t]) for t in sorted(by_third, key=lambda t: rank.get(t, len(rank)))]


def _metric(rows: Mapping[tuple[str, str], Mapping], pairs: list, name: str) -> np.ndarray:
    return np.array([_value(rows[p].get(name)) for p in pairs])


def _interval(differences: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean of paired differences."""
    n = differences.size
    if n < 2:
        return (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * differences.std(ddof=1) / math.sqrt(n)
    mean = float(differences.mean())
    return (mean - float(half), mean + float(half))
