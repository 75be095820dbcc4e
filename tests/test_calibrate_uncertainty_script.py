"""The std-calibration script's tuning domains (benchmarks/calibrate_uncertainty.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import calibrate_uncertainty

from medldm.problems.configs import solver_for_operator


def test_volume_domain_uses_whole_ixi_volumes_and_the_app_presets_prior():
    from medldm.recon.presets import load_preset

    table = calibrate_uncertainty.setups("volume")
    assert sorted(table) == ["mri_4x", "mri_4x_multislice", "mri_8x", "mri_8x_multislice"]
    # fitted with the prior the app's presets run: 3D k-space mri_brain_3d's, slice by
    # slice the 2 mm slab's of mri_brain_4x / 8x
    assert table["mri_4x"] == (load_preset("mri_brain_3d").prior, "ixi_t1", {"size": 128})
    assert table["mri_8x"][0] == "brain_t1_lossless_2d"
    for name, operator in (
        ("mri_brain_4x", "mri_4x_multislice"),
        ("mri_brain_8x", "mri_8x_multislice"),
    ):
        assert table[operator][0] == load_preset(name).prior == "brain_t1_lossless_2d"
    # 3D k-space takes the volume presets, slice-by-slice k-space the multislice ones
    presets = {
        op: solver_for_operator(
            "latent_dds", op, {}, calibrate_uncertainty.preset_domain("volume", op)
        )[1]
        for op in table
    }
    assert presets["mri_4x"] == "latent_dds_mri_4x_volume"
    assert presets["mri_8x_multislice"] == "latent_dds_mri_8x_multislice"
    flat = calibrate_uncertainty.setups(None)
    assert flat["ct_sparse_30"][0] == "ct_2d"
    # 2D fits take the prior the app runs for each operator at 2 mm
    assert flat["mri_4x"][0] == flat["mri_multicoil_8x"][0] == load_preset("mri_brain_4x").prior
    assert flat["inpaint_box"][0] == load_preset("inpaint_box").prior == "brain_t1_2d"


def test_an_operator_without_a_setup_in_the_domain_is_refused(capsys):
    with pytest.raises(SystemExit):
        calibrate_uncertainty.main(["--domain", "volume", "--operators", "ct_sparse_30"])
    assert "no setup for ct_sparse_30" in capsys.readouterr().err
