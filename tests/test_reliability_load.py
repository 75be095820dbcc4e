"""Load: 120 2D reconstructions in one process run with flat memory (benchmarks/
recon_memory.py, which runs 200 by default; the full measurement with every run folder
written is in the notes). 120 keeps the suite inside its 10 minutes: 100 cases after the
20 of warm-up, the slope fitted over the last 60."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import recon_memory


def test_120_case_batch_runs_with_flat_memory():
    numbers = recon_memory.run(cases=120, prior_name=None, write_every=20, steps=1)
    print({k: v for k, v in numbers.items() if k != "rss_mb"})
    assert numbers["cases"] == 120 and len(numbers["rss_mb"]) == 120
    assert numbers["growth_mb_after_warmup"] < 40
    assert abs(numbers["slope_mb_per_100_cases_second_half"]) < 10
