"""Whole-head benchmark rows: slices sampled over a volume's foreground extent, their
position and third in results.csv, and the report's "By position" section."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medldm.bench import COLUMNS, CaseSource, ResultsTable, run_benchmark, write_report
from medldm.bench.comparison import versus_best_classical, versus_best_classical_by_third
from medldm.errors import InvalidInputError
from medldm.io.image import MedImage
from medldm.physics.base import LinearPhysics
from medldm.problems.model_view import sample_model_slices
from medldm.solvers.base import Reconstruction

#: The synthetic head: 30 axial slices (array axis 2), foreground on slices 5..23.
N_SLICES, FIRST, LAST = 30, 5, 23


def _head(direction: float = 1.0) -> MedImage:
    """A 16 x 16 x 30 volume in the model range whose foreground extent is slices 5..23.

    Inside the extent half of each slice is 1.0; just outside it, slices 4 and 24 have
    10 % and 14 % of their pixels at 1.0 (below the 15 % rule), and every slice has a 0.05
    haze (below the 0.1 level) over the other half; slice k lies at world z = -30 + 2 k mm.
    ``direction=-1`` stores the same head from superior to inferior (array index grows
    towards I): array slice j is anatomical slice 29 - j, the extent is slices 6..24.
    """
    array = np.zeros((16, 16, N_SLICES), np.float32)
    array[8:, :, :] = 0.05
    array[:8, :, FIRST : LAST + 1] = 1.0
    edge = array[:, :, 4].reshape(-1)
    edge[: round(0.10 * 256)] = 1.0
    array[:, :, 4] = edge.reshape(16, 16)
    edge = array[:, :, 24].reshape(-1)
    edge[: round(0.14 * 256)] = 1.0
    array[:, :, 24] = edge.reshape(16, 16)
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[2, 3] = -30.0
    if direction < 0:
        array = np.ascontiguousarray(array[:, :, ::-1])
        affine[2, 2:] = [-2.0, -30.0 + 2.0 * (N_SLICES - 1)]
    return MedImage(array, affine)


def _world_z(volume: MedImage, index: int) -> float:
    return float((volume.affine @ np.array([0, 0, index, 1.0]))[2])


# --- the sampling rule --------------------------------------------------------------------
def test_foreground_sampling_spreads_slices_evenly_over_the_extent_with_positions_and_thirds():
    picked = sample_model_slices(_head(), 7, sampling="foreground")
    assert [s.index for s in picked] == [5, 8, 11, 14, 17, 20, 23]
    assert [s.position for s in picked] == pytest.approx([0, 1 / 6, 1 / 3, 1 / 2, 2 / 3, 5 / 6, 1])
    # positions exactly at 1/3 and 2/3 belong to the middle third
    assert [s.third for s in picked] == ["inferior"] * 2 + ["middle"] * 3 + ["superior"] * 2
    assert all(s.pixels.shape == (16, 16) for s in picked)  # (rows, cols) = (y, x)


def test_inferior_and_superior_follow_the_anatomy_not_the_array_order():
    head, flipped = _head(), _head(direction=-1.0)
    picked = sample_model_slices(flipped, 7, sampling="foreground")
    # array index grows towards I: the inferior end of the extent is the highest index
    assert [s.index for s in picked] == [24, 21, 18, 15, 12, 9, 6]
    assert [s.third for s in picked] == ["inferior"] * 2 + ["middle"] * 3 + ["superior"] * 2
    world = [_world_z(flipped, s.index) for s in picked]
    assert world == sorted(world)  # position 0 is the lowest world z (most inferior)
    same = [_world_z(head, s.index) for s in sample_model_slices(head, 7, sampling="foreground")]
    assert world == same  # the same anatomy is picked, whatever the storage order


def test_all_takes_every_slice_of_the_extent_and_more_than_it_holds_takes_them_too():
    every = sample_model_slices(_head(), None, sampling="foreground")
    assert [s.index for s in every] == list(range(FIRST, LAST + 1))
    assert every[0].position == 0.0 and every[-1].position == 1.0
    assert [s.third for s in every].count("middle") == 7  # offsets 6..12 of 0..18
    assert [s.index for s in sample_model_slices(_head(), 50, sampling="foreground")] == [
        s.index for s in every
    ]
    (single,) = sample_model_slices(_head(), 1, sampling="foreground")
    assert (single.index, single.position, single.third) == (14, 0.5, "middle")


def test_a_volume_without_foreground_cannot_be_sampled_by_foreground():
    empty = MedImage(np.full((8, 8, 6), 0.05, np.float32), np.eye(4))
    with pytest.raises(InvalidInputError, match="no foreground extent"):
        sample_model_slices(empty, 3, sampling="foreground")
    with pytest.raises(InvalidInputError, match="unknown slice sampling"):
        sample_model_slices(empty, 3, sampling="random")


# --- cases ----------------------------------------------------------------------------------
def _save(volume: MedImage, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # stored at 100x the model range: the folder's percentile rule maps it back to [0, 1]
    nib.save(nib.Nifti1Image(volume.array * 100, volume.affine), folder / "head.nii.gz")
    return folder


def test_case_source_foreground_cases_record_position_and_third(tmp_path):
    folder = _save(_head(direction=-1.0), tmp_path / "heads")
    cases = list(CaseSource(root=str(folder), slices=3, slice_sampling="foreground", size=16))
    assert [c.case_id for c in cases] == [f"head.nii.gz/slice{i:03d}" for i in (24, 15, 6)]
    assert [c.metadata["position"] for c in cases] == [0.0, 0.5, 1.0]
    assert [c.metadata["third"] for c in cases] == ["inferior", "middle", "superior"]
    every = list(CaseSource(root=str(folder), slices="all", slice_sampling="foreground"))
    assert len(every) == LAST - FIRST + 1


def test_the_default_sampling_stays_central_without_positions(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    cases = list(CaseSource(root=str(folder), slices=3, size=16))
    assert [c.case_id for c in cases] == [f"head.nii.gz/slice{i:03d}" for i in (13, 14, 15)]
    assert all("third" not in c.metadata and "position" not in c.metadata for c in cases)
    assert len(list(CaseSource(root=str(folder), slices="all"))) == N_SLICES


def test_case_source_refuses_unknown_sampling_and_foreground_without_slices():
    with pytest.raises(InvalidInputError, match="slice_sampling"):
        CaseSource(root="/tmp", slices=2, slice_sampling="random")
    with pytest.raises(InvalidInputError, match=r"data\.slices=all"):
        CaseSource(root="/tmp", slice_sampling="foreground")
    with pytest.raises(InvalidInputError, match="'all'"):
        CaseSource(root="/tmp", slices="most")


def test_whole_head_bench_config_samples_8_foreground_slices_of_the_ixi_test_subjects():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from medldm.bench.cli import register_data_presets
    from medldm.problems.configs import config_dir
    from medldm.recon.presets import load_preset

    register_data_presets()
    with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
        cfg = compose("ldm_whole_head", overrides=["data.slices=all"])
        default = compose("config", overrides=["data.root=/tmp"])
    assert (cfg.data.card, cfg.data.split) == ("ixi_t1", "test")
    assert cfg.prior == load_preset("mri_brain_4x").prior == "brain_t1_lossless_2d"
    assert list(cfg.physics) == ["mri_4x", "mri_8x"] and list(cfg.seeds) == [0]
    assert list(cfg.solvers) == ["tv", "l1_wavelet", "latent_dds"]
    source = instantiate(cfg.data, _convert_="all")
    assert (source.slices, source.slice_sampling) == ("all", "foreground")
    assert instantiate(default.data, _convert_="all").slice_sampling == "central"


# --- results and report ----------------------------------------------------------------------
class _Identity(LinearPhysics):
    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y


class _IdentityFactory:
    def build(self, image_shape, generator, device):
        return _Identity()


class _Adjoint:
    name = "adjoint"

    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        x = physics.A_adjoint(y)
        return Reconstruction(estimate=x, residual=physics.residual(x, y))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_foreground_rows_carry_position_and_third_and_central_rows_leave_them_empty(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    for sampling, out in (("foreground", "fg"), ("central", "central")):
        run_benchmark(
            CaseSource(root=str(folder), slices=3, slice_sampling=sampling),
            {"identity": _IdentityFactory()},
            {"adjoint": _Adjoint()},
            [0],
            tmp_path / out,
            device="cpu",
            progress=False,
            save_arrays="none",
        )
    rows = _csv_rows(tmp_path / "fg" / "results.csv")
    assert [(r["third"], float(r["position"])) for r in rows] == [
        ("inferior", 0.0),
        ("middle", 0.5),
        ("superior", 1.0),
    ]
    central = _csv_rows(tmp_path / "central" / "results.csv")
    assert len(central) == 3 and all(r["third"] == r["position"] == "" for r in central)


class _SlicePrior:
    """Records the slice positions a slice-conditioned prior is told during each solve."""

    slice_conditioned = True

    def __init__(self):
        self.now, self.told, self.adjacent = None, [], []

    @contextlib.contextmanager
    def at_slice_positions(self, positions, *, adjacent=False):
        self.now = list(positions)
        self.adjacent.append(adjacent)
        yield
        self.now = None


class _Listening(_Adjoint):
    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        prior.told.append(prior.now)
        return super().solve(y, physics, prior, generator=generator, callback=callback)


def positions_told(folder: Path, out: Path, slices) -> _SlicePrior:
    """Run the bench on ``folder`` with a listening solver: the prior, with every solve's
    slice positions in ``told``."""
    prior = _SlicePrior()
    run_benchmark(
        CaseSource(root=str(folder), slices=slices),
        {"identity": _IdentityFactory()},
        {"adjoint": _Listening()},
        [0],
        out,
        device="cpu",
        progress=False,
        save_arrays="none",
        prior=prior,
    )
    return prior


def test_every_volume_slice_case_tells_a_slice_conditioned_prior_where_it_lies(tmp_path):
    folder = _save(_head(), tmp_path / "heads")
    cases = list(CaseSource(root=str(folder), slices=3, size=16))  # central: 13, 14, 15
    expected = [(i - FIRST) / (LAST - FIRST) for i in (13, 14, 15)]
    np.testing.assert_allclose([c.metadata["slice_position"] for c in cases], expected)
    prior = positions_told(folder, tmp_path / "out", slices=3)
    np.testing.assert_allclose([told[0] for told in prior.told], expected, rtol=1e-6)
    assert prior.now is None
    assert not any(prior.adjacent)  # a single slice has no neighbours in its case


def _append(table: ResultsTable, case: str, solver: str, psnr: float, **extra) -> None:
    table.append(
        {
            "dataset": "d",
            "case": case,
            "operator": "mri_4x",
            "solver": solver,
            "seed": 0,
            "status": "ok",
            "psnr": psnr,
            "ssim": 0.8,
            "nmse": 0.01,
            "seconds": 1.0,
            "nfe": 100 if solver == "latent_dds" else 0,
            **extra,
        }
    )


#: (case, third, position, tv, l1_wavelet, latent_dds PSNR); l1_wavelet is best overall
#: but TV is the better classical solver on the superior cases.
GRID = [
    ("c0", "inferior", 0.0, 28.0, 30.0, 29.0),
    ("c1", "inferior", 0.2, 28.0, 30.0, 29.5),
    ("c2", "middle", 0.5, 29.0, 31.0, 33.0),
    ("c3", "middle", 0.6, 29.0, 31.0, 32.0),
    ("c4", "superior", 0.8, 31.0, 30.0, 31.0),
    ("c5", "superior", 1.0, 31.5, 30.0, 32.0),
]


def test_the_comparison_splits_by_third_against_the_overall_best_classical_solver():
    rows = [
        {
            "dataset": "d",
            "case": case,
            "operator": "mri_4x",
            "solver": solver,
            "seed": "0",
            "status": "ok",
            "psnr": str(value),
            "ssim": "0.8",
            "nfe": "100" if solver == "latent_dds" else "0",
            "third": third,
            "position": str(position),
        }
        for case, third, position, *values in GRID
        for solver, value in zip(("tv", "l1_wavelet", "latent_dds"), values, strict=True)
    ]
    (overall,) = versus_best_classical(rows)
    lines = versus_best_classical_by_third(rows)
    assert [line.third for line in lines] == ["inferior", "middle", "superior"]
    assert {line.classical for line in lines} == {overall.classical} == {"l1_wavelet"}
    assert [line.psnr_gain for line in lines] == pytest.approx([-0.75, 1.5, 1.5])
    assert [(line.n_pairs, line.wins) for line in lines] == [(2, 0), (2, 2), (2, 2)]
    half = 12.7062 * np.std([2.0, 1.0], ddof=1) / np.sqrt(2)  # t(0.975, 1 dof)
    assert lines[1].psnr_ci == pytest.approx((1.5 - half, 1.5 + half), rel=1e-4)
    assert lines[1].cells()[:3] == ["d", "mri_4x", "middle"]
    assert versus_best_classical_by_third([{**r, "third": ""} for r in rows]) == []


def test_report_has_a_by_position_section_only_when_rows_carry_thirds(tmp_path):
    with_thirds, without = tmp_path / "whole_head", tmp_path / "central"
    for case, third, position, *values in GRID:
        for solver, value in zip(("tv", "l1_wavelet", "latent_dds"), values, strict=True):
            _append(ResultsTable(with_thirds / "results.csv"), case, solver, value, third=third,
                    position=position)  # fmt: skip
            _append(ResultsTable(without / "results.csv"), case, solver, value)
    text = write_report(with_thirds)[0].read_text()
    assert "## By position" in text
    assert "| d | mri_4x | latent_dds | 2 / 2 / 2 | 29.25 ± 0.35 | 32.50 ± 0.71 |" in text
    assert "### Latent priors vs the best classical baseline, by third" in text
    assert "| d | mri_4x | inferior | latent_dds | l1_wavelet | 2 | -0.75 (" in text
    assert "By position" in (with_thirds / "report.html").read_text()
    plain = write_report(without)[0].read_text()
    assert "By position" not in plain and "## Latent priors vs the best classical" in plain


def test_an_older_results_file_without_the_position_columns_still_loads_and_reports(tmp_path):
    path = tmp_path / "results.csv"
    old_header = [c for c in COLUMNS if c not in ("position", "third")]
    line = {c: "" for c in old_header} | {
        "dataset": "d",
        "case": "a",
        "operator": "mri_4x",
        "solver": "tv",
        "seed": "0",
        "status": "ok",
        "psnr": "30",
        "ssim": "0.9",
    }
    path.write_text(",".join(old_header) + "\n" + ",".join(line[c] for c in old_header) + "\n")
    table = ResultsTable(path)
    (row,) = table.read()
    assert row["psnr"] == "30" and row.get("third") is None
    text = write_report(tmp_path)[0].read_text()
    assert "30.00 ± 0.00" in text and "By position" not in text
    # a whole-head row appended later extends the header; the old row reads back empty
    _append(table, "b", "tv", 31.0, third="middle", position=0.5)
    assert [(r["case"], r["third"]) for r in table.read()] == [("a", ""), ("b", "middle")]
    assert "## By position" in write_report(tmp_path)[0].read_text()
