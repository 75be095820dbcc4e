"""Time and memory estimates before a reconstruction (what ``dry_run=true`` prints).

:func:`calibrated_estimate` (the dry run): times are *measured* by short probe runs of the
real reconstruction on this machine (same input, preset, device, precision), then
extrapolated. A latent solver's cost is linear in the length of its outer loop
(``n_steps``; LatentDAPS ``n_anneal``: :attr:`LatentSolverBase.schedule_option`), so
after one warm-up run (1 step, with the classical baseline, which is timed in full)
runs of ``k1`` and ``k2`` steps give the per-step time ``b`` and the fixed part ``a``
(the final data-consistency and TV or wavelet steps, the initial estimate) of the solver's
``a + b n``; loading, simulation and scoring are timed on the same runs. Memory: the peak
during the longer probe (:class:`medldm.utils.memory.PeakMemory`), which does not grow
with the number of steps. ``benchmarks/estimate_accuracy.py`` compares predicted with
measured times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Outer-loop lengths of the two timed probe runs (after a 1-step warm-up).
PROBE_STEPS = (1, 3)


@dataclass(frozen=True)
class CalibratedEstimate:
    """A reconstruction's predicted cost, from probe runs on this machine."""

    total_seconds: float  # the whole reconstruction (load, simulate, solve, baseline, score)
    ldm_seconds: float  # the latent solver's solve()
    baseline_seconds: float | None  # measured in full on the warm-up run
    seconds_per_step: float
    fixed_seconds: float  # the solver's part that does not grow with the steps
    steps: int
    schedule_option: str
    peak_memory_mb: float
    probe_seconds: float  # what the probes cost

    def describe(self) -> str:
        baseline = (
            ""
            if self.baseline_seconds is None
            else f", of which the baseline {self.baseline_seconds:.1f} s"
        )
        return (
            f"estimated {self.total_seconds:.0f} s in all{baseline}; the LDM solver "
            f"{self.ldm_seconds:.0f} s = {self.fixed_seconds:.1f} s + {self.steps} "
            f"{self.schedule_option} x {self.seconds_per_step:.2f} s; peak memory about "
            f"{self.peak_memory_mb:.0f} MB above the start (measured by probe runs of "
            f"{PROBE_STEPS[0]} and {PROBE_STEPS[1]} {self.schedule_option} on this machine, "
            f"{self.probe_seconds:.0f} s)"
        )


def calibrated_estimate(
    run: Callable[[int, bool], dict[str, Any]],
    steps: int,
    schedule_option: str = "n_steps",
    *,
    baseline: bool = True,
    device: str = "cpu",
) -> CalibratedEstimate:
    """Predict a reconstruction of ``steps`` outer-loop steps from probe runs.

    ``run(k, with_baseline)`` reconstructs with the outer loop set to ``k`` and returns the
    result's metrics (``total_seconds``, ``ldm.seconds`` and, with the baseline,
    ``baseline.seconds``), as :func:`medldm.recon.pipeline.reconstruct` does.

    Example
    -------
    >>> def fake_run(k, with_baseline):  # 0.5 s fixed + 0.25 s per step, 1 s baseline
    ...     ldm = 0.5 + 0.25 * k
    ...     metrics = {"ldm": {"seconds": ldm}, "total_seconds": ldm + 2.0}
    ...     if with_baseline:
    ...         metrics["baseline"] = {"seconds": 1.0}
    ...         metrics["total_seconds"] += 1.0
    ...     return metrics
    >>> e = calibrated_estimate(fake_run, 50)
    >>> round(e.ldm_seconds, 6), round(e.total_seconds, 6), e.baseline_seconds
    (13.0, 16.0, 1.0)
    """
    from medldm.utils.memory import PeakMemory

    started = time.perf_counter()
    warm = run(PROBE_STEPS[0], baseline)  # first calls build the kernels: not timed for b
    baseline_seconds = float(warm["baseline"]["seconds"]) if baseline else None
    short = run(PROBE_STEPS[0], False)
    with PeakMemory(device) as memory:
        long = run(PROBE_STEPS[1], False)
    k1, k2 = PROBE_STEPS
    t1, t2 = float(short["ldm"]["seconds"]), float(long["ldm"]["seconds"])
    per_step = max(t2 - t1, 0.0) / (k2 - k1)
    fixed = max(t1 - per_step * k1, 0.0)
    ldm = fixed + per_step * steps
    around = float(long["total_seconds"]) - t2  # load, simulate, score
    total = around + ldm + (baseline_seconds or 0.0)
    return CalibratedEstimate(
        total_seconds=total,
        ldm_seconds=ldm,
        baseline_seconds=baseline_seconds,
        seconds_per_step=per_step,
        fixed_seconds=fixed,
        steps=int(steps),
        schedule_option=schedule_option,
        peak_memory_mb=float(memory.peak_mb),
        probe_seconds=time.perf_counter() - started,
    )
