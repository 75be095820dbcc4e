"""A solver's rows of a benchmark folder against the same rows of an earlier table, paired
case by case (same dataset, case, operator and seed): mean PSNR dB / SSIM and seconds of
each, the paired PSNR difference with its 95 % CI (Student t over the pairs: a few
volumes are few pairs), the SSIM change,
and the calibrated 90 % coverage of the new rows. The earlier table comes from git, e.g.
the LDM suite before the fast presets::

    git show 8834ecb:benchmarks/results/ldm/results.csv > /tmp/old.csv
    .venv/bin/python benchmarks/compare_rows.py /tmp/old.csv benchmarks/results/ldm
    git show 8834ecb:benchmarks/results/ldm_native/results.csv > /tmp/old_native.csv
    .venv/bin/python benchmarks/compare_rows.py /tmp/old_native.csv benchmarks/results/ldm_native

Seconds of the two tables come from different runs: not a side-by-side timing.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np
from scipy import stats


def ok_rows(path: Path, solver: str) -> dict[tuple[str, str, str, str], dict[str, str]]:
    with path.open() as handle:
        return {
            (r["dataset"], r["case"], r["operator"], r["seed"]): r
            for r in csv.DictReader(handle)
            if r["solver"] == solver and r["status"] == "ok"
        }


def column(rows: dict, keys: list, name: str) -> np.ndarray:
    return np.array([float(rows[k][name]) if rows[k].get(name) else math.nan for k in keys])


def mean(rows: dict, keys: list, name: str) -> float:
    return float(np.nanmean(column(rows, keys, name)))


def paired_half_width(differences: np.ndarray) -> float:
    """Half-width of the 95 % Student-t interval of the mean of paired differences.

    >>> round(paired_half_width(np.array([0.1, 0.2, 0.3])), 3)
    0.248
    """
    n = len(differences)
    if n < 2:
        return math.nan
    return float(stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / math.sqrt(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old_csv", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--solver", default="latent_dds")
    args = parser.parse_args()
    old = ok_rows(args.old_csv, args.solver)
    new = ok_rows(args.folder / "results.csv", args.solver)
    for operator in sorted({k[2] for k in old}):
        keys = [k for k in old if k[2] == operator and k in new]
        changed = [k for k in keys if old[k]["psnr"] != new[k]["psnr"]]
        if not changed:
            continue
        gain = column(new, keys, "psnr") - column(old, keys, "psnr")
        half = paired_half_width(gain)
        print(
            f"{operator}: n={len(keys)} old {mean(old, keys, 'psnr'):.2f} / "
            f"{mean(old, keys, 'ssim'):.4f} "
            f"({mean(old, keys, 'seconds'):.1f} s), new {mean(new, keys, 'psnr'):.2f} / "
            f"{mean(new, keys, 'ssim'):.4f} ({mean(new, keys, 'seconds'):.1f} s); new - old "
            f"{gain.mean():+.3f} dB (95 % CI {gain.mean() - half:+.3f}, "
            f"{gain.mean() + half:+.3f}), "
            f"SSIM {mean(new, keys, 'ssim') - mean(old, keys, 'ssim'):+.4f}; calibrated "
            f"coverage_90 of the "
            f"new rows {mean(new, keys, 'coverage_90_calibrated'):.3f}"
        )


if __name__ == "__main__":
    main()
