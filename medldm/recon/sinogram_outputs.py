"""Writing a measured-sinogram run folder (``medldm-recon sinogram=FILE``).

Files, like the image path's (:mod:`medldm.recon.outputs`):

* ``fbp.nii.gz``, ``tv.nii.gz``: the reconstructions, one slice per detector row, voxel
  size the file's pixel size (else 1 unit = 1 detector pixel, which the NIfTI header can
  only call mm: ``metrics.json`` says so), intensities in attenuation per mm (per pixel
  without a pixel size); the provenance sidecar of ``tv.nii.gz``;
* ``measurement.npy``: the reconstruction window's line integrals ``(rows, bins, views)``;
* ``metrics.json`` (centre estimates, data residuals, TV weight and why, the CT prior's
  verdict) written last, ``report.html`` (+ ``figures/``), ``config.yaml``.

Every file is written atomically; an existing run folder is refused unless ``overwrite``.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from medldm.errors import MedLDMError
from medldm.io import MedImage
from medldm.recon.outputs import refuse_existing_run
from medldm.recon.report import FIGURES_LOADED_SCRIPT
from medldm.recon.sinogram import SinogramResult, reconstruct_sinogram
from medldm.utils.files import atomic_output, atomic_write_text


def volume(result: SinogramResult, stack: np.ndarray) -> MedImage:
    """A ``(rows, side, side)`` stack as a MedImage: ``x`` = image column, ``y`` = image
    row, ``z`` = detector row, voxel size the pixel size (mm) or 1."""
    pixel = result.scan.pixel_size_mm or 1.0
    array = np.ascontiguousarray(np.asarray(stack, np.float32).transpose(2, 1, 0))
    return MedImage(
        array,
        np.diag([pixel, pixel, pixel, 1.0]),
        modality="CT",
        unit=result.unit,
        metadata={
            "format": "data-exchange",
            "source_path": str(result.scan.path),
            "pixel_size_note": result.scan.pixel_size_note,
        },
    )


def _figure(panels: list[tuple[str, np.ndarray]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = panels[-1][1]
    vmin, vmax = np.percentile(reference, [0.5, 99.8])
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6), squeeze=False)
    for axis, (name, image) in zip(axes[0], panels, strict=True):
        axis.imshow(image, cmap="gray", vmin=vmin, vmax=vmax)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    with atomic_output(path, overwrite=True) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)
    return path


def _centre_figure(result: SinogramResult, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entry = result.centre_estimates.get("row 0", {})
    details = entry.get("fbp_sharpness_details")
    if not details:
        return None
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for axis, stage in zip(axes, ("coarse", "fine"), strict=True):
        axis.plot(details[f"{stage}_centres"], details[f"{stage}_l1"], "o-", ms=3)
        axis.axvline(entry["opposite_views"], color="C1", ls="--", label="opposite views")
        axis.axvline(entry["fbp_sharpness"], color="C2", ls=":", label="FBP sharpness")
        axis.set_xlabel("candidate centre (detector bin)")
        axis.set_ylabel("L1 norm of the FBP image")
        axis.set_title(f"{stage} search, row 0", fontsize=9)
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(path, overwrite=True) as temporary:
        figure.savefig(temporary, dpi=90, format="png")
    plt.close(figure)
    return path


def _embedded(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def write_sinogram_report(result: SinogramResult, out: Path, *, overwrite: bool = False) -> Path:
    """``out/report.html`` with ``out/figures/*.png`` embedded."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    blocks = []
    for row in range(result.scan.n_rows):
        panels = [
            ("FBP, axis at the detector middle", result.fbp_centre_at_middle[row]),
            (f"FBP, centre {result.centre:.2f}", result.fbp[row]),
            (f"TV (weight {result.metrics['tv']['weight']:g})", result.tv[row]),
        ]
        path = _figure(panels, figures / f"row_{row:03d}.png", f"detector row {row}")
        blocks.append(_embedded(path, f"detector row {row}: FBP and TV ({result.unit})"))
    centre_plot = _centre_figure(result, figures / "centre_search.png")
    if centre_plot is not None:
        blocks.append(_embedded(centre_plot, "FBP sharpness over candidate centres (row 0)"))
    m = result.metrics
    rows = []
    for name, entry in result.centre_estimates.items():
        sharp = entry.get("fbp_sharpness")
        sharp_cells = (
            "<td></td><td></td>"
            if sharp is None
            else f"<td>{sharp:.3f}</td><td>{entry['difference_px']:.3f}</td>"
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{entry['opposite_views']:.3f}</td>"
            f"{sharp_cells}</tr>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.notes)
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>medldm reconstruction: {html.escape(str(result.scan.path.name))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #bbb; padding: 4px 10px; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>medldm reconstruction — measured sinogram {html.escape(result.scan.path.name)}</h1>
<p>{m["rows"]} detector row(s) x {m["detector_bins"]} bins x {m["views"]} views
({m["angles_deg"]["first"]:.4g} to {m["angles_deg"]["last"]:.4g} degrees, from the file);
flat/dark corrected with {m["flat_dark"]["flats"]} flats and {m["flat_dark"]["darks"]}
darks, -log. {html.escape(result.scan.pixel_size_note)}.</p>
<h2>Rotation centre</h2>
<p>Used: <b>{result.centre:.3f}</b> ({html.escape(result.centre_source)}); the detector's
middle bin is {m["rotation_centre"]["detector_middle_bin"]}
(offset {m["rotation_centre"]["offset_from_middle"]:+.3f}). Positions are 0-based
detector bins, pixel centres at integers.</p>
<table id="centres"><thead><tr><th>row</th><th>opposite views</th><th>FBP sharpness</th>
<th>|difference| (px)</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
<h2>Reconstructions</h2>
<table id="metrics"><thead><tr><th>method</th><th>data residual ||Ax-y||/||y||</th>
<th>residual RMS</th><th>seconds</th></tr></thead><tbody>
<tr><td>FBP</td><td>{m["fbp"]["residual"]:.4g}</td><td>{m["fbp"]["residual_rms"]:.4g}</td>
<td>{m["fbp"]["seconds"]:.1f}</td></tr>
<tr><td>TV (weight {m["tv"]["weight"]:g}, {m["tv"]["n_iter"]} iterations)</td>
<td>{m["tv"]["residual"]:.4g}</td><td>{m["tv"]["residual_rms"]:.4g}</td>
<td>{m["tv"]["seconds"]:.1f}</td></tr>
</tbody></table>
<p>TV weight: {html.escape(str(m["tv"]["rule"]))}.
{
        ""
        if "noise_rms_estimate" not in m["tv"]
        else f"Noise RMS estimate {m['tv']['noise_rms_estimate']:.4g} (line integrals)."
    }
Measured data: no ground truth, so only the data residual is reported (on the
{m["window"]["image_side"]}-bin reconstruction window).</p>
<p>CT prior: {html.escape(m["ct_prior"]["reason"])}.</p>
<h2>Figures</h2>
{"".join(blocks)}
<h2>Notes</h2><ul>{notes}</ul>
{FIGURES_LOADED_SCRIPT}
</body></html>
"""
    return atomic_write_text(out / "report.html", text, overwrite=overwrite)


def write_sinogram_run(
    result: SinogramResult,
    out: str | Path,
    *,
    config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write every output of ``result`` into ``out``; returns name -> path."""
    from medldm.io import write_nifti, write_provenance

    out = refuse_existing_run(out, overwrite)
    images = {"fbp": result.fbp, "tv": result.tv}
    for name, stack in images.items():
        if not np.all(np.isfinite(stack)):
            raise MedLDMError(
                f"the {name} image contains NaN/Inf values; nothing was written", path=out
            )
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, stack in images.items():
        paths[name] = write_nifti(
            volume(result, stack), out / f"{name}.nii.gz", overwrite=overwrite
        )
    with (
        atomic_output(out / "measurement.npy", overwrite=overwrite) as temporary,
        open(temporary, "wb") as handle,
    ):
        np.save(handle, result.measurement)
    paths["measurement"] = out / "measurement.npy"
    if config is not None:
        from omegaconf import OmegaConf

        paths["config"] = atomic_write_text(
            out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config)), overwrite=overwrite
        )
    paths["provenance"] = write_provenance(
        paths["tv"],
        inputs=[result.scan.path] if result.scan.path else [],
        config=config or {},
        extra={"metrics": result.metrics},
        overwrite=overwrite,
    )
    paths["report"] = write_sinogram_report(result, out, overwrite=overwrite)
    text = json.dumps(result.metrics, indent=2, default=str) + "\n"
    paths["metrics"] = atomic_write_text(out / "metrics.json", text, overwrite=overwrite)
    return paths


def run_sinogram_study(
    sinogram: str | Path,
    out: str | Path,
    *,
    rotation_centre: float | None = None,
    tv_weight: float | None = None,
    device: str = "auto",
    config: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The ``medldm-recon sinogram=FILE`` run: reconstruct, write, print a summary."""
    result = reconstruct_sinogram(
        sinogram, rotation_centre=rotation_centre, tv_weight=tv_weight, device=device
    )
    paths = write_sinogram_run(result, out, config=config, overwrite=overwrite)
    m = result.metrics
    estimates = "; ".join(
        f"{row}: opposite views {e['opposite_views']:.2f}"
        + (f", FBP sharpness {e['fbp_sharpness']:.2f}" if "fbp_sharpness" in e else "")
        for row, e in result.centre_estimates.items()
    )
    middle = m["rotation_centre"]["detector_middle_bin"]
    print(f"rotation centre {result.centre:.2f} (detector middle {middle}; {estimates})")
    print(
        f"FBP residual {m['fbp']['residual']:.4g}; TV (weight {m['tv']['weight']:g}) residual "
        f"{m['tv']['residual']:.4g}; CT prior {m['ct_prior']['reason']}"
    )
    print(f"outputs: {out}\nreport:  {paths['report']}")
    return m
