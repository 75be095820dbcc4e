"""The benchmark harness end to end on a tiny grid (CPU, 32x32 images, seconds).

Covers the Python API and the ``medldm-bench`` command line (contract of issue 3 and a
joblib multirun), resume without duplicates, failures recorded without stopping the run,
reproducibility per seed, solver applicability, case reading, and the report.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from skimage.data import camera

from medldm.bench import COLUMNS, CaseSource, ResultsTable, run_benchmark, write_report
from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.compatibility import is_applicable
from medldm.metrics import METRIC_CONVENTION
from medldm.physics.base import LinearPhysics
from medldm.problems.configs import available_presets, load_physics, solver_for_operator
from medldm.solvers.base import Reconstruction

REPO = Path(__file__).resolve().parents[1]
STANDARD_PHYSICS = (
    "mri_4x",
    "mri_8x",
    "mri_multicoil_4x",
    "mri_multicoil_8x",
    "inpaint_box",
    "inpaint_random",
    "ct_sparse_30",
    "ct_sparse_60",
    "ct_limited_90",
    "microscopy_deconv",
)


# --- fixtures and stand-ins -------------------------------------------------------------
def _small_images(n: int = 3, size: int = 32) -> np.ndarray:
    """Real image structure (scikit-image's camera), downsampled, flipped variants."""
    step = camera().shape[0] // size
    base = camera()[::step, ::step][:size, :size].astype(np.float32)
    variants = [base, base[::-1], base[:, ::-1], base.T]
    return np.stack(variants[:n])


@pytest.fixture
def cohort(tmp_path: Path) -> Path:
    """A folder holding one .npz with 3 images of 32x32 (3 cases)."""
    folder = tmp_path / "cohort"
    folder.mkdir()
    np.savez(folder / "images.npz", images=_small_images())
    return folder


class CountingAdjoint:
    """``A^H y``, counting its calls and remembering the measurements it saw."""

    name = "counting"

    def __init__(self) -> None:
        self.calls = 0
        self.measurements: list[torch.Tensor] = []

    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        self.calls += 1
        self.measurements.append(y.clone())
        x = physics.A_adjoint(y)
        return Reconstruction(estimate=x, residual=physics.residual(x, y))


class BrokenSolver:
    """Always raises, like a solver with a bug."""

    name = "broken"

    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        raise RuntimeError("deliberately broken solver")


class FlakySolver(CountingAdjoint):
    """Fails its first ``n_failures`` calls, then works."""

    name = "flaky"

    def __init__(self, n_failures: int) -> None:
        super().__init__()
        self.n_failures = n_failures

    def solve(self, y, physics, prior=None, *, generator=None, callback=None):
        if self.n_failures > 0:
            self.n_failures -= 1
            raise RuntimeError("transient failure")
        return super().solve(y, physics, prior, generator=generator, callback=callback)


class Identity(LinearPhysics):
    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y


class IdentityFactory:
    name = "identity"

    def build(self, image_shape, generator, device):
        return Identity()


def _rows(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _keys(rows: list[dict[str, str]]) -> list[tuple[str, ...]]:
    return [(r["dataset"], r["case"], r["operator"], r["solver"], r["seed"]) for r in rows]


# --- Python API ---------------------------------------------------------------------------
def test_python_api_runs_tiny_grid_and_writes_results_and_reports(cohort, tmp_path):
    out = tmp_path / "out"
    summary = run_benchmark(
        CaseSource(root=str(cohort)),
        ["inpaint_random", "mri_4x"],
        ["zero_filled", "cg"],
        [0, 1],
        out,
        device="cpu",
        progress=False,
    )
    assert (summary.cases, summary.computed, summary.failed) == (3, 24, 0)
    rows = _rows(out)
    assert len(rows) == 24 and len(set(_keys(rows))) == 24
    assert {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert np.isfinite(float(row["psnr"])) and -1 <= float(row["ssim"]) <= 1
        assert float(row["nmse"]) >= 0 and float(row["seconds"]) >= 0
        assert float(row["peak_mem_mb"]) >= 0 and row["nfe"] == "0"
        assert row["shape"] == "32x32" and row["device"] == "cpu"
        assert row["precision"] == "fp32"  # classical solvers run no network
    assert {r["operator"] for r in rows} == {"inpaint_random", "mri_4x"}
    # Measurement view + each solver's estimate, for the first seed only.
    assert len(list((out / "cases").glob("*/*.npz"))) == 3 * 2 * (1 + 2)

    markdown, html = write_report(out)
    text = markdown.read_text()
    assert METRIC_CONVENTION in text
    assert "| cohort | mri_4x | cg | 6 |" in text and "24 ok, 0 failed" in text
    assert "figures/cohort/" in text and list((out / "figures").glob("*/*.png"))
    page = html.read_text()
    assert "data:image/png;base64," in page and "<table>" in page


def test_measurement_is_simulated_once_and_shared_by_all_solvers(cohort, tmp_path):
    first, second = CountingAdjoint(), CountingAdjoint()
    run_benchmark(
        CaseSource(root=str(cohort), limit=1),
        ["mri_4x"],
        {"first": first, "second": second},
        [0, 1],
        tmp_path / "out",
        progress=False,
    )
    assert first.calls == second.calls == 2
    for y_first, y_second in zip(first.measurements, second.measurements, strict=True):
        assert torch.equal(y_first, y_second)
    assert not torch.equal(first.measurements[0], first.measurements[1])  # seeds differ


def test_rerun_skips_completed_rows_without_duplicates(cohort, tmp_path):
    out = tmp_path / "out"
    solver = CountingAdjoint()
    grid = (CaseSource(root=str(cohort)), ["inpaint_box"], {"counting": solver}, [0, 1], out)
    run_benchmark(*grid, progress=False)
    assert solver.calls == 6
    before = _rows(out)

    summary = run_benchmark(*grid, progress=False)
    assert solver.calls == 6  # nothing recomputed
    assert (summary.computed, summary.skipped_done) == (0, 6)
    assert _rows(out) == before  # same rows, same timestamps, no duplicates

    run_benchmark(grid[0], grid[1], grid[2], [0, 1, 2], out, progress=False)  # one more seed
    assert solver.calls == 9
    rows = _rows(out)
    assert len(rows) == 9 and len(set(_keys(rows))) == 9


def test_rerun_flags_rows_made_with_since_edited_presets(cohort, tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    (configs / "physics").mkdir(parents=True)
    (configs / "solver").mkdir()
    preset = (REPO / "configs" / "physics" / "inpaint_box.yaml").read_text()
    (configs / "physics" / "inpaint_box.yaml").write_text(preset)
    solver_preset = configs / "solver" / "cg.yaml"
    solver_preset.write_text("_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: 5\n")
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    grid = (CaseSource(root=str(cohort)), ["inpaint_box"], ["cg"], [0], tmp_path / "out")
    run_benchmark(*grid, progress=False)
    assert run_benchmark(*grid, progress=False).skipped_stale == 0

    solver_preset.write_text("_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: 9\n")
    summary = run_benchmark(*grid, progress=False)
    assert (summary.computed, summary.skipped_done, summary.skipped_stale) == (0, 3, 3)
    assert {r["solver_preset"] for r in _rows(tmp_path / "out")} == {"cg"}


def test_rerun_with_retrained_prior_weights_flags_the_latent_rows(
    cohort, tmp_path, monkeypatch, tiny_prior_folder
):
    from medldm.models.checkpoint import save_prior_checkpoint
    from medldm.models.prior import load_prior

    configs = tmp_path / "configs"
    (configs / "physics").mkdir(parents=True)
    (configs / "solver").mkdir()
    preset = (REPO / "configs" / "physics" / "inpaint_box.yaml").read_text()
    (configs / "physics" / "inpaint_box.yaml").write_text(preset)
    (configs / "solver" / "cg.yaml").write_text(
        "_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: 5\n"
    )
    (configs / "solver" / "latent_dds.yaml").write_text(
        "_target_: medldm.solvers.latent_dds.LatentDDS\nn_steps: 2\nn_samples: 1\nfinal_dc: false\n"
    )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    first = load_prior(tiny_prior_folder, device="cpu")
    retrained = load_prior(tiny_prior_folder, device="cpu")
    with torch.no_grad():
        next(retrained.unet.parameters()).add_(0.01)
    folder = save_prior_checkpoint(
        tmp_path / "retrained",
        config=retrained.config,
        autoencoder=retrained.autoencoder,
        unet=retrained.unet,
        scale_factor=1.0,
    )
    grid = (CaseSource(root=str(cohort)), ["inpaint_box"], ["cg", "latent_dds"], [0])
    out = tmp_path / "out"
    assert run_benchmark(*grid, out, prior=first, progress=False).computed == 6
    digests = {r["solver"]: r["config_digest"] for r in _rows(out)}
    assert digests["latent_dds"].count("-") == 2 and digests["cg"].count("-") == 1
    again = run_benchmark(*grid, out, prior=first, progress=False)
    assert (again.skipped_done, again.skipped_stale) == (6, 0)
    # new weights: the 3 latent rows are stale, the classical ones are not
    summary = run_benchmark(*grid, out, prior=load_prior(folder, device="cpu"), progress=False)
    assert (summary.computed, summary.skipped_done, summary.skipped_stale) == (0, 6, 3)


def test_failing_solver_is_recorded_and_the_run_goes_on(cohort, tmp_path):
    out = tmp_path / "out"
    summary = run_benchmark(
        CaseSource(root=str(cohort)),
        {"identity": IdentityFactory()},
        {"broken": BrokenSolver(), "counting": CountingAdjoint()},
        [0],
        out,
        progress=False,
    )
    assert (summary.computed, summary.failed) == (3, 3)
    rows = _rows(out)
    broken = [r for r in rows if r["solver"] == "broken"]
    assert {r["status"] for r in broken} == {"failed"}
    assert all("deliberately broken solver" in r["error"] for r in broken)
    assert {r["status"] for r in rows if r["solver"] == "counting"} == {"ok"}
    markdown, _ = write_report(out)
    assert "3 ok, 3 failed" in markdown.read_text()
    assert "deliberately broken solver" in markdown.read_text()


def test_failed_rows_are_retried_and_replaced_on_rerun(cohort, tmp_path):
    out = tmp_path / "out"
    grid = (CaseSource(root=str(cohort)), {"identity": IdentityFactory()})
    run_benchmark(*grid, {"flaky": FlakySolver(n_failures=99)}, [0], out, progress=False)
    assert {r["status"] for r in _rows(out)} == {"failed"}

    solver = FlakySolver(n_failures=0)
    run_benchmark(*grid, {"flaky": solver}, [0], out, progress=False)
    rows = _rows(out)
    assert solver.calls == 3
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}


def test_corrupt_file_in_folder_is_recorded_as_failed_and_others_run(cohort, tmp_path):
    (cohort / "broken.nii.gz").write_bytes(b"this is not a NIfTI file")
    out = tmp_path / "out"
    summary = run_benchmark(
        CaseSource(root=str(cohort)),
        ["inpaint_box"],
        ["zero_filled", "biharmonic"],
        [0, 1],
        out,
        progress=False,
    )
    assert summary.case_failures == 1
    rows = _rows(out)
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["case"] for r in failed} == {"broken.nii.gz"}
    assert len(failed) == 2 * 2  # two solvers x two seeds
    assert all("broken.nii.gz" in r["error"] for r in failed)
    assert sum(r["status"] == "ok" for r in rows) == 3 * 2 * 2


def test_same_seed_gives_same_numbers(cohort, tmp_path):
    def numbers(out: Path, seeds: list[int]) -> list[tuple[str, ...]]:
        run_benchmark(
            CaseSource(root=str(cohort), limit=2),
            ["mri_multicoil_8x", "inpaint_random"],
            ["zero_filled"],
            seeds,
            out,
            progress=False,
        )
        return [
            (*k, r["psnr"], r["ssim"], r["nmse"])
            for k, r in zip(_keys(_rows(out)), _rows(out), strict=True)
        ]

    assert numbers(tmp_path / "a", [3]) == numbers(tmp_path / "b", [3])
    other = numbers(tmp_path / "c", [4])
    assert [n[5:] for n in other] != [n[5:] for n in numbers(tmp_path / "a", [3])]


def test_inapplicable_solver_is_skipped_not_failed(cohort, tmp_path):
    out = tmp_path / "out"
    summary = run_benchmark(
        CaseSource(root=str(cohort), limit=1),
        ["mri_4x", "inpaint_box"],
        ["biharmonic", "zero_filled"],
        [0],
        out,
        progress=False,
    )
    assert summary.skipped_inapplicable == 1 and summary.failed == 0
    pairs = {(r["operator"], r["solver"]) for r in _rows(out)}
    assert pairs == {
        ("mri_4x", "zero_filled"),
        ("inpaint_box", "zero_filled"),
        ("inpaint_box", "biharmonic"),
    }


def test_applicability_comes_from_what_solver_and_physics_declare():
    from medldm.physics.base import CONVOLUTION

    class NeedsConvolution:
        name = "richardson_lucy"  # the name plays no part
        requires = frozenset({CONVOLUTION})

    class Convolution(Identity):
        capabilities = frozenset({CONVOLUTION})

    class Undeclared:
        name = "biharmonic"

    assert not is_applicable(NeedsConvolution(), Identity())
    assert is_applicable(NeedsConvolution(), Convolution())
    assert is_applicable(Undeclared(), Identity())


@pytest.mark.parametrize("physics_name", STANDARD_PHYSICS)
def test_biharmonic_applies_to_inpainting_and_richardson_lucy_to_blur_only(physics_name):
    from medldm.solvers import SOLVERS

    physics = load_physics(physics_name).build((32, 32), torch.Generator().manual_seed(0), "cpu")
    applicable = {name for name, cls in SOLVERS.items() if is_applicable(cls(), physics)}
    expected = set(SOLVERS)
    if not physics_name.startswith("inpaint"):
        expected.discard("biharmonic")
    if physics_name != "microscopy_deconv":
        expected.discard("richardson_lucy")
    assert applicable == expected


# --- presets ------------------------------------------------------------------------------
def test_every_issue_physics_preset_exists():
    assert set(STANDARD_PHYSICS) <= set(available_presets("physics"))


@pytest.mark.parametrize("name", STANDARD_PHYSICS)
def test_physics_preset_builds_a_seeded_operator_with_finite_measurements(name):
    if name == "microscopy_deconv":
        pytest.importorskip("medldm.physics.blur")
    factory = load_physics(name)
    x = torch.from_numpy(_small_images(1) / 255.0).float()[None]

    def measure(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        physics = factory.build((32, 32), generator, "cpu")
        return physics(factory.prepare_object(x, generator), generator)

    y = measure(0)
    assert torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()
    assert torch.equal(y, measure(0)) and not torch.equal(y, measure(1))


def test_per_operator_solver_preset_wins_over_the_generic_one(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    (configs / "solver").mkdir(parents=True)
    (configs / "solver" / "cg.yaml").write_text(
        "_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: 5\n"
    )
    (configs / "solver" / "cg_mri_4x.yaml").write_text(
        "_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: 7\n"
    )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    assert solver_for_operator("cg", "mri_4x")[1] == "cg_mri_4x"
    assert solver_for_operator("cg", "mri_8x")[1] == "cg"
    assert solver_for_operator("zero_filled", "mri_8x")[1] == "registry:zero_filled"


def test_a_domain_preset_wins_for_its_data_and_the_others_fall_back(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    (configs / "solver").mkdir(parents=True)
    for name, n_iter in (("cg", 5), ("cg_mri_4x", 7), ("cg_mri_4x_native", 9)):
        (configs / "solver" / f"{name}.yaml").write_text(
            f"_target_: medldm.solvers.cg.ConjugateGradient\nn_iter: {n_iter}\n"
        )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    solver, source = solver_for_operator("cg", "mri_4x", domain="native")
    assert (source, solver.n_iter) == ("cg_mri_4x_native", 9)
    assert solver_for_operator("cg", "mri_4x")[1] == "cg_mri_4x"
    assert solver_for_operator("cg", "mri_8x", domain="native")[1] == "cg"
    # the bench records which preset each row ran
    from medldm.bench.runner import _SolverCatalog

    assert _SolverCatalog(["cg"], "native").get("mri_4x", "cg")[1] == "cg_mri_4x_native"
    assert _SolverCatalog(["cg"]).get("mri_4x", "cg")[1] == "cg_mri_4x"


# --- cases --------------------------------------------------------------------------------
def test_npz_images_array_counts_as_n_cases_normalised_to_unit_range(cohort):
    cases = list(CaseSource(root=str(cohort)))
    assert [c.case_id for c in cases] == [f"images.npz[{i}]" for i in range(3)]
    for case in cases:
        assert isinstance(case, Case) and case.image.dtype == np.float32
        assert case.image.min() >= 0 and case.image.max() == 1.0
        assert case.normalization.method == "percentile 0.5-99.5"


def test_volume_gives_its_central_slices_padded_to_size(tmp_path):
    volume = np.random.default_rng(0).random((20, 24, 10)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "vol.nii.gz")
    cases = list(CaseSource(root=str(tmp_path), slices=3, size=32))
    assert [c.case_id for c in cases] == [f"vol.nii.gz/slice{i:03d}" for i in (3, 4, 5)]
    assert all(c.image.shape == (32, 32) for c in cases)
    # Slices share the volume's normalisation; the inverse gives back the input's units.
    assert len({c.normalization for c in cases}) == 1
    assert np.isclose(cases[0].in_physical_units(cases[0].image).max(), volume.max(), rtol=0.02)


def test_npz_without_images_array_is_a_case_failure(tmp_path):
    np.savez(tmp_path / "other.npz", volumes=np.zeros((2, 8, 8)))
    (failure,) = list(CaseSource(root=str(tmp_path)))
    assert isinstance(failure, CaseFailure) and "'images'" in failure.error


def test_case_source_needs_exactly_one_of_card_and_root():
    with pytest.raises(ValueError, match="exactly one"):
        CaseSource()


# --- results table --------------------------------------------------------------------------
def _append_rows(path: str, worker: int) -> None:
    table = ResultsTable(path)
    for index in range(15):
        table.append(
            {
                "dataset": "d",
                "case": f"{worker}-{index}",
                "operator": "o",
                "solver": "s",
                "seed": 0,
                "status": "ok",
                "psnr": float(index),
            }
        )


def test_concurrent_processes_append_to_one_file_safely(tmp_path):
    path = str(tmp_path / "results.csv")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_rows, args=(path, w)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    lines = Path(path).read_text().splitlines()
    assert lines[0].startswith("dataset,case,operator") and len(lines) == 1 + 45
    assert sum(line.startswith("dataset,") for line in lines) == 1


# --- command line ---------------------------------------------------------------------------
def _bench(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "medldm.bench.cli", *arguments],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_console_script_is_declared():
    assert 'medldm-bench = "medldm.bench.cli:main"' in (REPO / "pyproject.toml").read_text()


def test_cli_contract_writes_results_and_reports(cohort, tmp_path):
    volume = np.random.default_rng(1).random((24, 24, 12)).astype(np.float32)
    nib.save(nib.Nifti1Image(volume, np.eye(4)), cohort / "volume.nii.gz")
    result = _bench(
        f"data.root={cohort}",
        "data.slices=2",
        "data.size=32",
        "physics=[mri_4x,inpaint_box]",
        "solvers=[zero_filled,cg]",
        "seeds=[0,1]",
        "output_dir=out/",
        "progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    rows = _rows(out)
    assert len(rows) == (3 + 2) * 2 * 2 * 2 and {r["status"] for r in rows} == {"ok"}
    assert {r["case"] for r in rows} >= {"volume.nii.gz/slice005", "volume.nii.gz/slice006"}
    report = (out / "report.md").read_text()
    assert METRIC_CONVENTION in report and "physics=[mri_4x,inpaint_box]" in report
    assert (out / "report.html").is_file() and (out / "hydra").is_dir()


def test_cli_joblib_multirun_jobs_share_one_results_file(cohort, tmp_path):
    result = _bench(
        "-m",
        f"data.root={cohort}",
        "data.limit=2",
        "physics=[inpaint_box],[inpaint_random]",
        "solvers=[zero_filled]",
        "seeds=[0]",
        f"output_dir={tmp_path / 'out'}",
        "progress=false",
        "threads=1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        cwd=tmp_path,
    )
    log = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, log
    lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert sum(line.startswith("dataset,") for line in lines) == 1, log
    assert len(lines) == 1 + 4, "\n".join(lines) + log
    assert {r["operator"] for r in _rows(tmp_path / "out")} == {"inpaint_box", "inpaint_random"}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "inpaint_box" in report and "inpaint_random" in report, report + log


def test_cli_submitit_local_multirun_fills_one_table_and_reruns_without_duplicates(
    cohort, tmp_path, submitit_launcher
):
    arguments = (
        "-m",
        f"data.root={cohort}",
        "data.limit=2",
        "physics=[inpaint_box],[inpaint_random]",
        "solvers=[zero_filled]",
        "seeds=[0]",
        f"output_dir={tmp_path / 'out'}",
        "progress=false",
        "threads=1",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "hydra.launcher.cpus_per_task=1",
    )
    for attempt in range(2):  # the rerun finds every case done and adds no rows
        result = _bench(*arguments, cwd=tmp_path)
        log = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        assert result.returncode == 0, log
        lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
        assert len(lines) == 1 + 4, f"attempt {attempt}\n" + "\n".join(lines) + log
    assert {r["operator"] for r in _rows(tmp_path / "out")} == {"inpaint_box", "inpaint_random"}
    assert list((tmp_path / "out" / "hydra").rglob(".submitit")), "not run by submitit"


def test_a_table_from_an_older_medldm_gains_the_new_columns(tmp_path):
    path = tmp_path / "results.csv"
    old_header = [c for c in COLUMNS if c != "precision"]
    path.write_text(",".join(old_header) + "\nd,a,o,s,0,ok" + "," * (len(old_header) - 6) + "\n")
    table = ResultsTable(path)
    row = {"dataset": "d", "case": "b", "operator": "o", "solver": "s", "seed": 0}
    table.append({**row, "status": "ok", "precision": "bf16"})
    rows = table.read()
    assert [r["case"] for r in rows] == ["a", "b"]
    assert [r["precision"] for r in rows] == ["", "bf16"]


def test_latent_solvers_are_compared_with_the_best_classical_one_pair_by_pair():
    from medldm.bench.comparison import versus_best_classical

    psnr = {"tv": [30, 31, 32], "cg": [31, 29, 29], "latent_dds": [31, 30, 34]}
    nfe = {"tv": 0, "cg": 0, "latent_dds": 200}
    rows = [
        {
            "dataset": "d",
            "operator": "mri_4x",
            "solver": solver,
            "case": f"c{i}",
            "seed": "0",
            "status": "ok",
            "psnr": str(value),
            "ssim": "0.9",
            "nfe": str(nfe[solver]),
        }
        for solver, values in psnr.items()
        for i, value in enumerate(values)
    ]
    # a case only the latent solver finished, and a failed row: not paired
    rows.append({**rows[-1], "case": "c9", "psnr": "99"})
    rows.append({**rows[0], "case": "c8", "status": "failed", "psnr": ""})
    (line,) = versus_best_classical(rows)
    assert (line.classical, line.latent, line.n_pairs, line.wins) == ("tv", "latent_dds", 3, 2)
    assert line.psnr_gain == pytest.approx(2 / 3)
    half = 4.302653 * np.std([1, -1, 2], ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert line.psnr_ci == pytest.approx((2 / 3 - half, 2 / 3 + half), rel=1e-5)
    assert line.ssim_gain == 0.0
    classical_only = [r for r in rows if r["solver"] != "latent_dds"]
    assert versus_best_classical(classical_only) == []


def test_report_shows_the_latent_vs_best_classical_section(tmp_path):
    table = ResultsTable(tmp_path / "results.csv")
    for case, (tv, ldm) in enumerate([(30.0, 31.0), (31.0, 30.5)]):
        for solver, value, nfe in (("tv", tv, 0), ("latent_dds", ldm, 100)):
            table.append(
                {
                    "dataset": "d",
                    "case": f"c{case}",
                    "operator": "mri_4x",
                    "solver": solver,
                    "seed": 0,
                    "status": "ok",
                    "psnr": value,
                    "ssim": 0.9,
                    "nmse": 0.01,
                    "seconds": 1.0,
                    "nfe": nfe,
                }
            )
    markdown, html_path = write_report(tmp_path)
    text = markdown.read_text()
    assert "## Latent priors vs the best classical baseline" in text
    assert "| d | mri_4x | latent_dds | tv | 2 | +0.25 (" in text and "1 / 2" in text
    assert "best classical baseline" in html_path.read_text()


def test_solver_variants_run_beside_their_preset_and_the_report_plots_speed_and_quality(
    cohort, tmp_path
):
    out = tmp_path / "out"
    variants = {
        "tv_light": {"solver": "tv", "n_iter": 5},
        "tv_strong": {"solver": "tv", "weight": 0.05},
    }
    summary = run_benchmark(
        CaseSource(root=str(cohort)),
        ["mri_4x"],
        ["zero_filled", "tv", "tv_light", "tv_strong"],
        [0],
        out,
        device="cpu",
        progress=False,
        variants=variants,
    )
    assert summary.failed == 0 and summary.computed == 3 * 4
    rows = _rows(out)
    by_solver = {s: [r for r in rows if r["solver"] == s] for s in ("tv", "tv_light", "tv_strong")}
    assert all(len(found) == 3 for found in by_solver.values())
    psnr = {s: [float(r["psnr"]) for r in found] for s, found in by_solver.items()}
    assert psnr["tv"] != psnr["tv_strong"]  # the options changed the solver
    digests = {s: found[0]["config_digest"] for s, found in by_solver.items()}
    assert len(set(digests.values())) == 3  # a variant's options are in its fingerprint
    markdown, html = write_report(out)
    text = markdown.read_text()
    assert "## Speed and quality" in text
    assert list((out / "figures").glob("speed_quality__cohort__mri_4x.png"))
    assert 'alt="speed and quality cohort / mri_4x"' in html.read_text()


def test_a_solver_variant_without_a_solver_is_refused(cohort, tmp_path):
    from medldm.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="names no solver"):
        run_benchmark(
            CaseSource(root=str(cohort)),
            ["mri_4x"],
            ["fast"],
            [0],
            tmp_path / "out",
            device="cpu",
            progress=False,
            variants={"fast": {"n_iter": 5}},
        )


def test_a_report_rebuilt_without_the_case_arrays_keeps_and_lists_the_figures(cohort, tmp_path):
    import shutil

    out = tmp_path / "out"
    run_benchmark(
        CaseSource(root=str(cohort)),
        ["mri_4x"],
        ["zero_filled", "tv"],
        [0],
        out,
        device="cpu",
        progress=False,
    )
    write_report(out, figures_per_operator=2)
    figures = sorted((out / "figures").glob("*/*.png"))
    assert len(figures) == 2
    shutil.rmtree(out / "cases")  # not kept with the results (.gitignore), e.g. a fresh clone
    markdown, _ = write_report(out, figures_per_operator=2)
    assert sorted((out / "figures").glob("*/*.png")) == figures
    text = markdown.read_text()
    assert all(path.relative_to(out).as_posix() in text for path in figures)


def test_case_arrays_skip_writes_in_progress_and_truncated_archives(tmp_path):
    """A report built while another multirun job writes its arrays (the joblib race)."""
    from medldm.bench.figure_arrays import CASES_DIR, load_case_arrays, save_measurement

    image = np.zeros((4, 4), np.float32)
    save_measurement(tmp_path, "d", "a", "mri_4x", 0, image, image)
    folder = tmp_path / CASES_DIR / "d"
    (folder / ".b__mri_4x__seed0.npz.abc.part.npz").write_bytes(b"")  # atomic write under way
    (folder / "c__mri_4x__seed0.npz").write_bytes(b"PK\x03\x04 truncated")
    assert [g.case for g in load_case_arrays(tmp_path)] == ["a"]


def _retrained(folder: Path, out: Path) -> Path:
    """A copy of the prior at ``folder`` with other weights (as after more training)."""
    from medldm.models.checkpoint import save_prior_checkpoint
    from medldm.models.prior import load_prior

    prior = load_prior(folder, device="cpu")
    with torch.no_grad():
        next(prior.unet.parameters()).add_(0.01)
    return save_prior_checkpoint(
        out, config=prior.config, autoencoder=prior.autoencoder, unet=prior.unet, scale_factor=1.0
    )


def test_operator_priors_measure_the_named_operators_with_their_own_prior(
    cohort, tmp_path, monkeypatch, tiny_prior_folder
):
    from hydra import compose, initialize_config_dir

    from medldm.bench.cli import register_data_presets, run_from_config
    from medldm.models.prior import load_prior
    from medldm.problems.calibration import prior_fingerprint
    from medldm.problems.configs import config_dir

    other = _retrained(tiny_prior_folder, tmp_path / "other")
    register_data_presets()
    overrides = [
        f"data.root={cohort}",
        "data.size=32",
        "physics=[inpaint_box,inpaint_random]",
        "solvers=[latent_dds]",
        "seeds=[0]",
        f"output_dir={tmp_path / 'out'}",
        "progress=false",
        f"prior={tiny_prior_folder}",
        f"operator_priors={{inpaint_box: {other}}}",
    ]
    with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    configs = tmp_path / "configs"
    (configs / "physics").mkdir(parents=True)
    (configs / "solver").mkdir()
    for name in ("inpaint_box", "inpaint_random"):
        text = (REPO / "configs" / "physics" / f"{name}.yaml").read_text()
        (configs / "physics" / f"{name}.yaml").write_text(text)
    (configs / "solver" / "latent_dds.yaml").write_text(
        "_target_: medldm.solvers.latent_dds.LatentDDS\nn_steps: 2\nn_samples: 1\nfinal_dc: false\n"
    )
    monkeypatch.setenv("MEDLDM_CONFIG_DIR", str(configs))
    summary = run_from_config(cfg)
    assert (summary.cases, summary.computed, summary.failed) == (3, 6, 0)
    expected = {
        "inpaint_box": prior_fingerprint(load_prior(other, device="cpu")),
        "inpaint_random": prior_fingerprint(load_prior(tiny_prior_folder, device="cpu")),
    }
    assert expected["inpaint_box"] != expected["inpaint_random"]
    for row in _rows(tmp_path / "out"):
        assert row["config_digest"].endswith(f"-{expected[row['operator']]}"), row
    # one run record per group, each naming its operators and the prior they ran
    records = [yaml.safe_load(f.read_text()) for f in (tmp_path / "out" / "runs").glob("*.yaml")]
    ran = sorted((r["config"]["physics"], r["config"]["prior"]) for r in records)
    assert ran == [(["inpaint_box"], str(other)), (["inpaint_random"], str(tiny_prior_folder))]


def test_operator_priors_refuse_a_name_that_is_no_physics_preset():
    from omegaconf import OmegaConf

    from medldm.bench.cli import prior_groups
    from medldm.errors import InvalidInputError

    cfg = OmegaConf.create(
        {"physics": ["mri_4x"], "prior": "a", "operator_priors": {"inpaint-box": "b"}}
    )
    with pytest.raises(InvalidInputError, match="inpaint-box") as raised:
        prior_groups(cfg)
    assert "inpaint_box" in str(raised.value.fix)


def test_the_ldm_suite_measures_each_operator_with_the_prior_the_app_runs_for_it():
    from hydra import compose, initialize_config_dir

    from medldm.bench.cli import prior_groups, register_data_presets
    from medldm.problems.configs import config_dir
    from medldm.recon.presets import load_preset

    register_data_presets()
    with initialize_config_dir(str(config_dir() / "bench"), version_base="1.3"):
        cfg = compose("ldm")
    prior_of = {operator: spec for spec, operators in prior_groups(cfg) for operator in operators}
    assert prior_of["mri_4x"] == load_preset("mri_brain_4x").prior == "brain_t1_lossless_2d"
    assert prior_of["mri_8x"] == load_preset("mri_brain_8x").prior
    assert prior_of["inpaint_box"] == load_preset("inpaint_box").prior == "brain_t1_2d"
