"""The benchmark grid: dataset x operator x solver x seed, one results row per cell.

For every case, operator and seed the measurement is simulated **once** with
``torch.Generator().manual_seed(seed)`` (a CPU generator, so a seed gives the same mask,
phase and noise on CPU and GPU), in this order: the operator is built
(``factory.build(shape, generator, device)``: masks, coil maps), the object is prepared
(``factory.prepare_object``: e.g. a smooth MRI phase), and the noisy measurement is drawn
(``physics(x, generator)``). Every solver then reconstructs that same measurement, with
its own generator seeded with ``seed`` on the run's device. Solvers that do not apply to
an operator (:mod:`medldm.bench.compatibility`) are skipped.

Each finished cell is appended to ``results.csv`` at once (:mod:`medldm.bench.results`);
a rerun skips cells already ``ok`` and retries failed ones, so an interrupted run resumes
where it stopped. Rows carry a ``config_digest`` of the preset files that made them; a rerun
that skips rows made with since-edited presets says so (``RunSummary.skipped_stale`` and a
warning): delete those rows, or use a new output folder, to recompute them.

Latent solver rows also score their posterior std against the ground truth (coverage of
the 50 % and 90 % intervals, Spearman of std against |error|, over the foreground, for
inpainting the foreground it leaves unobserved:
:func:`medldm.problems.calibration.score_uncertainty`), with the calibrated coverage when
``configs/calibration/<solver>_<operator>.yaml`` (or ``calibration_dir``) holds a fit for
exactly that solver preset, prior and K; their reliability-curve sums go to
``reliability.jsonl`` (:class:`~medldm.bench.results.ReliabilityLog`). A failure there
leaves those columns empty and never fails the row.

Rows of cases sampled over a volume's foreground extent (``CaseSource(slice_sampling=
"foreground")``) carry the slice's ``position`` in it and its ``third``.

Whole volumes (3D cases, ``CaseSource(slices=None)``) keep one results row per volume;
each ``ok`` one is also scored slice by slice, on axis 0 of the case's stack (its axial
slices, inferior first: :func:`medldm.problems.model_view.model_stack`), over the ground
truth's foreground extent (the case's ``extent``, found by the model view's rule), each
slice with the volume's ``data_range`` and ROI, its ``position`` in the extent and its
``third``; those rows go to ``slices.csv`` (:class:`~medldm.bench.results.SliceTable`),
written just before the volume's row, so a rerun that skips the row adds no slice rows.

Anything that goes wrong in one cell (an unreadable file, a measurement that cannot be
simulated, a solver that raises or returns NaN) is recorded with ``status="failed"`` and
its error, and the run goes on.

Example
-------
>>> import numpy as np, tempfile, pathlib, torch
>>> from medldm.physics.base import LinearPhysics
>>> from medldm.solvers.base import Reconstruction
>>> from medldm.bench.cases import CaseSource
>>> class Identity(LinearPhysics):
...     def A(self, x): return x
...     def A_adjoint(self, y): return y
>>> class IdentityFactory:
...     def build(self, image_shape, generator, device): return Identity()
>>> class Adjoint:
...     name = "adjoint"
...     def solve(self, y, physics, prior=None, *, generator=None, callback=None):
...         x = physics.A_adjoint(y)
...         return Reconstruction(estimate=x, residual=physics.residual(x, y))
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> np.savez(folder / "a.npz", images=np.random.default_rng(0).random((2, 16, 16)))
>>> summary = run_benchmark(CaseSource(root=str(folder)), {"identity": IdentityFactory()},
...                         {"adjoint": Adjoint()}, [0], folder / "out", progress=False)
>>> summary.computed, summary.failed
(2, 0)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from medldm.bench.cases.case import Case, CaseFailure
from medldm.bench.compatibility import is_applicable
from medldm.bench.figure_arrays import save_estimate, save_measurement
from medldm.bench.measurement_view import measurement_view, to_image_array
from medldm.bench.results import (
    STATUS_FAILED,
    STATUS_OK,
    ReliabilityLog,
    ResultsTable,
    SliceTable,
    row_key,
)
from medldm.bench.run_log import record_run
from medldm.errors import InvalidInputError
from medldm.metrics.scoring import score, volume_slice_scores
from medldm.metrics.uncertainty import STD_BIN_EDGES, reliability_curve
from medldm.models.prior import resolve_device
from medldm.problems.calibration import (
    StdCalibration,
    find_calibration,
    observed_pixels,
    preset_solver_config,
    prior_fingerprint,
    score_uncertainty,
    uncertainty_roi,
)
from medldm.problems.configs import load_physics, preset_digest, solver_for_operator
from medldm.problems.simulate import simulate
from medldm.solvers.latent_base import LatentSolverBase
from medldm.utils.memory import PeakMemory

log = logging.getLogger(__name__)

RESULTS_FILE = "results.csv"
SAVE_ARRAYS_CHOICES = ("first_seed", "all", "none")


@dataclass
class RunSummary:
    """Counts of what one run did (cells are (case, operator, solver, seed))."""

    cases: int = 0
    case_failures: int = 0
    computed: int = 0
    failed: int = 0
    skipped_done: int = 0
    skipped_inapplicable: int = 0
    #: Skipped rows whose presets have changed since they were computed (see config_digest).
    skipped_stale: int = 0


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _resolve(items: Mapping[str, Any] | Sequence[str], loader: Any) -> dict[str, Any]:
    if isinstance(items, Mapping):
        return dict(items)
    return {str(name): loader(str(name)) for name in items}


class _SolverCatalog:
    """Solver objects per (operator, name): given ones as they are, preset names loaded
    once per operator (``<solver>_<operator>_<domain>``, then ``<solver>_<operator>`` win).

    ``variants`` maps a label to ``{"solver": <preset name>, <option>: <value>, ...}``: the
    operator's preset of that solver with the options changed (e.g. fewer steps), so one
    grid can hold several settings of one solver side by side.
    """

    def __init__(
        self,
        solvers: Mapping[str, Any] | Sequence[str],
        domain: str | None = None,
        variants: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.given = dict(solvers) if isinstance(solvers, Mapping) else None
        self.domain = domain or None
        self.variants = {str(k): _variant(str(k), v) for k, v in (variants or {}).items()}
        self.names = list(self.given or [str(name) for name in solvers])
        self._loaded: dict[tuple[str, str], tuple[Any, str]] = {}
        if self.given is None:
            for name in self.names:  # fail fast on a misspelt name, before any case runs
                solver_for_operator(*self._preset_and_options(name)[:1])

    def _preset_and_options(self, name: str) -> tuple[str, dict[str, Any] | None]:
        if name in self.variants:
            options = dict(self.variants[name])
            return str(options.pop("solver")), options
        return name, None

    def get(self, operator: str, name: str) -> tuple[Any, str]:
        """``(solver, preset)``; ``preset`` is the file used (``""`` for given objects)."""
        if self.given is not None:
            return self.given[name], ""
        if (operator, name) not in self._loaded:
            preset, options = self._preset_and_options(name)
            self._loaded[(operator, name)] = solver_for_operator(
                preset, operator, options, domain=self.domain
            )
        return self._loaded[(operator, name)]

    def digest(self, operator: str, name: str) -> str:
        """Fingerprint of the solver preset file used for ``operator`` (``""`` if none),
        with a variant's options."""
        if self.given is not None:
            return ""
        try:
            digest = preset_digest("solver", self.get(operator, name)[1])
        except Exception:
            return ""
        if name in self.variants:
            options = json.dumps(self.variants[name], sort_keys=True, default=str)
            digest += "+" + hashlib.sha256(options.encode()).hexdigest()[:8]
        return digest


def _variant(label: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A solver variant's spec, checked: it names the solver preset it changes."""
    spec = dict(spec)
    if not spec.get("solver"):
        raise InvalidInputError(
            f"solver variant {label!r} names no solver",
            fix=f"give variants.{label}.solver=<solver preset>, e.g. latent_dds",
        )
    return spec


@dataclass
class _Cell:
    """Labels shared by every row of one (case, operator, seed)."""

    dataset: str
    case: str
    operator: str
    seed: int
    shape: str
    device: str
    roi: str
    #: Where the case's slice lies in its volume (foreground slice sampling only):
    #: ``{"position": 0..1, "third": "inferior" | "middle" | "superior"}``, else empty, so
    #: rows of centrally sampled cases leave the columns out (an older table keeps its header).
    place: dict[str, Any] = field(default_factory=dict)

    def row(self, solver: str, status: str, **values: Any) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "case": self.case,
            "operator": self.operator,
            "solver": solver,
            "seed": self.seed,
            "status": status,
            "shape": self.shape,
            "device": self.device,
            "roi": self.roi,
            **self.place,
            "finished_at": _now(),
            **values,
        }


class _GridRun:
    """State of one run: the table, the solvers, and what has been learnt on the way."""

    def __init__(
        self,
        output_dir: Path,
        factories: dict,
        solvers: _SolverCatalog,
        seeds: list[int],
        device: torch.device,
        prior: Any,
        roi: str,
        save_arrays: str,
        calibration_dir: str | Path | None = None,
    ):
        self.output_dir = output_dir
        self.table = ResultsTable(output_dir / RESULTS_FILE)
        self.reliability = ReliabilityLog(self.table)
        self.slices = SliceTable(self.table)
        self.calibration_dir = calibration_dir
        self.calibrations: dict[tuple[str, str], StdCalibration | None] = {}
        self.factories, self.solvers, self.seeds = factories, solvers, seeds
        self.device, self.prior, self.roi, self.save_arrays = device, prior, roi, save_arrays
        self.done = self.table.completed_rows()
        self.prior_digest = prior_fingerprint(prior)
        self.physics_digests: dict[str, str] = {}
        self.applicable: dict[tuple[str, str], bool] = {}
        self.summary = RunSummary()

    def _is_done(self, dataset: str, case: str, operator: str, solver: str, seed: int) -> bool:
        return (dataset, case, operator, solver, str(seed)) in self.done

    def config_digest(self, operator: str, solver: str) -> str:
        """``<physics preset digest>-<solver preset digest>`` (parts empty for objects),
        and ``-<prior weights digest>`` for solvers that use the prior: a rerun with
        retrained weights flags the rows of the old ones as stale."""
        digest = f"{self.physics_digests.get(operator, '')}-{self.solvers.digest(operator, solver)}"
        if self.prior_digest and self._uses_prior(operator, solver):
            digest += f"-{self.prior_digest}"
        return digest

    def _uses_prior(self, operator: str, name: str) -> bool:
        try:
            return isinstance(self.solvers.get(operator, name)[0], LatentSolverBase)
        except Exception:  # an unloadable solver has no rows to fingerprint
            return False

    def _count_stale(self, case: Case, operator: str, seed: int, names: list[str]) -> None:
        for name in names:
            row = self.done[(case.dataset, case.case_id, operator, name, str(seed))]
            recorded, current = row.get("config_digest") or "", self.config_digest(operator, name)
            if recorded and recorded != current:
                self.summary.skipped_stale += 1

    def _record(self, row: dict[str, Any]) -> None:
        curve = row.pop("_reliability", None)
        slices = row.pop("_slices", None)
        with self.table.locked():
            # a volume's slice rows first: a stop between the two leaves no ok row without
            # them, and the retried cell replaces them
            ok = row["status"] == STATUS_OK
            if slices is not None and ok and row_key(row) not in self.table.completed_keys():
                self.slices.replace(row, slices)
            written = self.table.append(row)
        if written and curve is not None and row["status"] == STATUS_OK:
            self.reliability.append(row, curve)
        if row["status"] == STATUS_OK:
            self.summary.computed += 1
        else:
            self.summary.failed += 1
            log.warning(
                "%s %s %s %s seed %s failed: %s",
                row["dataset"],
                row["case"],
                row["operator"],
                row["solver"],
                row["seed"],
                row.get("error"),
            )

    def _keeps_arrays(self, seed: int) -> bool:
        return self.save_arrays == "all" or (
            self.save_arrays == "first_seed" and seed == self.seeds[0]
        )

    def run_case(self, case: Case) -> None:
        for operator, factory in self.factories.items():
            for seed in self.seeds:
                todo = [
                    name
                    for name in self.solvers.names
                    if not self._is_done(case.dataset, case.case_id, operator, name, seed)
                ]
                self.summary.skipped_done += len(self.solvers.names) - len(todo)
                done = [name for name in self.solvers.names if name not in todo]
                self._count_stale(case, operator, seed, done)
                if todo:
                    self._run_cell(case, operator, factory, seed, todo)

    def _run_cell(
        self, case: Case, operator: str, factory: Any, seed: int, todo: list[str]
    ) -> None:
        cell = _Cell(
            case.dataset,
            case.case_id,
            operator,
            seed,
            "x".join(map(str, case.shape)),
            self.device.type,
            self.roi,
            _place(case),
        )
        try:
            physics, y = self._simulate(case, factory, seed)
        except Exception as error:
            log.debug("simulation failed", exc_info=True)
            for name in todo:
                if self.applicable.get((operator, name), True):
                    message = f"measurement simulation failed: {_describe(error)}"
                    self._record(cell.row(name, STATUS_FAILED, error=message))
            return
        if self._keeps_arrays(seed):
            try:
                view = measurement_view(y, physics, case.shape)
                save_measurement(
                    self.output_dir,
                    case.dataset,
                    case.case_id,
                    operator,
                    seed,
                    case.image,
                    view,
                    display_origin=case.metadata.get("display_origin", "upper"),
                )
            except Exception as error:  # figures are a nicety; the numbers go on
                log.warning("no figure arrays for %s %s: %s", case.case_id, operator, error)
        for name in todo:
            try:
                solver, preset = self.solvers.get(operator, name)
            except Exception as error:
                message = f"cannot load the solver: {_describe(error)}"
                self._record(cell.row(name, STATUS_FAILED, error=message))
                continue
            applicable = is_applicable(solver, physics)
            self.applicable[(operator, name)] = applicable
            if not applicable:
                self.summary.skipped_inapplicable += 1
                continue
            calibration = self._calibration(operator, name, solver, preset)
            row = self._solve(cell, case, solver, name, physics, y, calibration)
            digest = self.config_digest(operator, name)
            self._record({**row, "solver_preset": preset, "config_digest": digest})

    @torch.no_grad()
    def _simulate(self, case: Case, factory: Any, seed: int) -> tuple[Any, torch.Tensor]:
        x = torch.from_numpy(case.image).to(self.device)[None, None]
        return simulate(x, factory, seed, self.device)

    def _calibration(
        self, operator: str, name: str, solver: Any, preset: str
    ) -> StdCalibration | None:
        """The std calibration stored for this latent solver preset on ``operator`` (same
        config, prior and K), or None."""
        if not isinstance(solver, LatentSolverBase) or not preset:
            return None
        if (operator, name) not in self.calibrations:
            try:
                found = find_calibration(
                    name,
                    operator,
                    preset_solver_config(preset),
                    prior=self.prior,
                    directory=self.calibration_dir,
                )
            except Exception as error:  # a broken calibration file: uncalibrated, said so
                log.warning("no std calibration for %s on %s: %s", name, operator, error)
                found = None
            self.calibrations[(operator, name)] = found
        return self.calibrations[(operator, name)]

    def _uncertainty(
        self,
        cell: _Cell,
        name: str,
        case: Case,
        physics: Any,
        reconstruction: Any,
        estimate: np.ndarray,
        calibration: StdCalibration | None,
    ) -> dict[str, Any]:
        """The uncertainty columns (and ``_reliability``, the curve's sums) of a row with a
        std map, over :func:`~medldm.problems.calibration.uncertainty_roi`; ``{}`` without
        a std or when they cannot be computed (an empty ROI)."""
        if reconstruction.std is None:
            return {}
        try:
            std = to_image_array(reconstruction.std, case.shape)
            samples = None
            if reconstruction.samples is not None:
                samples = np.stack([to_image_array(s, case.shape) for s in reconstruction.samples])
            roi = uncertainty_roi(case.image, observed_pixels(physics, (1, 1, *case.shape)))
            columns = score_uncertainty(
                estimate, case.image, std, samples, calibration=calibration, mask=roi
            )
            curve = reliability_curve(estimate, case.image, std, mask=roi, bin_edges=STD_BIN_EDGES)
        except Exception as error:
            log.warning("no uncertainty scores for %s %s: %s", case.case_id, name, error)
            return {}
        curve.labels = {"dataset": cell.dataset, "operator": cell.operator, "solver": name}
        columns.pop("roi_pixels", None)
        return {**columns, "_reliability": curve.to_dict()}

    def _solve(
        self,
        cell: _Cell,
        case: Case,
        solver: Any,
        name: str,
        physics: Any,
        y: torch.Tensor,
        calibration: StdCalibration | None = None,
    ) -> dict[str, Any]:
        generator = torch.Generator(device=self.device).manual_seed(int(cell.seed))
        try:
            with PeakMemory(self.device) as memory:
                start = time.perf_counter()
                with _at_case_position(self.prior, case):
                    reconstruction = solver.solve(y, physics, self.prior, generator=generator)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                seconds = time.perf_counter() - start
            estimate = to_image_array(reconstruction.estimate, case.shape)
            scores = score(estimate, case.image, self.roi)
        except Exception as error:
            log.debug("solver failed", exc_info=True)
            return cell.row(name, STATUS_FAILED, error=_describe(error))
        if self._keeps_arrays(cell.seed):
            try:
                save_estimate(
                    self.output_dir,
                    case.dataset,
                    case.case_id,
                    cell.operator,
                    cell.seed,
                    name,
                    estimate,
                )
            except OSError as error:
                log.warning("no figure array for %s %s: %s", case.case_id, name, error)
        return cell.row(
            name,
            STATUS_OK,
            psnr=scores["psnr"],
            ssim=scores["ssim"],
            nmse=scores["nmse"],
            data_range=scores["data_range"],
            nfe=int(getattr(reconstruction, "nfe", 0) or 0),
            seconds=seconds,
            peak_mem_mb=memory.peak_mb,
            iterations=int(getattr(reconstruction, "iterations", 0) or 0),
            residual=_optional_float(getattr(reconstruction, "residual", None)),
            residual_over_noise=_optional_float(
                getattr(reconstruction, "residual_over_noise", None)
            ),
            precision=self._precision(solver),
            error="",
            **self._uncertainty(cell, name, case, physics, reconstruction, estimate, calibration),
            **self._slice_scores(case, name, estimate, scores["data_range"]),
        )

    def _slice_scores(
        self, case: Case, name: str, estimate: np.ndarray, data_range: float
    ) -> dict[str, Any]:
        """``{"_slices": [slice row, ...]}`` of a whole volume with a foreground extent (the
        slices.csv rows, module docstring); ``{}`` for 2D cases or when they cannot be
        computed (the volume's row stands without them)."""
        extent = case.metadata.get("extent") if case.spatial_dims == 3 else None
        if not extent:
            return {}
        try:
            values = volume_slice_scores(
                estimate,
                case.image,
                [int(item["slice"]) for item in extent],
                self.roi,
                data_range=data_range,
            )
        except Exception as error:
            log.warning("no slice scores for %s %s: %s", case.case_id, name, error)
            return {}
        rows = [
            {
                "slice": int(item["slice"]),
                "position": float(item["position"]),
                "third": str(item["third"]),
                "psnr": float(psnr),
                "ssim": float(ssim),
                "data_range": data_range,
                "roi": self.roi,
            }
            for item, psnr, ssim in zip(extent, values["psnr"], values["ssim"], strict=True)
        ]
        return {"_slices": rows}

    def _precision(self, solver: Any) -> str:
        """The precision of the network calls behind a row: the prior's for LDM solvers,
        fp32 for classical ones (they run no network)."""
        uses_prior = isinstance(solver, LatentSolverBase)
        return str(getattr(self.prior, "precision", "fp32")) if uses_prior else "fp32"

    def record_case_failure(self, failure: CaseFailure) -> None:
        """Failed rows for an unreadable case (pairs known to be inapplicable are left out)."""
        cell = _Cell(failure.dataset, failure.case_id, "", 0, "", self.device.type, self.roi)
        for operator in self.factories:
            for name in self.solvers.names:
                if not self.applicable.get((operator, name), True):
                    continue
                for seed in self.seeds:
                    if self._is_done(failure.dataset, failure.case_id, operator, name, seed):
                        continue
                    cell.operator, cell.seed = operator, seed
                    message = f"cannot read the case: {failure.error}"
                    self._record(cell.row(name, STATUS_FAILED, error=message))


def _place(case: Case) -> dict[str, Any]:
    """The ``position`` and ``third`` columns of a case's rows (``{}`` when it has none)."""
    if case.metadata.get("third") is None:
        return {}
    return {"position": float(case.metadata["position"]), "third": str(case.metadata["third"])}


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def run_benchmark(
    cases: Iterable[Case | CaseFailure],
    physics: Mapping[str, Any] | Sequence[str],
    solvers: Mapping[str, Any] | Sequence[str],
    seeds: Sequence[int],
    output_dir: str | Path,
    *,
    device: str | torch.device = "auto",
    prior: Any = None,
    roi: str | None = None,
    save_arrays: str = "first_seed",
    progress: bool = True,
    command: str = "",
    config: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    calibration_dir: str | Path | None = None,
    domain: str | None = None,
    variants: Mapping[str, Mapping[str, Any]] | None = None,
) -> RunSummary:
    """Run the grid and append its rows to ``output_dir/results.csv``.

    Parameters
    ----------
    cases:
        Cases and case failures, e.g. a :class:`~medldm.bench.cases.CaseSource`.
    physics:
        ``{label: factory}`` or preset names (``["mri_4x", "inpaint_box"]``) loaded from
        ``configs/physics/``; a factory has ``build(image_shape, generator, device)``.
    solvers:
        ``{label: solver}`` or preset names (``["zero_filled", "tv"]``) loaded from
        ``configs/solver/`` for each operator (``<solver>_<operator>.yaml`` when it exists,
        e.g. a TV weight tuned for ``mri_4x``; else ``<solver>.yaml``; else the registry).
    seeds:
        Integer seeds; each gives its own mask, phase and noise.
    output_dir:
        Folder of ``results.csv``, ``cases/`` (figure arrays) and ``runs/`` (run records).
    device:
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    prior:
        A trained LDM prior passed to every solver (classical solvers ignore it).
    roi:
        ``None``/``"none"`` (whole image) or ``"foreground"`` (ground-truth mask).
    save_arrays:
        Which seeds keep their images for the figures: ``"first_seed"``, ``"all"``, ``"none"``.
    progress:
        Show a progress bar over cases.
    command, config, overrides:
        Recorded in ``output_dir/runs/`` for the report.
    calibration_dir:
        Where the std calibrations are (default ``configs/calibration``, see
        :mod:`medldm.problems.calibration`).
    domain:
        The data the solver presets were tuned for: ``"native"`` picks
        ``<solver>_<operator>_native.yaml`` (tuned on brain MRI at the scanner's resolution)
        where it exists; ``None``, the per-operator presets of the default data.
    variants:
        ``{label: {"solver": <preset name>, <option>: <value>}}``: a label in ``solvers``
        that is a key here runs that solver's per-operator preset with the options changed
        (``{"latent_dds_10_steps": {"solver": "latent_dds", "n_steps": 10}}``); its rows
        carry the label.

    Returns
    -------
    RunSummary
        How many cells were computed, failed, or skipped (already done / inapplicable).
    """
    if save_arrays not in SAVE_ARRAYS_CHOICES:
        raise InvalidInputError(
            f"save_arrays={save_arrays!r}", fix=f"use one of {SAVE_ARRAYS_CHOICES}"
        )
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InvalidInputError("no seeds given", fix="pass seeds=[0] or more")
    output_dir = Path(output_dir)
    resolved_device = resolve_device(device)
    factories = _resolve(physics, load_physics)
    solver_catalog = _SolverCatalog(solvers, domain, variants)
    if not factories or not solver_catalog.names:
        raise InvalidInputError("the grid is empty", fix="give at least one physics and solver")
    if prior is not None and hasattr(prior, "to"):
        prior = prior.to(resolved_device)
    record_run(
        output_dir,
        command=command,
        config=config or {},
        overrides=overrides,
        device=str(resolved_device),
    )

    grid = _GridRun(
        output_dir,
        factories,
        solver_catalog,
        seeds,
        resolved_device,
        prior,
        roi or "none",
        save_arrays,
        calibration_dir,
    )
    if not isinstance(physics, Mapping):
        grid.physics_digests = {str(n): preset_digest("physics", str(n)) for n in physics}
    items = list(cases)
    failures = [item for item in items if isinstance(item, CaseFailure)]
    good = [item for item in items if isinstance(item, Case)]
    grid.summary.cases, grid.summary.case_failures = len(good), len(failures)
    bar = tqdm(good, desc="benchmark cases", unit="case", disable=not progress)
    for case in bar:
        bar.set_postfix_str(f"{case.dataset}:{case.case_id}", refresh=False)
        grid.run_case(case)
    # Unreadable cases last: by then the run knows which solver/operator pairs apply.
    for failure in failures:
        grid.record_case_failure(failure)
    if grid.summary.skipped_stale:
        log.warning(
            "%d rows were kept from an earlier run made with different physics/solver presets "
            "or prior weights (config_digest differs); delete them from %s or use a new "
            "output_dir to recompute them",
            grid.summary.skipped_stale,
            grid.table.path,
        )
    log.info("benchmark run: %s", grid.summary)
    return grid.summary


def _at_case_position(prior: Any, case: Case) -> Any:
    """A slice-conditioned prior told where the case's slices lie in their head: a 2D
    slice's ``slice_position``, or for a volume case each stack slice's place in its
    ``extent`` (clipped to 0 and 1 outside it), a contiguous stack; a no-op for other
    priors and cases."""
    if not getattr(prior, "slice_conditioned", False):
        return contextlib.nullcontext()
    where = case.metadata.get("slice_position")
    extent = case.metadata.get("extent")
    if where is not None:
        return prior.at_slice_positions([float(where)])
    if extent:
        first, last = extent[0]["slice"], extent[-1]["slice"]
        index = np.arange(case.image.shape[0], dtype=np.float64)
        where = np.clip((index - first) / max(last - first, 1), 0, 1)
        return prior.at_slice_positions(where, adjacent=True)
    return contextlib.nullcontext()
