"""time_budget=: the LDM solver's steps and samples are fitted to the seconds a user gives,
from probe runs on the same problem, and the run says what it chose (metrics.json, the CLI).
Times are never asserted: the tests check the choice rule with a model of the cost, and on a
real run that the chosen setting is the one that ran."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import medldm
from medldm.errors import InvalidInputError
from medldm.recon.budget import budget_candidates, plan_for_budget

SETTING = {"n_steps": 8, "n_samples": 2}


def _reconstruct(path: Path, prior: Path, budget: float | None) -> dict:
    return medldm.reconstruct(
        path,
        "mri_brain_4x",
        prior=str(prior),
        slices=2,
        grid={"size": [32, 32], "spacing_mm": 4.0},
        solver_options=SETTING,
        time_budget=budget,
    ).metrics


def test_candidates_cut_steps_before_samples_and_never_add_any():
    candidates = budget_candidates(20, 4)
    assert candidates[0] == (20, 4)
    assert all(steps <= 20 and samples <= 4 for steps, samples in candidates)
    first_fewer_samples = next(i for i, (_, k) in enumerate(candidates) if k < 4)
    assert all(k == 4 for _, k in candidates[:first_fewer_samples])
    assert candidates[-1][1] == 1 and min(s for s, _ in candidates) >= 4


@pytest.mark.parametrize(
    ("budget", "elapsed", "expected"),
    [(100.0, 0.0, (20, 4)), (2.0, 0.0, (12, 4)), (2.0, 0.5, (8, 4)), (1.0, 0.0, (8, 2))],
)
def test_the_best_setting_predicted_to_fit_what_is_left_is_chosen(budget, elapsed, expected):
    def probe(steps: int) -> tuple[float, list[float]]:  # 0.5 s fixed + 0.1 s per step
        return 0.5 + 0.1 * steps, [0.3 + 0.1 * i for i in range(1, steps + 1)]

    plan = plan_for_budget(budget, elapsed, 20, 4, probe)
    assert (plan.n_steps, plan.n_samples) == expected and plan.fits
    assert plan.predicted_seconds <= budget - elapsed
    assert plan.seconds_per_step == pytest.approx(0.1) and plan.fixed_seconds == pytest.approx(0.5)


def test_a_generous_budget_keeps_the_preset_setting(small_brain, tiny_prior_folder):
    metrics = _reconstruct(small_brain, tiny_prior_folder, budget=1e6)
    plan = metrics["time_budget"]
    assert plan["fits"] and (plan["n_steps"], plan["n_samples"]) == (8, 2)
    assert metrics["ldm"]["nfe"] == 8 and metrics["ldm"]["n_samples"] == 2
    assert "8 steps x 2 samples" in plan["summary"]


def test_an_impossible_budget_runs_the_cheapest_setting_and_says_so(small_brain, tiny_prior_folder):
    metrics = _reconstruct(small_brain, tiny_prior_folder, budget=1e-3)
    plan = metrics["time_budget"]
    cheapest = (plan["n_steps"], plan["n_samples"])
    assert not plan["fits"] and "does not fit" in plan["summary"]
    assert cheapest == (4, 1)  # budget_candidates(8, 2)'s cheapest
    assert metrics["ldm"]["nfe"] == 4 and metrics["ldm"]["n_samples"] == 1
    assert metrics["baseline"]["psnr_db"] > 0  # the baseline still runs, before the LDM


def test_without_a_budget_nothing_is_probed_or_recorded(small_brain, tiny_prior_folder):
    metrics = _reconstruct(small_brain, tiny_prior_folder, budget=None)
    assert "time_budget" not in metrics and metrics["ldm"]["nfe"] == 8


def test_a_budget_for_measured_kspace_is_refused_with_the_fix(tmp_path):
    kspace = np.ones((16, 16), np.complex64)
    np.save(tmp_path / "k.npy", kspace)
    with pytest.raises(InvalidInputError, match="time_budget applies to image inputs"):
        medldm.reconstruct(kspace=tmp_path / "k.npy", time_budget=10.0)


def test_cli_prints_what_the_budget_chose(small_brain, tiny_prior_folder, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "medldm.recon",
            f"input={small_brain}",
            f"output_dir={tmp_path / 'out'}",
            f"preset.prior={tiny_prior_folder}",
            "preset.slices=2",
            "preset.grid={size: [32, 32], spacing_mm: 4.0}",
            "solver_options={n_steps: 8, n_samples: 2}",
            "time_budget=100000",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "time budget 100000 s: 8 steps x 2 samples" in run.stdout
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="time-budget"' in report and "8 steps x 2 samples" in report
