"""The std-calibration script's tuning domains (benchmarks/calibrate_uncertainty.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import calibrate_uncertainty

from medldm.problems.configs import solver_for_operator


def test_volume_domain_uses_whole_ixi_volumes_and_the_2d_brain_prior():
    table = calibrate_uncertainty.setups("volume")
    assert sorted(table) == ["mri_4x", "mri_4x_multislice", "mri_8x", "mri_8x_multislice"]
    assert table["mri_4x"] == ("brain_t1_2d", "ixi_t1", {"size": 128})
    # 3D k-space takes the volume presets, slice-by-slice k-space the multislice ones
    presets = {
        op: solver_for_operator(
            "latent_dds", op, {}, calibrate_uncertainty.preset_domain("volume", op)
        )[1]
        for op in table
    }
    assert presets["mri_4x"] == "latent_dds_mri_4x_volume"
    assert presets["mri_8x_multislice"] == "latent_dds_mri_8x_multislice"
    assert calibrate_uncertainty.setups(None)["ct_sparse_30"][0] == "ct_2d"


def test_an_operator_without_a_setup_in_the_domain_is_refused(capsys):
    with pytest.raises(SystemExit):
        calibrate_uncertainty.main(["--domain", "volume", "--operators", "ct_sparse_30"])
    assert "no setup for ct_sparse_30" in capsys.readouterr().err
