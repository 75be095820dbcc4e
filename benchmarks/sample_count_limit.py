"""What averaging more posterior samples can still give: the 1/n fit of whole-volume runs.

The mean of ``n`` independent posterior samples has the error of the posterior mean plus
``1/n`` of the posterior variance: ``mse(n) = M + V / n``. Fitted per part of the head to
the LDM's gain over the baseline at several sample counts (the mean over subjects of
``benchmarks/whole_volume.py``'s per-third PSNR gains, as an error ratio
``10^(-gain / 10)``), ``-10 log10(M)`` is the gain the preset's sampler would reach with
infinitely many samples: the most that more samples can give this prior.

Run::

    .venv/bin/python benchmarks/sample_count_limit.py \\
        benchmarks/results/whole_volume/samples_4x_test.json \\
        --json benchmarks/results/whole_volume/samples_4x_test_limit.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PARTS = ("all", "inferior", "middle", "superior")


def limit_gain(samples: list[int], gains_db: list[float]) -> tuple[float, float]:
    """``(gain at n -> infinity, largest misfit of the error ratio)`` of ``mse = M + V/n``
    fitted by least squares to gains (dB) at ``samples``.

    >>> M, V = 0.8, 0.2
    >>> gains = [-10 * np.log10(M + V / n) for n in (1, 2, 4)]
    >>> round(limit_gain([1, 2, 4], gains)[0], 3), round(float(-10 * np.log10(M)), 3)
    (0.969, 0.969)
    """
    if len(set(samples)) < 2:
        raise ValueError(f"the fit needs runs at two or more sample counts, got {samples}")
    n = np.asarray(samples, float)
    ratio = 10 ** (-np.asarray(gains_db, float) / 10)
    design = np.stack([np.ones_like(n), 1 / n], axis=1)
    (mean_error, variance), *_ = np.linalg.lstsq(design, ratio, rcond=None)
    misfit = float(np.abs(design @ np.array([mean_error, variance]) - ratio).max())
    if mean_error <= 0:
        raise ValueError("the fitted posterior-mean error is <= 0: the gains do not follow M + V/n")
    return float(-10 * np.log10(mean_error)), misfit


def summary(rows: list[dict]) -> dict:
    """Per part: the mean gain over subjects at each sample count and the fitted limit."""
    counts = sorted({r["n_samples"] for r in rows})
    result = {}
    for part in PARTS:
        gains = [
            float(np.mean([r["ldm_minus_tv"][part]["mean"] for r in rows if r["n_samples"] == n]))
            for n in counts
        ]
        limit, misfit = limit_gain(counts, gains)
        result[part] = {
            "gain_db": dict(zip(map(str, counts), np.round(gains, 3).tolist(), strict=True)),
            "limit_db": round(limit, 2),
            "misfit": round(misfit, 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="a benchmarks/whole_volume.py --json file")
    parser.add_argument("--json", type=Path, default=None, help="write the fit here too")
    args = parser.parse_args()
    result = summary(json.loads(args.runs.read_text())["rows"])
    if args.json:
        command = "python benchmarks/sample_count_limit.py " + " ".join(sys.argv[1:])
        args.json.write_text(json.dumps({"command": command, **result}, indent=2) + "\n")
    counts = list(result["all"]["gain_db"])
    print("| part | " + " | ".join(f"{n} samples" for n in counts) + " | n -> infinity |")
    print("|---" * (len(counts) + 2) + "|")
    for part, fit in result.items():
        cells = " | ".join(f"{g:+.2f}" for g in fit["gain_db"].values())
        print(f"| {part} | {cells} | {fit['limit_db']:+.2f} |")


if __name__ == "__main__":
    main()
