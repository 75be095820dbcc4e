"""Load: 200 2D reconstructions in one process run with flat memory (benchmarks/
recon_memory.py; the full measurement with every run folder written is in the notes)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import recon_memory


def test_200_case_batch_runs_with_flat_memory():
    numbers = recon_memory.run(cases=200, prior_name=None, write_every=20, steps=1)
    print({k: v for k, v in numbers.items() if k != "rss_mb"})
    assert numbers["cases"] == 200 and len(numbers["rss_mb"]) == 200
    assert numbers["growth_mb_after_warmup"] < 40
    assert abs(numbers["slope_mb_per_100_cases_second_half"]) < 10
