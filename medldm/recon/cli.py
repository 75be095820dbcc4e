"""``medldm-recon``: the Hydra app (config ``configs/recon/config.yaml``).

One study per run; ``input=`` a folder of several studies runs them one after another
into ``output_dir/<study>/`` (a bad study is reported in ``batch_report.json`` and
skipped, finished studies are not redone on a rerun). For parallel or cluster batches use
Hydra multirun over explicit inputs: each job writes ``output_dir/<job>_<study>/``, and a
rerun into the same ``output_dir`` skips the jobs that finished, e.g.::

    medldm-recon -m input=a.nii.gz,b.nii.gz output_dir=batch/ hydra/launcher=joblib
    medldm-recon -m input=a.nii.gz,b.nii.gz output_dir=batch/ \
        hydra/launcher=submitit_slurm hydra.launcher.partition=gpu  # docs: clusters

Run ``medldm-recon --help`` for the presets, the inputs and examples (the help template
``hydra/help=medldm_recon``, registered below); the documentation's user guide
(``docs/user_guide/reconstruct.md``) has one line per preset.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from medldm.errors import MedLDMError
from medldm.problems.configs import config_dir

CONFIG_DIR = str(config_dir())
log = logging.getLogger("medldm.recon")

# hydra.run.dir is ``output_dir``, else a dated folder; oc.select would keep a null output_dir
OmegaConf.register_new_resolver(
    "medldm.if_null", lambda value, default: default if value is None else value, replace=True
)

STUDY_SUFFIXES = (".nii", ".nii.gz", ".tif", ".tiff", ".dcm", ".npy", ".h5")

HELP_HEADER = """\
medldm-recon: reconstruct an image, from a simulated measurement of it or from measured
raw data, with a latent-diffusion prior, next to a classical baseline on the same data. A
Hydra app: every option is key=value; -m runs a sweep (one job per value, e.g. per input).
"""

HELP_INPUTS = """\
== Inputs (one of them; none: the preset's example input, shipped, no download) ==
  input=PATH      a NIfTI file, a DICOM series folder (or file), a TIFF/OME-TIFF, or a
                  folder of studies (one run each into output_dir/<study>/)
  kspace=PATH     measured MRI raw k-space of one 2D slice, single- or multi-coil: .npy,
                  BART .cfl/.hdr, Siemens twix .dat, ISMRMRD or fastMRI .h5; with mask=,
                  reference=, acceleration=4|8, kspace_slice=, coil_maps=acs|reference,
                  holdout_splits= (the no-reference score), grid_solve=tv|least_squares|none,
                  weight_search=[0.5,1,2,4] (weights chosen per scan by hold-out)
  sinogram=PATH   measured parallel-beam CT projections, Data Exchange HDF5: FBP and TV
                  per detector row; with rotation_centre=, sinogram_tv_weight=

== Other options ==
  output_dir=DIR (default: outputs/recon/<date>_<time>)   overwrite=true
  device=auto|cpu|cuda   precision=auto|fp32|bf16   seed=0   baseline=false
  dry_run=true (print the time and memory estimate, write nothing)   progress=false
  time_budget=SECONDS (image inputs: the LDM's steps and samples cut to fit; reported)
  preset.KEY=VALUE (preset.slices=16 or all, preset.solver=psld,
  preset.prior=/path/to/checkpoint)   "solver_options={n_samples:8,n_steps:25}"

== Examples ==
  medldm-recon input=scan.nii.gz output_dir=out/                    # MRI 4x on your NIfTI
  medldm-recon preset=ct_sparse_30 input=ct_series/ output_dir=ct/  # DICOM in, DICOM out
  medldm-recon kspace=scan.dat acceleration=4 output_dir=raw/       # twix, undersampled 4x
  medldm-recon -m input=a.nii.gz,b.nii.gz output_dir=batch/ hydra/launcher=joblib
"""

HELP_FOOTER = """\
Documentation: make docs, then docs/_build/html/index.html (user guide: Reconstruct your
scans). Hydra's own options: --hydra-help.
"""


def _preset_lines() -> str:
    """One line per preset of ``configs/preset``: its physics, prior and example input."""
    import yaml

    from medldm.recon.presets import available_recon_presets, preset_folder

    lines = []
    for name in available_recon_presets():
        fields = yaml.safe_load((preset_folder() / f"{name}.yaml").read_text()) or {}
        volume = ", a slab is one problem" if fields.get("volume") else ""
        lines.append(
            f"  {name:<18} {fields.get('physics')}{volume} with the {fields.get('prior')} "
            f"prior (example input: {fields.get('example')})"
        )
    return "\n".join(lines)


def help_template() -> str:
    """The text of ``medldm-recon --help`` (Hydra fills in ``$CONFIG``, the composed
    configuration)."""
    presets = (
        "== Presets (preset=NAME; default mri_brain_4x) ==\n"
        f"{_preset_lines()}\n"
        "  (a preset composes configs/physics, configs/solver and a prior; any of its keys\n"
        "  can be overridden with preset.KEY=VALUE)\n"
    )
    return (
        "${hydra.help.header}\n"
        f"{presets}\n{HELP_INPUTS}\n"
        "== Config (any key can be overridden: key=value) ==\n$CONFIG\n"
        "${hydra.help.footer}"
    )


def _register_help() -> None:
    """``hydra/help=medldm_recon``: the help template above (selected by the defaults list of
    ``configs/recon/config.yaml``, or on the command line)."""
    from hydra.core.config_store import ConfigStore

    node = {
        "app_name": "medldm-recon",
        "header": HELP_HEADER,
        "footer": HELP_FOOTER,
        "template": help_template(),
    }
    ConfigStore.instance().store(group="hydra/help", name="medldm_recon", node=node)


_register_help()


def _is_single_study(path: Path) -> bool:
    """A file, or a DICOM series folder (files only, none of them NIfTI/TIFF/arrays)."""
    if path.is_file():
        return True
    children = [c for c in path.iterdir() if not c.name.startswith(".")]
    batch_like = (".nii", ".nii.gz", ".tif", ".tiff", ".npy", ".h5")
    return not any(c.is_dir() or c.name.lower().endswith(batch_like) for c in children)


def list_studies(folder: Path) -> list[Path]:
    """The studies inside a batch folder: image files and DICOM series sub-folders."""
    studies = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir() or child.name.lower().endswith(STUDY_SUFFIXES):
            studies.append(child)
    return studies


def _study_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".ome.tif", ".ome.tiff", ".nii", ".tif", ".tiff", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _job_study_name(*paths: str | None) -> str:
    """The study name of a job's input (input=, kspace= or sinogram=), for its run folder."""
    for value in paths:
        if value:
            return _study_name(Path(str(value)))
    return "example"


# a multirun job's folder: <job number>_<study>, so that a rerun finds the finished ones
OmegaConf.register_new_resolver("medldm.study_name", _job_study_name, replace=True)


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_one(cfg: DictConfig, input_path: Path | None, out: Path) -> dict[str, Any]:
    """Reconstruct one study into ``out``; returns its metrics."""
    from medldm.recon.outputs import write_run_folder
    from medldm.recon.pipeline import reconstruct

    if cfg.get("sinogram"):  # measured CT projections: FBP and TV, no preset
        from medldm.recon.sinogram_outputs import run_sinogram_study

        return run_sinogram_study(
            Path(cfg.sinogram).expanduser(),
            out,
            rotation_centre=cfg.get("rotation_centre"),
            tv_weight=cfg.get("sinogram_tv_weight"),
            device=str(cfg.device),
            config=_plain(cfg),
            overwrite=bool(cfg.overwrite),
        )
    preset = _preset(cfg)
    if cfg.get("dry_run"):
        print(describe_estimate(cfg, preset, input_path))
        return {}
    if cfg.get("kspace"):
        if cfg.get("time_budget") is not None:
            raise MedLDMError(
                "time_budget applies to image inputs; a measured k-space run reconstructs "
                "every method and its hold-out splits",
                fix="drop time_budget=, or set solver_options={n_steps: ..., n_samples: ...}",
            )
        result = _reconstruct_kspace(cfg, preset)
    else:
        result = reconstruct(
            input_path,
            preset,
            device=str(cfg.device),
            seed=int(cfg.seed),
            baseline=bool(cfg.baseline),
            progress=bool(cfg.progress),
            precision=str(cfg.get("precision", "auto")),
            time_budget=cfg.get("time_budget"),
            solver_options=_plain(cfg.solver_options) if cfg.get("solver_options") else None,
        )
    inputs = [p for p in (input_path, *_kspace_inputs(cfg)) if p]
    paths = write_run_folder(
        result, out, config=_plain(cfg), inputs=inputs, overwrite=bool(cfg.overwrite)
    )
    m = result.metrics
    if "classical" in m:  # measured k-space: every solver on the same data
        print(_measured_summary(m))
        print(f"outputs: {out}\nreport:  {paths['report']}")
        return m
    line = f"{preset.name}: LDM ({m['solver']})"
    if "psnr_db" in m["ldm"]:
        line += f" PSNR {m['ldm']['psnr_db']:.2f} dB / SSIM {m['ldm']['ssim']:.3f}"
    if "baseline" in m:
        b = m["baseline"]
        line += (
            f"; {m['baseline_solver'].upper()} {b['psnr_db']:.2f} dB / "
            f"{b['ssim']:.3f} on the same measurement"
        )
    print(line)
    head = m["ldm"].get("foreground_slices")
    if head and "baseline" in m and "foreground_slices" in m["baseline"]:
        b = m["baseline"]["foreground_slices"]
        print(
            f"  over the {head['n']} slices with foreground: LDM {head['psnr_db']:.2f} dB / "
            f"{head['ssim']:.3f}; {m['baseline_solver'].upper()} {b['psnr_db']:.2f} dB / "
            f"{b['ssim']:.3f}"
        )
    if "time_budget" in m:
        budget = m["time_budget"]
        print(f"{budget['summary']}; the LDM solver took {budget['ldm_seconds']:.1f} s")
    print(f"outputs: {out}\nreport:  {paths['report']}")
    return m


def _preset(cfg: DictConfig) -> Any:
    """The run's preset. A prior or grid other than the preset file's (``preset.prior=``,
    ``preset.grid=``) is the user's choice: the choice by the input's resolution is off."""
    from medldm.recon.presets import available_recon_presets, load_preset, preset_from_dict

    preset = preset_from_dict(_plain(cfg.preset))
    if preset.native and preset.name in available_recon_presets():
        own = load_preset(preset.name)
        if (preset.prior, preset.grid) != (own.prior, own.grid):
            preset = preset.with_overrides(native={})
    return preset


def _kspace_inputs(cfg: DictConfig) -> list[Any]:
    """The measured-data files of a run (k-space, mask, reference), BART's .hdr too."""
    files = [cfg.get("kspace"), cfg.get("mask"), cfg.get("reference")]
    files += [str(Path(f).with_suffix(".hdr")) for f in files if f and str(f).endswith(".cfl")]
    return [f for f in files if f]


def _reconstruct_kspace(cfg: DictConfig, preset: Any) -> Any:
    """``kspace=``: measured raw data (medldm.recon.measured.reconstruct_kspace)."""
    from medldm.recon.measured import reconstruct_kspace

    options = _plain(cfg.solver_options) if cfg.get("solver_options") else None
    return reconstruct_kspace(
        cfg.kspace,
        preset,
        mask=cfg.get("mask"),
        reference=cfg.get("reference"),
        acceleration=cfg.get("acceleration"),
        kspace_slice=cfg.get("kspace_slice"),
        coil_maps_from=str(cfg.get("coil_maps") or "acs"),
        holdout_splits=cfg.get("holdout_splits"),
        grid_solve=str(cfg.get("grid_solve") or "tv"),
        weight_search=cfg.get("weight_search"),  # kspace_weights.check_factors reads it
        device=str(cfg.device),
        precision=str(cfg.get("precision", "auto")),
        seed=int(cfg.seed),
        baseline=bool(cfg.baseline),
        progress=bool(cfg.progress),
        solver_options=options,
    )


def _measured_summary(m: dict[str, Any]) -> str:
    """One line per method of a measured-data run: residual, and PSNR/SSIM with a reference."""
    rows = [(f"LDM ({m['solver']})", m["ldm"]), ("zero-filled", m.get("direct", {}))]
    rows += [(name.upper(), values) for name, values in m.get("classical", {}).items()]
    lines = [f"{m['preset']}: {m['physics']}; coil maps: {m['coil_maps']}"]
    for label, values in rows:
        text = f"  {label:<22}"
        if "psnr_db" in values:
            text += f" PSNR {values['psnr_db']:6.2f} dB  SSIM {values['ssim']:.4f}"
        if values.get("residual") is not None:
            text += f"  residual {values['residual']:.4f}"
        if values.get("holdout_error") is not None:
            text += f"  hold-out {values['holdout_error']:.4f} ± {values['holdout_error_std']:.4f}"
        if values.get("seconds") is not None:
            text += f"  {values['seconds']:.1f} s"
        lines.append(text)
    paired = (m.get("kspace_holdout") or {}).get("ldm_minus_best_classical")
    if paired:
        lines.append(
            f"  hold-out, LDM - {m['kspace_holdout']['best_classical'].upper()} paired over "
            f"{paired['n_splits']} splits: {paired['mean']:+.4f} (std {paired['std']:.4f})"
        )
    search = m.get("weight_search")
    if search:
        from medldm.recon.kspace_weights import edge_text

        chosen = ", ".join(
            f"{name.upper()} {entry['chosen_factor']:g} x"
            for name, entry in search["methods"].items()
        )
        lines.append(f"  weights chosen by hold-out: {chosen} the preset's")
        edge = edge_text(search)
        if edge:
            lines.append(f"  WARNING: {edge}")
    return "\n".join(lines)


def describe_estimate(cfg: DictConfig, preset: Any, input_path: Path | None) -> str:
    """The dry-run text: what would run and its cost, measured by short probe runs of the
    same reconstruction on this machine (:func:`medldm.recon.estimate.calibrated_estimate`);
    nothing is written."""
    import numpy as np

    from medldm.io import load
    from medldm.recon.estimate import calibrated_estimate
    from medldm.recon.examples import example_input
    from medldm.recon.pipeline import canonical_image, reconstruct, slab_bounds

    if cfg.get("solver_options"):
        preset = preset.with_overrides(solver_options=_plain(cfg.solver_options))
    source = input_path or example_input(preset.example)
    canonical = canonical_image(load(source))
    shape = canonical.spatial_shape
    in_plane = min(canonical.spacing[:2]) if len(shape) > 1 else None
    preset = preset.for_resolution(in_plane)
    solver = preset.build_solver()
    n = 1
    if len(shape) == 3:
        start, stop = slab_bounds(shape[2], preset.slices)
        n = stop - start
    size_mb = float(np.prod(shape)) * 4 / 2**20
    samples = int(getattr(solver, "n_samples", 1))
    from medldm.models.prior import resolve_device

    device = str(resolve_device(str(cfg.device)))
    header = (
        f"dry run — preset {preset.name}: {n} slice(s) of {shape} ({size_mb:.1f} MB), "
        f"solver {solver.name} x {samples} samples, prior {Path(str(preset.prior)).name} on "
        f"{device}, baseline {preset.baseline if cfg.baseline else 'none'}"
    )
    option = getattr(solver, "schedule_option", None)
    if option is None:
        return f"{header}\n(no estimate: {solver.name} has no step schedule to time)"
    steps = int(getattr(solver, option))

    def probe(k: int, with_baseline: bool) -> dict[str, Any]:
        result = reconstruct(
            source,
            preset.with_overrides(solver_options={option: k}),
            device=device,
            seed=int(cfg.seed),
            baseline=with_baseline,
            progress=False,
            precision=str(cfg.get("precision", "auto")),
        )
        return result.metrics

    estimate = calibrated_estimate(probe, steps, option, baseline=bool(cfg.baseline), device=device)
    return f"{header}\n{estimate.describe()}"


def run_batch(cfg: DictConfig, folder: Path, out: Path) -> dict[str, Any]:
    """Every study of ``folder`` into ``out/<study>``; failures recorded, not fatal."""
    from tqdm.auto import tqdm

    studies = list_studies(folder)
    report: dict[str, Any] = {"input": str(folder), "done": [], "skipped": [], "failed": []}
    for study in tqdm(studies, desc="studies", disable=not cfg.progress):
        target = out / _study_name(study)
        if (target / "metrics.json").exists() and not cfg.overwrite:
            report["skipped"].append(study.name)
            continue
        unfinished = target.exists() and any(target.iterdir())
        try:
            # killed mid-write: redo it (each file there is complete or absent)
            study_cfg = OmegaConf.merge(cfg, {"overwrite": True}) if unfinished else cfg
            run_one(study_cfg, study, target)
            report["done"].append(study.name)
        except MedLDMError as error:
            log.error("study %s failed: %s", study, error)
            report["failed"].append({"study": study.name, "error": str(error)})
    from medldm.recon.outputs import _write_json

    _write_json(report, out / "batch_report.json", overwrite=True)
    print(
        f"batch: {len(report['done'])} done, {len(report['skipped'])} already done, "
        f"{len(report['failed'])} failed (see {out / 'batch_report.json'})"
    )
    return report


def run_from_config(cfg: DictConfig, out: Path) -> dict[str, Any]:
    input_path = Path(cfg.input).expanduser() if cfg.get("input") else None
    if input_path is not None and not input_path.exists():
        raise MedLDMError(
            "input not found",
            path=input_path,
            fix="give input=<NIfTI file, DICOM folder, TIFF or folder of studies>",
        )
    if input_path is not None and input_path.is_dir() and not _is_single_study(input_path):
        return run_batch(cfg, input_path, out)
    return run_one(cfg, input_path, out)


def run_multirun_job(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """One job of a Hydra multirun: a job whose folder already holds ``metrics.json`` (a
    finished earlier run of the same sweep) is skipped; one that was killed mid-write (files
    but no ``metrics.json``, which is written last) is redone."""
    if (out / "metrics.json").exists() and not cfg.overwrite:
        print(f"already done: {out} (pass overwrite=true to redo it)")
        return {"skipped": str(out)}
    return run_from_config(OmegaConf.merge(cfg, {"overwrite": True}), out)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="recon/config")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    # a multirun job writes into its sweep sub-folder (output_dir is the sweep's folder)
    out = Path(
        hydra_cfg.runtime.output_dir if multirun or not cfg.get("output_dir") else cfg.output_dir
    )
    started = time.perf_counter()
    try:
        if multirun:
            run_multirun_job(cfg, out)
        else:
            run_from_config(cfg, out)
    except MedLDMError as error:
        print(f"medldm-recon: {error}", file=sys.stderr)
        sys.exit(2)
    log.info("finished in %.1f s", time.perf_counter() - started)
