"""Per-scan weights of the solvers of a measured run, chosen by k-space hold-out
(medldm.recon.kspace_weights): on noisier k-space than the presets were tuned for, the
search picks heavier regularisation, and the reference confirms it is better."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from medldm.errors import InvalidInputError
from medldm.models.testing import tiny_prior
from medldm.physics.coils import birdcage_sensitivities
from medldm.physics.mri import fft2c
from medldm.recon.cli import _measured_summary
from medldm.recon.kspace_weights import best_factor, check_factors, edge_text
from medldm.recon.measured import reconstruct_kspace
from medldm.recon.outputs import write_run_folder

FACTORS = (0.25, 1, 4, 16)


def _noisy_kspace(sigma: float = 0.02, shape: tuple[int, int] = (32, 64)) -> np.ndarray:
    """Fully sampled 4-coil k-space of two nested rectangles, complex Gaussian noise."""
    image = torch.zeros(shape)
    image[8:24, 12:52] = 1.0
    image[12:20, 24:40] = 0.5
    kspace = fft2c(birdcage_sensitivities(4, shape) * image).numpy()
    rng = np.random.default_rng(0)
    noise = sigma * (rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape))
    return (kspace + noise).astype(np.complex64)


def _run(path, weight_search):
    return reconstruct_kspace(
        path,
        "mri_brain_4x",
        acceleration=4,
        prior=tiny_prior(),
        grid={"size": [32, 32], "spacing_mm": 1.0},
        solver_options={"n_steps": 2, "n_samples": 2},
        classical=["cg"],
        weight_search=weight_search,
        holdout_splits=0,
        seed=3,
    )


def test_the_search_picks_heavier_weights_on_noisy_kspace_and_they_are_better(tmp_path):
    np.save(tmp_path / "noisy.npy", _noisy_kspace())
    plain = _run(tmp_path / "noisy.npy", ()).metrics
    result = _run(tmp_path / "noisy.npy", FACTORS)
    searched = result.metrics
    assert plain["weight_search"] is None and "weight" not in plain["classical"]["tv"]
    record = searched["weight_search"]
    # CG-SENSE has no weight; the LDM's final-step weight is searched too
    assert sorted(record["methods"]) == ["latent_dds", "tv"]
    ldm = record["methods"]["latent_dds"]
    assert ldm["option"] in ("final_tv_weight", "final_wavelet_weight")
    assert searched["ldm"]["final_weight"] == pytest.approx(ldm["chosen_weight"])
    tv = record["methods"]["tv"]
    errors = tv["holdout_error_by_factor"]
    assert list(errors) == ["0.25", "1", "4", "16"]
    assert tv["chosen_factor"] == float(min(errors, key=errors.get)) > 1
    assert searched["classical"]["tv"]["weight"] == pytest.approx(tv["chosen_weight"])
    assert tv["chosen_weight"] == pytest.approx(tv["preset_weight"] * tv["chosen_factor"])
    # the reference agrees: the chosen weight beats the preset's (measured: 22.77 -> 25.84 dB)
    assert searched["classical"]["tv"]["psnr_db"] > plain["classical"]["tv"]["psnr_db"] + 1
    assert searched["classical"]["cg"]["psnr_db"] == pytest.approx(
        plain["classical"]["cg"]["psnr_db"]
    )
    # 16 is the largest factor searched: the report and the console say to search beyond
    assert tv["at_edge"] and "TV chose 16 x" in edge_text(record)
    assert "weight_search=[16,64,256]" in edge_text(record)
    report = write_run_folder(result, tmp_path / "run")["report"].read_text()
    assert "Per-scan weights" in report and "16 x the preset" in report
    assert "search beyond it" in report
    summary = _measured_summary(searched)
    assert "weights chosen by hold-out: LATENT_DDS" in summary and "WARNING" in summary


def test_bad_factors_are_refused_with_the_fix():
    with pytest.raises(InvalidInputError, match="weight_search"):
        check_factors([1, 0])
    with pytest.raises(InvalidInputError, match="weight_search"):
        check_factors([float("nan")])
    with pytest.raises(InvalidInputError, match="weight_search"):
        check_factors(["heavy"])
    with pytest.raises(InvalidInputError, match="weight_search"):
        check_factors("heavy")
    assert check_factors([4, 1]) == (1.0, 4.0) and check_factors([]) == ()
    # what medldm-recon passes on: the config value as Hydra parsed it
    assert check_factors(OmegaConf.create({"w": [4, 1]}).w) == (1.0, 4.0)
    assert check_factors(OmegaConf.create({"w": 2}).w) == (2.0,)
    assert best_factor({1.0: [0.5, 0.5], 4.0: [0.5, 0.5]}) == 1.0  # ties: the smaller
