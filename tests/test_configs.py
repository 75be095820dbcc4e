"""The one config loader (medldm.problems.configs): where the configs are, and options that
go through the classes' own __init__ checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.problems.configs import (
    config_dir,
    load_physics,
    load_preset_config,
    load_solver,
    solver_for_operator,
)
from medldm.recon.presets import load_preset

CHECKOUT_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_config_dir_is_the_checkouts_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDLDM_CONFIG_DIR", raising=False)
    assert config_dir() == CHECKOUT_CONFIGS
    (tmp_path / "solver").mkdir()
    (tmp_path / "solver" / "tv.yaml").write_text(
        "_target_: medldm.solvers.tv.TotalVariation\nn_iter: 7\n"
    )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(tmp_path))
    assert config_dir() == tmp_path
    assert load_solver("tv").n_iter == 7
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataNotFoundError, match="configs folder is missing") as raised:
        config_dir()
    assert "MEDLDM_CONFIG_DIR" in str(raised.value.fix)


def test_an_unknown_solver_option_is_refused_with_the_valid_names():
    with pytest.raises(InvalidInputError, match="has no option 'n_step'") as raised:
        solver_for_operator("latent_dds", "mri_4x", {"n_step": 3})
    message = str(raised.value)
    assert "latent_dds_mri_4x" in message and "n_steps" in message and "dc_weight" in message


def test_options_go_through_init_and_its_checks():
    solver, source = solver_for_operator("latent_dds", "mri_4x", {"n_steps": "12", "eta": 0})
    assert source == "latent_dds_mri_4x" and solver.n_steps == 12 and solver.eta == 0.0
    # LatentDDS.__init__ refuses start_fraction outside (0, 1]: setattr would have taken it
    with pytest.raises(InvalidInputError, match="start_fraction"):
        solver_for_operator("latent_dds", "mri_4x", {"start_fraction": 2})
    with pytest.raises(InvalidInputError, match="must be an integer"):
        load_solver("latent_dds", {"n_steps": 2.5})


def test_the_preset_file_is_unchanged_by_options():
    before = load_preset_config("solver", "tv_mri_4x")
    solver_for_operator("tv", "mri_4x", {"n_iter": 3})
    assert load_preset_config("solver", "tv_mri_4x") == before


def test_a_solver_without_a_preset_file_comes_from_the_registry_with_checked_options(
    tmp_path, monkeypatch
):
    (tmp_path / "solver").mkdir()
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(tmp_path))
    solver, source = solver_for_operator("tv", "mri_4x", {"n_iter": 3})
    assert source == "registry:tv" and solver.n_iter == 3
    with pytest.raises(InvalidInputError, match="has no option 'n_step'"):
        load_solver("tv", {"n_step": 3})
    with pytest.raises(InvalidInputError, match="no solver preset or registered solver"):
        load_solver("admm")


def test_physics_presets_take_options_through_their_factory():
    assert load_physics("mri_4x").build is not None
    with pytest.raises(InvalidInputError, match="has no option 'bogus'"):
        load_physics("mri_4x", {"bogus": 1})


def test_recon_preset_solver_options_are_merged_before_the_solver_is_made():
    preset = load_preset("mri_brain_4x").with_overrides(solver_options={"n_samples": 2})
    assert preset.build_solver().n_samples == 2


def test_a_brain_preset_takes_its_native_variant_for_inputs_at_the_scanners_resolution(
    tmp_path, monkeypatch
):
    preset = load_preset("mri_brain_4x")
    coarse, fine, measured = (preset.for_resolution(s) for s in (2.0, 0.91, None))
    assert coarse == preset and coarse.grid_size == (128, 128)
    assert fine == measured and fine.prior == "brain_native_2d" and fine.domain == "native"
    assert fine.grid_size is None and fine.grid_spacing is None  # the input's own grid
    # the native variant's solvers come from the presets tuned for that data, where they exist
    configs = tmp_path / "configs"
    (configs / "solver").mkdir(parents=True)
    for name, weight in (("tv_mri_4x", 0.01), ("tv_mri_4x_native", 0.003)):
        (configs / "solver" / f"{name}.yaml").write_text(
            f"_target_: medldm.solvers.tv.TotalVariation\nweight: {weight}\n"
        )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    assert fine.build_baseline().weight == 0.003 and coarse.build_baseline().weight == 0.01
    # naming a prior or a grid turns the choice off
    for chosen in (
        preset.with_overrides(prior="brain_t1_2d"),
        preset.with_overrides(grid={"size": [96, 96]}),
    ):
        assert chosen.for_resolution(0.91) == chosen and chosen.native == {}
    with pytest.raises(InvalidInputError, match="lacks"):
        preset.with_overrides(native={"prior": "x"})


def test_the_reconstruction_app_does_not_import_the_benchmark():
    code = (
        "import sys, medldm.recon.pipeline, medldm.recon.cli; "
        "print(sorted(m for m in sys.modules if m.startswith('medldm.bench')))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
