"""Fit a latent solver's steps and samples to a time budget (``time_budget=`` seconds).

The dry run's cost model (:mod:`medldm.recon.estimate`), ``a + b n``, measured on the
problem being solved by one probe run of 3 steps (at the preset's number of samples): the
solver's callback marks the end of each step, so the later steps give the time per step
``b`` and the rest of the run the fixed part ``a`` (the starting estimate, the final
data-consistency and TV steps; :func:`step_model`). The
samples are one batch in every network call, so ``b`` is taken proportional to them
(measured on CPU; a GPU runs a smaller batch at more than its share, so a GPU plan may
undershoot the budget, never overshoot it by much).

The settings tried, best first (:func:`budget_candidates`): the preset's steps and samples,
then fewer steps (down to :data:`MIN_STEPS`) at the preset's samples, then half the samples
and one sample with those steps. Fewer steps come first because steps cost far less
quality than samples: on the IXI test slices at MRI 4x, 4 samples score 26.59 dB with 8
DPM-Solver++ steps and 26.30 with 4, while 2 and 1 samples at 8 steps score 26.01 and
25.19 (``medldm-bench --config-name ldm_speed_quality``,
``benchmarks/results/ldm_speed_quality/report.md``). The first setting predicted to fit
in what is left of the budget is chosen; when none fits, the cheapest one runs and the plan says so.

Example
-------
>>> budget_candidates(20, 4)
[(20, 4), (12, 4), (8, 4), (5, 4), (12, 2), (8, 2), (5, 2), (12, 1), (8, 1), (5, 1)]
>>> def fake_probe(steps):  # 0.5 s fixed + 0.1 s per step at 4 samples
...     return 0.5 + 0.1 * steps, [0.3 + 0.1 * i for i in range(1, steps + 1)]
>>> plan = plan_for_budget(2.0, 0.0, 20, 4, fake_probe)  # 20 steps: 2.5 s; 12: 1.7 s
>>> (plan.n_steps, plan.n_samples, plan.fits)
(12, 4, True)
>>> cheap = plan_for_budget(0.5, 0.0, 20, 4, fake_probe)  # not even 5 steps x 1 sample
>>> (cheap.n_steps, cheap.n_samples, cheap.fits)
(5, 1, False)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: The fewest steps a budget may cut the solver to.
MIN_STEPS = 4
#: Steps tried, as fractions of the preset's (rounded; at least :data:`MIN_STEPS`).
STEP_FRACTIONS = (1.0, 0.6, 0.4, 0.25)
#: Outer-loop length of the one timed probe run.
PROBE_STEPS = 3


def budget_candidates(n_steps: int, n_samples: int) -> list[tuple[int, int]]:
    """``(steps, samples)`` settings from the preset's, best first (see the module)."""
    steps = list(
        dict.fromkeys(max(MIN_STEPS, round(n_steps * f)) for f in STEP_FRACTIONS if n_steps)
    )
    steps = [s for s in steps if s <= n_steps] or [n_steps]
    samples = list(dict.fromkeys(s for s in (n_samples, n_samples // 2, 1) if s >= 1))
    first = [(s, samples[0]) for s in steps]
    fewer = [(s, k) for k in samples[1:] for s in steps[1:] or steps]
    return first + fewer


@dataclass(frozen=True)
class BudgetPlan:
    """What a time budget chose, and the model it chose by (seconds)."""

    budget_seconds: float
    elapsed_before_seconds: float  # reading, model view, measurement, baseline
    probe_seconds: float
    fixed_seconds: float
    seconds_per_step: float  # at the preset's samples
    n_steps: int
    n_samples: int
    predicted_seconds: float  # of the LDM solver with the chosen setting
    fits: bool
    preset_steps: int
    preset_samples: int

    def describe(self) -> str:
        verdict = "fits" if self.fits else "does not fit: the cheapest setting runs"
        return (
            f"time budget {self.budget_seconds:.0f} s: {self.n_steps} steps x "
            f"{self.n_samples} samples (preset {self.preset_steps} x {self.preset_samples}), "
            f"LDM solver predicted {self.predicted_seconds:.1f} s = "
            f"{self.fixed_seconds:.1f} s + steps x {self.seconds_per_step:.3f} s x "
            f"samples / {self.preset_samples} ({verdict}; {self.elapsed_before_seconds:.1f} s "
            f"before the solver, probes {self.probe_seconds:.1f} s)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def predicted_seconds(
    fixed: float, per_step: float, probe_samples: int, n_steps: int, n_samples: int
) -> float:
    """``fixed + n_steps per_step n_samples / probe_samples`` (see the module)."""
    return fixed + n_steps * per_step * n_samples / max(probe_samples, 1)


def step_model(seconds: float, step_ends: Sequence[float]) -> tuple[float, float]:
    """``(fixed, per_step)`` seconds from one probe run: its wall time and the times (from
    its start) at which each outer step ended. The first step pays for building the
    kernels, so the time per step is the median of the later steps; the rest of the run is
    the fixed part (the starting estimate, the final data-consistency and TV or wavelet steps).

    >>> step_model(2.0, [1.0, 1.2, 1.4])  # 0.2 s per step, 1.4 s fixed
    (1.4, 0.2)
    """
    gaps = np.diff(np.asarray(step_ends, dtype=float))
    per_step = float(np.median(gaps)) if gaps.size else 0.0
    fixed = max(seconds - per_step * len(step_ends), 0.0)
    return round(fixed, 9), round(per_step, 9)


def plan_for_budget(
    budget_seconds: float,
    elapsed_seconds: float,
    n_steps: int,
    n_samples: int,
    probe: Callable[[int], tuple[float, Sequence[float]]],
) -> BudgetPlan:
    """Probe the solver once and choose its steps and samples for ``budget_seconds``.

    ``elapsed_seconds`` were spent before the solver (they count against the budget);
    ``probe(k)`` runs the solver with ``k`` steps at ``n_samples`` and returns its seconds
    and the times (from its start) at which each step ended (:func:`step_model`).
    """
    started = time.perf_counter()
    fixed, per_step = step_model(*probe(PROBE_STEPS))
    probe_seconds = time.perf_counter() - started
    left = budget_seconds - elapsed_seconds - probe_seconds
    candidates = budget_candidates(n_steps, n_samples)
    costs = [predicted_seconds(fixed, per_step, n_samples, s, k) for s, k in candidates]
    fitting = [i for i, cost in enumerate(costs) if cost <= left]
    chosen = fitting[0] if fitting else min(range(len(costs)), key=costs.__getitem__)
    return BudgetPlan(
        budget_seconds=float(budget_seconds),
        elapsed_before_seconds=float(elapsed_seconds),
        probe_seconds=probe_seconds,
        fixed_seconds=fixed,
        seconds_per_step=per_step,
        n_steps=candidates[chosen][0],
        n_samples=candidates[chosen][1],
        predicted_seconds=costs[chosen],
        fits=bool(fitting),
        preset_steps=int(n_steps),
        preset_samples=int(n_samples),
    )
