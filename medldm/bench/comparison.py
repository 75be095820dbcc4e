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

Example
-------
>>> rows = [{"dataset": "d", "operator": "mri_4x", "solver": s, "case": c, "seed": "0",
...          "status": "ok", "psnr": p, "ssim": "0.9", "nfe": n}
...         for c in ("a", "b") for s, p, n in (("tv", 30, 0), ("cg", 28, 0),
...                                              ("latent_dds", 31, 100))]
>>> line = versus_best_classical(rows)[0]
>>> line.classical, line.latent, line.n_pairs, line.psnr_gain, line.wins
('tv', 'latent_dds', 2, 1.0, 2)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from medldm.bench.results import STATUS_OK

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

    def cells(self) -> list[str]:
        low, high = self.psnr_ci
        interval = "" if math.isnan(low) else f" ({low:+.2f}, {high:+.2f})"
        return [
            self.dataset,
            self.operator,
            self.latent,
            self.classical,
            str(self.n_pairs),
            f"{self.psnr_gain:+.2f}{interval}",
            f"{self.ssim_gain:+.4f}",
            f"{self.wins} / {self.n_pairs}",
        ]


def _value(text: object) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def _is_latent(rows: Sequence[Mapping[str, str]]) -> bool:
    return any(_value(r.get("nfe")) > 0 for r in rows)


def versus_best_classical(rows: Sequence[Mapping[str, object]]) -> list[ComparisonLine]:
    """The comparison lines of a results table (rows as read from ``results.csv``)."""
    groups: dict[tuple[str, str], dict[str, dict[tuple[str, str], Mapping]]] = {}
    for row in rows:
        if row.get("status") != STATUS_OK or math.isnan(_value(row.get("psnr"))):
            continue
        key = (str(row["dataset"]), str(row["operator"]))
        pair = (str(row["case"]), str(row["seed"]))
        groups.setdefault(key, {}).setdefault(str(row["solver"]), {})[pair] = row
    lines = []
    for (dataset, operator), solvers in groups.items():
        latent = [s for s, r in solvers.items() if _is_latent(list(r.values()))]
        classical = [s for s in solvers if s not in latent]
        if not latent or not classical:
            continue
        common = set.intersection(*(set(solvers[s]) for s in solvers))
        if not common:
            continue
        pairs = sorted(common)
        psnr = {s: _metric(r, pairs, "psnr") for s, r in solvers.items()}
        ssim = {s: _metric(r, pairs, "ssim") for s, r in solvers.items()}
        best = max(classical, key=lambda s: float(np.mean(psnr[s])))
        for solver in latent:
            gain = psnr[solver] - psnr[best]
            lines.append(
                ComparisonLine(
                    dataset,
                    operator,
                    solver,
                    best,
                    len(pairs),
                    float(gain.mean()),
                    _interval(gain),
                    float(np.nanmean(ssim[solver] - ssim[best])),
                    int((gain > 0).sum()),
                )
            )
    return lines


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
