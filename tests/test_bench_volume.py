"""Volume mode of the benchmark: whole volumes stay one results row each, are scored slice
by slice over their foreground extent into slices.csv (position, third), and the report's
"Volumes, slice by slice" section compares the latent solver with the best classical one
per slice, overall and per third."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from test_bench_positions import FIRST, LAST, N_SLICES, _head, _IdentityFactory

from medldm.bench import CaseSource, run_benchmark, write_report
from medldm.bench.comparison import versus_best_classical_by_slice
from medldm.io.image import MedImage
from medldm.problems.model_view import model_stack, stack_extent
from medldm.solvers.base import Reconstruction

#: Stack indices (= axial slices, inferior first) of the synthetic head's extent by third:
#: offsets 0..18 of the extent; below 6 inferior, above 12 superior.
THIRDS = {
    "inferior": list(range(FIRST, FIRST + 6)),
    "middle": list(range(FIRST + 6, FIRST + 13)),
    "superior": list(range(FIRST + 13, LAST + 1)),
}
#: A constant error of SMALL (LARGE) on a slice of a volume with data range 1.
SMALL, LARGE = 0.01, 0.04
PSNR_GAP = 20 * np.log10(LARGE / SMALL)  # 12.04 dB


class _SliceError:
    """A fake solver: the measurement (identity physics) plus a constant error per axial
    slice, ``SMALL`` on the inferior third of the head's extent and ``LARGE`` elsewhere
    (or the other way round); ``nfe > 0`` makes it a latent solver for the comparison."""

    def __init__(self, name: str, good_inferior: bool, nfe: int):
        self.name, self.good_inferior, self.nfe = name, good_inferior, nfe

    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        x = physics.A_adjoint(y)
        inferior = torch.zeros(x.shape[2], dtype=torch.bool)
        inferior[: THIRDS["middle"][0]] = True
        small = inferior if self.good_inferior else ~inferior
        error = torch.where(small, SMALL, LARGE).to(x.dtype).reshape(1, 1, -1, 1, 1)
        x = x + error
        return Reconstruction(estimate=x, residual=physics.residual(x, y), nfe=self.nfe)


def _solvers() -> dict:
    return {
        "fake_tv": _SliceError("fake_tv", good_inferior=True, nfe=0),
        "fake_ldm": _SliceError("fake_ldm", good_inferior=False, nfe=10),
    }


def _save(volume: MedImage, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # stored at 100x the model range: the folder's percentile rule maps it back to [0, 1]
    nib.save(nib.Nifti1Image(volume.array * 100, volume.affine), folder / "head.nii.gz")
    return folder


def _run(folder: Path, out: Path, slices=None, solvers=None):
    return run_benchmark(
        CaseSource(root=str(folder), slices=slices),
        {"identity": _IdentityFactory()},
        solvers or _solvers(),
        [0],
        out,
        device="cpu",
        progress=False,
        save_arrays="none",
    )


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_whole_volume_case_is_the_axial_model_stack_whatever_the_storage_order(tmp_path):
    head, flipped = _head(), _head(direction=-1.0)
    (case,) = CaseSource(root=str(_save(head, tmp_path / "a")))
    (same,) = CaseSource(root=str(_save(flipped, tmp_path / "b")))
    assert case.image.shape == (N_SLICES, 16, 16)  # (z, y, x), z growing towards S
    np.testing.assert_array_equal(case.image, same.image)
    assert [item["slice"] for item in case.metadata["extent"]] == list(range(FIRST, LAST + 1))
    assert case.metadata["extent"] == same.metadata["extent"]
    np.testing.assert_array_equal(model_stack(flipped), model_stack(head))
    assert [s.index for s in stack_extent(flipped)] == list(range(FIRST, LAST + 1))


def test_the_extent_of_a_volume_is_the_one_foreground_sampling_takes(tmp_path):
    folder = _save(_head(direction=-1.0), tmp_path / "heads")
    (volume,) = CaseSource(root=str(folder))
    slices = list(CaseSource(root=str(folder), slices="all", slice_sampling="foreground"))
    # the 2D cases name storage indices (array index grows towards I): 29 - stack index
    as_2d = [
        (N_SLICES - 1 - c.metadata["slice_index"], c.metadata["position"], c.metadata["third"])
        for c in slices
    ]
    extent = [(e["slice"], e["position"], e["third"]) for e in volume.metadata["extent"]]
    assert extent == as_2d


def test_volume_rows_stay_one_per_volume_and_slices_csv_has_every_extent_slice(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    summary = _run(folder, tmp_path / "out")
    assert (summary.computed, summary.failed) == (2, 0)
    results = _csv_rows(tmp_path / "out" / "results.csv")
    assert [(r["solver"], r["shape"]) for r in results] == [
        ("fake_tv", f"{N_SLICES}x16x16"),
        ("fake_ldm", f"{N_SLICES}x16x16"),
    ]
    rows = _csv_rows(tmp_path / "out" / "slices.csv")
    assert len(rows) == 2 * (LAST - FIRST + 1)
    for solver in ("fake_tv", "fake_ldm"):
        mine = [r for r in rows if r["solver"] == solver]
        assert [int(r["slice"]) for r in mine] == list(range(FIRST, LAST + 1))
        assert {(r["dataset"], r["case"], r["operator"], r["seed"]) for r in mine} == {
            ("heads", "head.nii.gz", "identity", "0")
        }
        positions = [float(r["position"]) for r in mine]
        expected = [(k - FIRST) / (LAST - FIRST) for k in range(FIRST, LAST + 1)]
        assert positions == pytest.approx(expected)
        for third, indices in THIRDS.items():
            assert [int(r["slice"]) for r in mine if r["third"] == third] == indices
    # each slice scored with the volume's data range: 40 dB for an error of 0.01
    (volume,) = [r for r in results if r["solver"] == "fake_tv"]
    tv = {int(r["slice"]): r for r in rows if r["solver"] == "fake_tv"}
    assert float(tv[FIRST]["data_range"]) == float(volume["data_range"]) == pytest.approx(1.0)
    assert float(tv[FIRST]["psnr"]) == pytest.approx(40.0, abs=1e-3)
    assert float(tv[LAST]["psnr"]) == pytest.approx(40.0 - PSNR_GAP, abs=1e-3)


def test_a_rerun_adds_no_slice_rows_and_a_retried_volume_replaces_its_own(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    out = tmp_path / "out"
    _run(folder, out)
    first = _csv_rows(out / "slices.csv")
    summary = _run(folder, out)
    assert (summary.computed, summary.skipped_done) == (0, 2)
    assert _csv_rows(out / "slices.csv") == first
    # a run stopped between a volume's slice rows and its results row: the rerun computes
    # that volume again and its slice rows replace the earlier ones
    results = _csv_rows(out / "results.csv")
    kept = [r for r in results if r["solver"] != "fake_ldm"]
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(results[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    summary = _run(folder, out)
    assert (summary.computed, summary.skipped_done) == (1, 1)
    again = _csv_rows(out / "slices.csv")
    assert len(again) == len(first)
    key = ("solver", "slice", "position", "third", "psnr", "ssim")
    assert sorted(tuple(r[k] for k in key) for r in again) == sorted(
        tuple(r[k] for k in key) for r in first
    )


def test_the_report_compares_the_latent_solver_slice_by_slice_per_third(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    out = tmp_path / "out"
    _run(folder, out)
    results, slices = _csv_rows(out / "results.csv"), _csv_rows(out / "slices.csv")
    lines = versus_best_classical_by_slice(results, slices)
    assert [(line.third, line.latent, line.classical, line.n_pairs) for line in lines] == [
        ("all", "fake_ldm", "fake_tv", 19),
        ("inferior", "fake_ldm", "fake_tv", 6),
        ("middle", "fake_ldm", "fake_tv", 7),
        ("superior", "fake_ldm", "fake_tv", 6),
    ]
    gains = [line.psnr_gain for line in lines]
    assert gains[1:] == pytest.approx([-PSNR_GAP, PSNR_GAP, PSNR_GAP], abs=1e-3)
    assert gains[0] == pytest.approx(PSNR_GAP * (13 - 6) / 19, abs=1e-3)
    assert [line.wins for line in lines] == [13, 0, 7, 6]
    assert lines[1].ssim_gain < 0 < lines[2].ssim_gain and lines[3].ssim_gain > 0
    text = write_report(out)[0].read_text()
    assert "## Volumes, slice by slice" in text
    assert "| heads | identity | fake_ldm | 6 / 7 / 6 |" in text
    assert "| heads | identity | inferior | fake_ldm | fake_tv | 6 | -12.04 (" in text
    assert "| heads | identity | middle | fake_ldm | fake_tv | 7 | +12.04 (" in text
    assert "| 13 / 19 (68%) |" in text
    assert "Volumes, slice by slice" in (out / "report.html").read_text()


def test_2d_cases_write_no_slice_rows_and_no_volume_section(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    out = tmp_path / "out"

    class Plain:
        def solve(self, y, physics, prior=None, *, generator=None, callback=None):
            x = physics.A_adjoint(y)
            return Reconstruction(estimate=x, residual=physics.residual(x, y))

    summary = _run(folder, out, slices=3, solvers={"adjoint": Plain()})
    assert summary.computed == 3
    assert not (out / "slices.csv").exists()
    assert "Volumes, slice by slice" not in write_report(out)[0].read_text()


def test_volume_bench_config_keeps_the_ixi_test_volumes_whole_with_volume_presets():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from medldm.bench.cli import register_data_presets
    from medldm.problems.configs import config_dir, solver_for_operator

    register_data_presets()
    with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
        cfg = compose("ldm_volume")
    from medldm.recon.presets import load_preset

    # the app's whole-volume preset and the bench measure the same prior
    assert (cfg.data.card, cfg.data.split) == ("ixi_t1", "test")
    assert cfg.prior == load_preset("mri_brain_3d").prior == "brain_t1_lossless_2d"
    assert list(cfg.physics) == ["mri_4x", "mri_8x"] and list(cfg.seeds) == [0]
    assert list(cfg.solvers) == ["tv", "l1_wavelet", "latent_dds"]
    assert (cfg.domain, cfg.output_dir) == ("volume", "benchmarks/results/ldm_volume")
    assert instantiate(cfg.data, _convert_="all").slices is None
    presets = [solver_for_operator(s, "mri_8x", domain="volume")[1] for s in cfg.solvers]
    assert presets == ["tv_mri_8x", "l1_wavelet_mri_8x", "latent_dds_mri_8x_volume"]


def test_multislice_bench_config_measures_the_prior_of_the_apps_slab_presets():
    from hydra import compose, initialize_config_dir

    from medldm.bench.cli import register_data_presets
    from medldm.problems.configs import config_dir, solver_for_operator
    from medldm.recon.presets import load_preset

    register_data_presets()
    with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
        cfg = compose("ldm_multislice")
    for name in ("mri_brain_4x", "mri_brain_8x"):
        preset = load_preset(name)
        assert cfg.prior == preset.prior and preset.physics in cfg.physics
    presets = [solver_for_operator(s, "mri_4x_multislice")[1] for s in ("tv", "latent_dds")]
    assert presets == ["tv_mri_4x", "latent_dds_mri_4x_multislice"]


def test_a_volume_case_tells_a_slice_conditioned_prior_each_stack_slices_position(tmp_path):
    from test_bench_positions import positions_told

    folder = _save(_head(direction=-1.0), tmp_path / "heads")
    prior = positions_told(folder, tmp_path / "out", slices=None)
    (told,) = prior.told
    # the stack runs inferior to superior whatever the storage order (this head is stored
    # upside down), so its extent is stack slices FIRST..LAST; clipped to 0 below, 1 above
    expected = np.clip((np.arange(N_SLICES) - FIRST) / (LAST - FIRST), 0, 1)
    np.testing.assert_allclose(told, expected, atol=1e-6)
    assert prior.adjacent == [True]  # the stack is contiguous: slices see their neighbours
