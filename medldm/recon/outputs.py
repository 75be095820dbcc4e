"""Writing a reconstruction run folder in formats clinical users open in their viewers.

The images go out in the input's own format and geometry: DICOM in -> a derived DICOM
series (new series, same study) per image; NIfTI in -> NIfTI; TIFF in -> TIFF. Files:

* ``reconstruction``, ``std`` (posterior pixel-wise std), ``zero_filled`` or ``fbp`` (the
  direct reconstruction of the measurement), ``<baseline>`` (e.g. ``tv``) and any further
  classical solver run on the same measurement (e.g. ``cg``) — images;
* ``measurement.npy`` (k-space / sinogram / observed pixels) and ``sampling_mask.npy``;
* ``metrics.json``, ``report.html`` (+ ``figures/``), ``config.yaml``, and the provenance
  sidecar of the reconstruction (inputs' SHA-256, versions, config).

Every file is written atomically, ``metrics.json`` last (a folder without it is an
unfinished run); every image is checked finite before anything is written; an existing run
folder is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import MedLDMError, OutputExistsError
from medldm.recon.result import ReconResult
from medldm.utils.files import atomic_output


def input_format(result: ReconResult) -> str:
    """``"dicom"``, ``"nifti"`` or ``"tiff"`` (measured data and in-memory images: NIfTI)."""
    fmt = str(result.source.metadata.get("format", "")).lower()
    if fmt == "dicom":
        return "dicom"
    if "tiff" in fmt:
        return "tiff"
    return "nifti"


def _write_image(
    result: ReconResult, stack: np.ndarray, name: str, out: Path, overwrite: bool, description: str
) -> Path:
    from medldm.io import write_dicom_series, write_nifti
    from medldm.io.microscopy import write_tiff

    image = result.slab_image(stack)
    fmt = input_format(result)
    if fmt == "dicom":
        folder = out / f"{name}_dicom"
        write_dicom_series(
            image,
            folder,
            source=result.source,
            series_description=description[:64],
            same_study=True,
            overwrite=overwrite,
            derivation_description=f"medldm {result.preset.name}: {description}"[:1024],
        )
        return folder
    if fmt == "tiff":
        return write_tiff(image, out / f"{name}.tif", overwrite=overwrite)
    return write_nifti(image, out / f"{name}.nii.gz", overwrite=overwrite)


def _write_json(data: Any, path: Path, overwrite: bool) -> Path:
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def _write_npy(array: np.ndarray, path: Path, overwrite: bool) -> Path:
    with atomic_output(path, overwrite=overwrite) as temporary, open(temporary, "wb") as handle:
        np.save(handle, array)
    return path


def refuse_existing_run(out: str | Path, overwrite: bool) -> Path:
    """``out`` as a Path; refuses a folder that already holds a run unless ``overwrite``."""
    out = Path(out)
    if (out / "metrics.json").exists() and not overwrite:
        raise OutputExistsError(
            "this run folder already holds a reconstruction",
            path=out,
            fix="choose another output_dir or pass overwrite=true",
        )
    return out


def write_run_folder(
    result: ReconResult,
    out: str | Path,
    *,
    config: dict[str, Any] | None = None,
    inputs: list[str | Path] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write every output of ``result`` into ``out``; returns name -> path."""
    from medldm.io import write_provenance
    from medldm.recon.report import write_report

    out = refuse_existing_run(out, overwrite)
    direct_name = result.direct_label
    images = {
        "reconstruction": (result.reconstruction, f"{result.metrics['solver']} LDM recon"),
        "std": (result.std, "posterior std (LDM samples)"),
        direct_name: (result.direct, f"{direct_name} (direct)"),
    }
    if result.baseline is not None:
        images[result.preset.baseline] = (result.baseline, f"{result.preset.baseline} baseline")
    for name, stack in result.other_baselines.items():
        images[name] = (stack, f"{name} (classical)")
    if result.interval90 is not None:
        images["interval90_halfwidth"] = (
            result.interval90,
            f"90 % interval half-width, {result.interval_note}",
        )
    for name, (stack, _) in images.items():  # nothing is written unless all is finite
        if not np.all(np.isfinite(stack)):
            raise MedLDMError(
                f"the {name} image contains NaN/Inf values; nothing was written",
                path=out,
                fix="the solver diverged: lower its step sizes (configs/solver) or report it",
            )
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, (stack, description) in images.items():
        paths[name] = _write_image(result, stack, name, out, overwrite, description)
    paths["measurement"] = _write_npy(result.measurement, out / "measurement.npy", overwrite)
    if result.sampling_mask is not None:
        paths["sampling_mask"] = _write_npy(
            result.sampling_mask.astype(np.uint8), out / "sampling_mask.npy", overwrite
        )
    if config is not None:
        from omegaconf import OmegaConf

        with atomic_output(out / "config.yaml", overwrite=overwrite) as temporary:
            temporary.write_text(OmegaConf.to_yaml(OmegaConf.create(config)))
        paths["config"] = out / "config.yaml"
    paths["provenance"] = write_provenance(
        paths["reconstruction"],
        inputs=[p for p in (inputs or []) if Path(p).exists()],
        config=config or {},
        extra={"metrics": result.metrics},
        overwrite=overwrite,
    )
    paths["report"] = write_report(result, out, overwrite=overwrite)
    paths["metrics"] = _write_json(result.metrics, out / "metrics.json", overwrite)
    return paths
