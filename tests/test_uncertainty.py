"""Uncertainty measures (coverage, std-error Spearman, reliability curve) against
hand-computed cases, and the std calibration fitted on validation cases only (issue 17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medldm.errors import InvalidInputError
from medldm.metrics.uncertainty import (
    GAUSSIAN_MEAN_ABS,
    STD_BIN_EDGES,
    ReliabilityCurve,
    coverage,
    gaussian_quantile,
    reliability_curve,
    sample_coverage,
    sample_interval,
    std_coverage,
    std_error_spearman,
    uncertainty_scores,
)

EVERYWHERE = np.ones((2, 2), bool)


# --- coverage ---------------------------------------------------------------------------
def test_std_coverage_counts_pixels_inside_estimate_plus_minus_z_std():
    # errors 0, 1, 2, 3 with std 1: z_50 = 0.674 covers only the 0; z_90 = 1.645 the 0 and 1
    truth = np.array([[0.0, 1.0], [2.0, 3.0]])
    estimate, std = np.zeros((2, 2)), np.ones((2, 2))
    assert std_coverage(truth, estimate, std, 0.5, mask=EVERYWHERE) == 0.25
    assert std_coverage(truth, estimate, std, 0.9, mask=EVERYWHERE) == 0.5
    # a half-width of exactly the error counts as covered (ends included)
    assert std_coverage(truth, estimate, std, 0.9, mask=EVERYWHERE, scale=2.0) == 0.75


def test_std_coverage_uses_only_the_roi():
    truth = np.array([[0.0, 1.0], [2.0, 3.0]])
    roi = np.array([[False, True], [True, False]])  # errors 1 and 2
    assert std_coverage(truth, np.zeros((2, 2)), np.ones((2, 2)), 0.9, mask=roi) == 0.5


def test_gaussian_quantiles_are_the_textbook_values():
    assert gaussian_quantile(0.5) == pytest.approx(0.67449, abs=1e-5)
    assert gaussian_quantile(0.9) == pytest.approx(1.64485, abs=1e-5)
    with pytest.raises(InvalidInputError, match="level"):
        gaussian_quantile(1.0)


def test_sample_interval_is_the_linear_quantile_of_the_samples():
    # K = 5 samples 0..4 at one pixel: 25 % -> 1, 75 % -> 3, 5 % -> 0.2, 95 % -> 3.8
    samples = np.arange(5.0)[:, None]
    lower, upper = sample_interval(samples, 0.5)
    assert (lower[0], upper[0]) == (1.0, 3.0)
    lower, upper = sample_interval(samples, 0.9)
    assert lower[0] == pytest.approx(0.2) and upper[0] == pytest.approx(3.8)


def test_sample_coverage_by_hand():
    # four pixels with the same samples 0..4; truths 0.1 (outside both), 2 (inside both),
    # 0.5 (inside the 90 % interval [0.2, 3.8] only), 3.9 (outside both)
    truth = np.array([[0.1, 2.0], [0.5, 3.9]])
    samples = np.broadcast_to(np.arange(5.0)[:, None, None], (5, 2, 2))
    assert sample_coverage(truth, samples, 0.5, mask=EVERYWHERE) == 0.25
    assert sample_coverage(truth, samples, 0.9, mask=EVERYWHERE) == 0.5


def test_sample_coverage_takes_solver_layout_and_complex_samples():
    truth = np.array([[0.1, 2.0], [0.5, 3.9]])
    samples = np.arange(5.0)[:, None, None, None, None] * np.ones((5, 1, 1, 2, 2))
    phased = samples * np.exp(1j * 0.3)  # magnitude is what counts
    assert sample_coverage(truth, phased, 0.9, mask=EVERYWHERE) == 0.5
    with pytest.raises(InvalidInputError, match="samples"):
        sample_coverage(truth, np.zeros((5, 3, 3)), 0.9, mask=EVERYWHERE)


def test_coverage_without_mask_uses_the_foreground():
    truth = np.zeros((8, 8))
    truth[2:6, 2:6] = 1.0  # foreground: 16 pixels
    lower, upper = truth - 0.1, truth + 0.1
    upper[2, 2:6] = 0.5  # 4 foreground pixels not covered
    assert coverage(truth, lower, upper) == 12 / 16


def test_perfectly_calibrated_gaussian_std_gives_nominal_coverage():
    rng = np.random.default_rng(0)
    truth = np.ones((200, 200))
    std = rng.uniform(0.05, 0.5, truth.shape)
    estimate = truth + std * rng.standard_normal(truth.shape)
    mask = np.ones(truth.shape, bool)
    for level in (0.5, 0.9):
        assert std_coverage(truth, estimate, std, level, mask=mask) == pytest.approx(
            level, abs=0.01
        )


# --- Spearman -----------------------------------------------------------------------------
def test_spearman_by_hand():
    # std ranks 1 3 2 4 against |error| ranks 1 2 3 4: sum d^2 = 2, rho = 1 - 6*2/(4*15)
    truth = np.array([[0.0, 1.0], [2.0, 3.0]])
    std = np.array([[1.0, 3.0], [2.0, 4.0]])
    assert std_error_spearman(np.zeros((2, 2)), truth, std, mask=EVERYWHERE) == pytest.approx(0.8)
    # the sign of the error does not matter, only its size
    assert std_error_spearman(2 * truth, truth, std, mask=EVERYWHERE) == pytest.approx(0.8)


def test_spearman_is_nan_for_a_constant_std():
    truth = np.array([[0.0, 1.0], [2.0, 3.0]])
    value = std_error_spearman(np.zeros((2, 2)), truth, np.ones((2, 2)), mask=EVERYWHERE)
    assert math.isnan(value)


# --- reliability --------------------------------------------------------------------------
def test_reliability_curve_by_hand():
    curve = reliability_curve(
        np.zeros(4),
        np.array([0.1, 0.3, -0.4, 0.6]),
        np.array([0.1, 0.1, 0.5, 1.0]),
        mask=np.ones(4, bool),
        bin_edges=[0.0, 0.2, 1.0],
    )
    assert curve.counts.tolist() == [2, 2]  # std = 1.0 is in the closed last bin
    assert curve.mean_std.tolist() == pytest.approx([0.1, 0.75])
    assert curve.mean_abs_error.tolist() == pytest.approx([0.2, 0.5])
    assert curve.rms_error.tolist() == pytest.approx([math.sqrt(0.05), math.sqrt(0.26)])


def test_reliability_curves_on_fixed_edges_add_up_and_round_trip():
    rng = np.random.default_rng(1)
    mask = np.ones((16, 16), bool)
    curves = []
    for _ in range(2):
        std = rng.uniform(0.001, 0.3, (16, 16))
        curves.append(
            reliability_curve(
                rng.random((16, 16)), rng.random((16, 16)), std, mask=mask, bin_edges=STD_BIN_EDGES
            )
        )
    merged = curves[0].merge(curves[1])
    assert merged.counts.sum() == 512 and merged.n_cases == 2
    again = ReliabilityCurve.from_dict(merged.to_dict())
    assert np.array_equal(again.bin_edges, STD_BIN_EDGES)
    assert np.allclose(again.mean_abs_error, merged.mean_abs_error, equal_nan=True)
    with pytest.raises(InvalidInputError, match="bin edges"):
        merged.merge(reliability_curve(np.zeros(4), np.ones(4), np.ones(4), mask=np.ones(4)))


def test_reliability_of_a_calibrated_gaussian_follows_sqrt_2_over_pi():
    rng = np.random.default_rng(2)
    std = np.repeat([0.01, 0.1], 20000)
    estimate = std * rng.standard_normal(std.size)
    curve = reliability_curve(
        estimate, np.zeros(std.size), std, mask=np.ones(std.size, bool), bin_edges=STD_BIN_EDGES
    )
    full = curve.counts > 0
    assert np.allclose(
        curve.mean_abs_error[full] / curve.mean_std[full], GAUSSIAN_MEAN_ABS, rtol=0.03
    )


def test_uncertainty_scores_hold_every_column():
    truth = np.array([[0.1, 2.0], [0.5, 3.9]])
    samples = np.broadcast_to(np.arange(5.0)[:, None, None], (5, 2, 2))
    estimate, std = samples.mean(0), samples.std(0, ddof=1)
    scores = uncertainty_scores(
        estimate, truth, std, samples, mask=EVERYWHERE, scales={0.5: 0.0, 0.9: 10.0}
    )
    assert scores["coverage_50_samples"] == 0.25 and scores["coverage_90_samples"] == 0.5
    # a zero half-width covers only the pixel whose truth is the estimate (2.0)
    assert scores["coverage_90_calibrated"] == 1.0 and scores["coverage_50_calibrated"] == 0.25
    assert scores["roi_pixels"] == 4
    assert {"coverage_50", "coverage_90", "std_error_spearman"} <= set(scores)


# --- calibration (medldm.problems.calibration) ----------------------------------------------
def _case(rng, name, split, size=24, spread=2.0, k=6):
    """A case whose samples scatter less than the true error: an over-confident std."""
    from medldm.problems.calibration import CalibrationCase

    truth = np.pad(rng.uniform(0.4, 1.0, (size, size)), 2)
    estimate = truth + spread * 0.05 * rng.standard_normal(truth.shape)
    samples = estimate + 0.05 * rng.standard_normal((k, *truth.shape))
    std = samples.std(0, ddof=1)
    return CalibrationCase(name, split, truth, estimate, std, samples, dataset=f"toy_{split}")


def test_calibration_refuses_cases_from_the_test_split():
    from medldm.problems.calibration import fit_calibration

    rng = np.random.default_rng(3)
    cases = [_case(rng, "IXI527/slice059", "validation"), _case(rng, "IXI603/slice059", "test")]
    with pytest.raises(InvalidInputError, match=r"validation cases only.*IXI603/slice059 \(test\)"):
        fit_calibration(cases, solver="latent_dds", operator="mri_4x")
    with pytest.raises(InvalidInputError, match="validation cases only"):
        fit_calibration([_case(rng, "x", "train")], solver="latent_dds", operator="mri_4x")


def test_split_of_case_comes_from_the_data_card():
    from medldm.problems.calibration import split_of_case

    assert split_of_case("ixi_t1", "IXI565/slice060") == "validation"
    assert split_of_case("ixi_t1", "IXI632/slice058") == "test"
    assert split_of_case("ixi_t1", "IXI012/slice058") == "train"
    assert split_of_case("mednist", "ChestCT/008099") == "validation"
    assert split_of_case("mednist", "ChestCT/008100") == "test"
    assert split_of_case("ixi_t1", "nobody/slice001") == "unknown"


def test_applying_the_fitted_scale_gives_the_nominal_coverage_on_the_fitting_cases():
    from medldm.problems.calibration import fit_calibration

    rng = np.random.default_rng(4)
    # cases of different sizes and error levels: the mean over cases is what is nominal
    cases = [
        _case(rng, f"v{i}", "validation", size=size, spread=spread)
        for i, (size, spread) in enumerate([(16, 1.5), (24, 2.0), (40, 3.0)])
    ]
    fit = fit_calibration(cases, solver="latent_dds", operator="mri_4x")
    assert fit.n_samples == 6 and [c["split"] for c in fit.cases] == ["validation"] * 3
    for level in (0.5, 0.9):
        scale = fit.levels[level].std_scale
        covered = [
            std_coverage(c.ground_truth, c.estimate, c.std, level, scale=scale) for c in cases
        ]
        # at least the level, by at most one pixel of the smallest case (weight 1/(3*256))
        assert level <= np.mean(covered) <= level + 1 / (3 * 16 * 16) + 1e-12
        assert fit.levels[level].calibrated["std"] == pytest.approx(np.mean(covered))
        assert fit.levels[level].uncalibrated["std"] < level - 0.1  # it was over-confident
        assert fit.levels[level].std_factor > 1.0
        sampled = []
        for c in cases:
            lower, upper = fit.sample_interval(c.samples, level)
            sampled.append(coverage(c.ground_truth, lower, upper))
        assert level <= np.mean(sampled) <= level + 1 / (3 * 16 * 16) + 1e-12


def test_calibration_file_round_trip_and_matching(tmp_path):
    from medldm.problems.calibration import (
        calibration_path,
        find_calibration,
        fit_calibration,
        load_calibrations,
        save_calibration,
        score_uncertainty,
    )

    rng = np.random.default_rng(5)
    config = {"_target_": "medldm.solvers.latent_dds.LatentDDS", "n_samples": 6, "n_steps": 10}
    cases = [_case(rng, "a", "validation"), _case(rng, "b", "validation")]
    fit = fit_calibration(cases, solver="latent_dds", operator="mri_4x", solver_config=config)
    path = save_calibration(fit, tmp_path)
    assert path == calibration_path("latent_dds", "mri_4x", tmp_path)
    assert "VALIDATION" in path.read_text()
    other = fit_calibration(
        cases, solver="latent_dds", operator="mri_4x", solver_config={**config, "n_steps": 20}
    )
    save_calibration(other, tmp_path)
    save_calibration(fit, tmp_path)  # the same config again replaces, never duplicates
    assert len(load_calibrations("latent_dds", "mri_4x", tmp_path)) == 2
    found = find_calibration(
        "latent_dds", "mri_4x", {**config, "progress": True}, directory=tmp_path
    )
    assert found is not None and found.scales == pytest.approx(fit.scales)
    assert found.levels[0.9].uncalibrated == pytest.approx(fit.levels[0.9].uncalibrated)
    assert found.cases == fit.cases
    # another K, another operator: no calibration
    assert (
        find_calibration("latent_dds", "mri_4x", {**config, "n_samples": 4}, directory=tmp_path)
        is None
    )
    assert find_calibration("latent_dds", "mri_8x", config, directory=tmp_path) is None
    scores = score_uncertainty(
        cases[0].estimate, cases[0].ground_truth, cases[0].std, cases[0].samples, calibration=found
    )
    assert scores["coverage_90_calibrated"] > scores["coverage_90"]
    assert scores["std_calibration"].startswith("latent_dds_mri_4x.yaml K=6")
    assert (
        score_uncertainty(cases[0].estimate, cases[0].ground_truth, cases[0].std)["std_calibration"]
        == ""
    )


def test_a_fit_records_whether_its_cases_were_slices_or_volumes(tmp_path):
    from medldm.problems.calibration import (
        CalibrationCase,
        fit_calibration,
        load_calibrations,
        save_calibration,
    )

    rng = np.random.default_rng(6)
    slices = [_case(rng, "a", "validation"), _case(rng, "b", "validation")]
    assert fit_calibration(slices, solver="latent_dds", operator="mri_4x").case_dims == 2
    stacks = []
    for name in ("v1", "v2"):
        truth = np.pad(rng.uniform(0.5, 1.0, (3, 10, 10)), ((0, 0), (1, 1), (1, 1)))
        samples = truth + 0.05 * rng.standard_normal((4, *truth.shape))
        stacks.append(
            CalibrationCase(name, "validation", truth, samples.mean(0), samples.std(0), samples)
        )
    fit = fit_calibration(stacks, solver="latent_dds", operator="mri_4x")
    assert fit.case_dims == 3 and fit.coupled and "2 validation volumes" in fit.describe()
    assert "2 validation volumes" in fit.label()
    save_calibration(fit, tmp_path)
    assert load_calibrations("latent_dds", "mri_4x", tmp_path)[0].coupled


@pytest.mark.parametrize(
    ("name", "fitted_for"),
    [
        ("mri_brain_3d", "latent_dds_mri_4x_volume"),  # 3D k-space
        ("mri_brain_4x", "latent_dds_mri_4x_multislice"),  # each slice its own k-space
        ("mri_brain_8x", "latent_dds_mri_8x_multislice"),
    ],
)
def test_a_coupled_slab_takes_only_a_fit_made_on_whole_volumes(name, fitted_for, monkeypatch):
    """The shipped slab presets find their volume fits; a fit of the same config made on
    slices, or a volume fit offered to independent slices, is refused with the reason; one
    slice alone takes the 2D fit of the per-slice preset."""
    import dataclasses

    import medldm.problems.calibration as calibration
    from medldm.models.prior import load_prior
    from medldm.recon.presets import load_preset
    from medldm.recon.uncertainty import calibration_for

    preset = load_preset(name)
    prior = load_prior(preset.prior)
    fit, why = calibration_for(preset, prior, volume_mode=True)
    assert fit is not None and fit.coupled and fit.n_samples == 4, why
    assert fit.solver_preset == fitted_for
    if name != "mri_brain_3d":  # whose one slice keeps the volume preset: no fit
        alone, why = calibration_for(preset.per_slice(), prior, volume_mode=False)
        assert alone is not None and not alone.coupled, why
        assert alone.solver_preset == f"latent_dds_{preset.per_slice().physics}"
    refused, why = calibration_for(preset, prior, volume_mode=False)
    assert refused is None and "whole volumes" in why
    on_slices = dataclasses.replace(fit, case_dims=2)
    monkeypatch.setattr(calibration, "find_calibration", lambda *args, **kwargs: on_slices)
    refused, why = calibration_for(preset, prior, volume_mode=True)
    assert refused is None and "independent 2D slices" in why


# --- the benchmark: columns, calibration, report -------------------------------------------
def test_bench_rows_carry_uncertainty_columns_and_the_report_shows_them(tmp_path):
    import csv

    from skimage.data import camera

    from medldm.bench import run_benchmark, write_report
    from medldm.bench.cases.case import Case
    from medldm.data.normalize import Normalization
    from medldm.models.testing import tiny_prior
    from medldm.problems.calibration import (
        LevelFit,
        StdCalibration,
        preset_solver_config,
        save_calibration,
    )

    image = np.ascontiguousarray(camera()[::16, ::16].astype(np.float32) / 255)
    cases = [Case("toy", "c0", image, Normalization(0.0, 1.0))]
    prior = tiny_prior()
    grid = (cases, ["inpaint_random"], ["zero_filled", "latent_dds"], [0])
    run_benchmark(
        *grid,
        tmp_path / "raw",
        prior=prior,
        progress=False,
        device="cpu",
        calibration_dir=tmp_path / "none",
    )
    markdown = write_report(tmp_path / "raw")[0].read_text()
    assert "std NOT calibrated" in markdown and "reliability__toy__inpaint_random.png" in markdown

    fit = StdCalibration(
        "latent_dds",
        "inpaint_random",
        4,
        {0.5: LevelFit(0.5, 2.0, gaussian_quantile(0.5)), 0.9: LevelFit(0.9, 5.0, 1.645)},
        [{"dataset": "toy_validation", "case": "v0", "split": "validation"}],
        solver_preset="latent_dds_inpaint_random",
        solver_config=preset_solver_config("latent_dds_inpaint_random"),
        prior=prior.name,
    )
    save_calibration(fit, tmp_path / "calibration")
    run_benchmark(
        *grid,
        tmp_path / "out",
        prior=prior,
        progress=False,
        device="cpu",
        calibration_dir=tmp_path / "calibration",
    )
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = {r["solver"]: r for r in csv.DictReader(handle)}
    latent, classical = rows["latent_dds"], rows["zero_filled"]
    for column in ("coverage_50", "coverage_90", "std_error_spearman", "coverage_90_calibrated"):
        assert 0.0 <= abs(float(latent[column])) <= 1.0
        assert classical[column] == ""
    assert float(latent["coverage_90_calibrated"]) >= float(latent["coverage_90"])
    assert latent["std_calibration"].startswith("latent_dds_inpaint_random.yaml K=4")
    markdown, html_page = (p.read_text() for p in write_report(tmp_path / "out"))
    assert "## Uncertainty (latent solvers)" in markdown
    assert "std calibrated on latent_dds_inpaint_random.yaml K=4" in markdown
    assert "Reliability: toy / inpaint_random" in html_page
    assert (tmp_path / "out" / "figures" / "reliability__toy__inpaint_random.png").is_file()


# --- the ROI: the foreground the measurement leaves unobserved -----------------------------
def _box_case(rng, name, size=24):
    """An inpainting case: a central box unobserved, where the std is over-confident by 2x;
    outside it the data fixes the estimate (std ~0, the error is the noise)."""
    from medldm.problems.calibration import CalibrationCase

    truth = np.pad(rng.uniform(0.4, 1.0, (size, size)), 2)
    observed = np.ones(truth.shape, bool)
    observed[8:20, 8:20] = False
    std = np.where(observed, 1e-6, 0.05)
    estimate = truth + np.where(observed, 0.01, 0.1) * rng.standard_normal(truth.shape)
    return CalibrationCase(name, "validation", truth, estimate, std, dataset="toy_validation"), (
        observed
    )


def test_observed_pixels_come_from_an_inpainting_mask_and_none_from_k_space():
    import torch

    from medldm.physics.factory import InpaintingFactory
    from medldm.problems.calibration import observed_pixels, roi_name, uncertainty_roi
    from medldm.problems.configs import load_physics

    generator = torch.Generator().manual_seed(0)
    physics = InpaintingFactory("box", box_fraction=0.5).build((16, 16), generator)
    observed = observed_pixels(physics, (3, 1, 16, 16))
    assert tuple(observed.shape) == (3, 1, 16, 16) and int((~observed[0]).sum()) == 64
    assert not bool(observed[0, 0, 4:12, 4:12].any()) and bool(observed[0, 0, :4].all())
    truth = np.pad(np.ones((12, 12), np.float32), 2)
    roi = uncertainty_roi(truth, observed[0, 0])
    assert roi.sum() == 64 and roi_name(observed) == "unobserved foreground"
    mri = load_physics("mri_4x").build((16, 16), generator)
    assert observed_pixels(mri, (1, 1, 16, 16)) is None
    assert uncertainty_roi(truth).sum() == 144 and roi_name(None) == "foreground"


def test_a_box_fit_over_the_unobserved_foreground_is_finite_and_nominal(tmp_path):
    from medldm.problems.calibration import (
        CalibrationCase,
        fit_calibration,
        load_calibrations,
        save_calibration,
        uncertainty_roi,
    )

    rng = np.random.default_rng(6)
    pairs = [_box_case(rng, f"v{i}") for i in range(3)]
    # over the whole foreground, the measured pixels (std 1e-6, error ~0.01) drive the scale
    whole = fit_calibration([c for c, _ in pairs], solver="latent_dds", operator="inpaint_box")
    assert whole.std_scale(0.9) > 1e3
    masked = [
        CalibrationCase(
            c.name,
            c.split,
            c.ground_truth,
            c.estimate,
            c.std,
            dataset=c.dataset,
            mask=uncertainty_roi(c.ground_truth, observed),
        )
        for c, observed in pairs
    ]
    fit = fit_calibration(
        masked, solver="latent_dds", operator="inpaint_box", roi="unobserved foreground"
    )
    # the box's errors are 2 stds wide: the 90 % scale is about 2 x 1.645
    assert 2.5 < fit.std_scale(0.9) < 4.5
    assert fit.levels[0.9].calibrated["std"] == pytest.approx(0.9, abs=0.01)
    assert "(ROI: unobserved foreground)" in fit.describe()
    save_calibration(fit, tmp_path)
    assert load_calibrations("latent_dds", "inpaint_box", tmp_path)[0].roi == (
        "unobserved foreground"
    )
    empty = CalibrationCase(
        "e",
        "validation",
        *(masked[0].ground_truth,) * 3,
        mask=np.zeros(masked[0].ground_truth.shape, bool),
    )
    with pytest.raises(InvalidInputError, match="case e has an empty ROI"):
        fit_calibration([empty], solver="latent_dds", operator="inpaint_box")


def test_the_app_scores_the_std_over_the_unobserved_foreground_and_skips_observed_slices():
    from medldm.recon.uncertainty import uncertainty_metrics

    rng = np.random.default_rng(7)
    case, observed = _box_case(rng, "v")
    truth = np.stack([case.ground_truth, case.ground_truth])
    estimate = np.stack([case.estimate, case.ground_truth + 0.3])
    std = np.stack([case.std, case.std])
    seen = np.stack([observed, np.ones_like(observed)])  # slice 1: nothing left unobserved
    scores = uncertainty_metrics(estimate, truth, std, None, None, "no fit", seen)
    by_hand = coverage(
        case.ground_truth,
        case.estimate - 1.645 * case.std,
        case.estimate + 1.645 * case.std,
        mask=~observed,
    )
    assert scores["roi"] == "unobserved foreground"
    assert scores["coverage_90"] == pytest.approx(by_hand, abs=1e-3)
    plain = uncertainty_metrics(estimate, truth, std, None, None, "no fit")
    assert plain["roi"] == "foreground" and plain["coverage_90"] < scores["coverage_90"]


def test_bench_rows_score_a_box_std_over_the_box(tmp_path):
    import json

    from skimage.data import camera

    from medldm.bench import run_benchmark
    from medldm.bench.cases.case import Case
    from medldm.data.normalize import Normalization
    from medldm.metrics.foreground import foreground_mask
    from medldm.models.testing import tiny_prior

    image = np.ascontiguousarray(camera()[::16, ::16].astype(np.float32) / 255)
    cases = [Case("toy", "c0", image, Normalization(0.0, 1.0))]
    run_benchmark(
        cases,
        ["inpaint_box"],
        ["latent_dds"],
        [0],
        tmp_path / "out",
        prior=tiny_prior(),
        progress=False,
        device="cpu",
        calibration_dir=tmp_path / "none",
    )
    curves = [json.loads(line) for line in (tmp_path / "out" / "reliability.jsonl").open()]
    box = np.zeros(image.shape, bool)
    box[8:24, 8:24] = True  # the central half of each side of 32 x 32
    assert sum(curves[0]["curve"]["counts"]) == int((foreground_mask(image) & box).sum())
