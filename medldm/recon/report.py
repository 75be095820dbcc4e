"""``report.html`` of a reconstruction run: figures where people would rather look than
read, the metrics with their convention, timings and what was done to the grid.

The HTML is one self-contained file (figures embedded as PNG data URIs, also saved in
``figures/``), so it opens in any browser, offline, and can be mailed as is.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

import numpy as np

from medldm.recon.result import ReconResult
from medldm.utils.files import atomic_output


def _panels(result: ReconResult, index: int) -> list[tuple[str, np.ndarray, str]]:
    """(title, image, kind) for slice ``index`` of the slab."""
    panels: list[tuple[str, np.ndarray, str]] = []
    truth_title = "input (ground truth)" if result.simulated else "reference (fully sampled)"
    if result.truth is not None:
        panels.append((truth_title, result.truth[index], "image"))
    direct = "FBP" if result.direct_label == "fbp" else "zero-filled"
    panels.append((f"measurement ({direct})", result.direct[index], "image"))
    if result.baseline is not None:
        panels.append(
            (f"{result.preset.baseline.upper()} baseline", result.baseline[index], "image")
        )
    for name, stack in result.other_baselines.items():
        panels.append((name.upper(), stack[index], "image"))
    panels.append((f"LDM ({result.metrics['solver']})", result.reconstruction[index], "image"))
    if result.truth is not None:
        panels.append(
            ("|LDM - truth|", np.abs(result.reconstruction[index] - result.truth[index]), "error")
        )
    panels.append(("posterior std", result.std[index], "std"))
    if result.interval90 is not None:
        calibrated = result.interval_note.startswith("calibrated")
        title = "90 % interval half-width\n" + ("(calibrated)" if calibrated else "(UNCALIBRATED)")
        panels.append((title, result.interval90[index], "std"))
    return panels


def slice_figure(result: ReconResult, index: int, path: Path, dpi: int = 90) -> Path:
    """One row of panels for slice ``index``, saved as PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _panels(result, index)
    reference = result.truth[index] if result.truth is not None else result.reconstruction[index]
    vmin, vmax = np.percentile(reference, [0.5, 99.5])
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), squeeze=False)
    for axis, (title, image, kind) in zip(axes[0], panels, strict=True):
        if kind == "image":
            shown = axis.imshow(image, cmap="gray", vmin=vmin, vmax=vmax, origin="lower")
        else:
            shown = axis.imshow(
                image,
                cmap="magma",
                vmin=0,
                vmax=float(np.percentile(image, 99.5)) or 1e-6,
                origin="lower",
            )
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    with atomic_output(path, overwrite=True) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    plt.close(figure)
    return path


def _metrics_rows(metrics: dict[str, Any]) -> str:
    rows = []
    names = [
        ("ldm", f"LDM ({metrics.get('solver')}, prior {metrics.get('prior')})"),
        ("baseline", f"{(metrics.get('baseline_solver') or '').upper()} baseline"),
        ("direct", "direct (zero-filled / FBP)"),
    ]
    # measured data: every classical solver run on the same k-space (the baseline included)
    classical = metrics.get("classical") or {}
    if classical:
        names = names[:1] + [(f"classical:{n}", f"{n.upper()} (classical)") for n in classical]
        names.append(("direct", "direct (zero-filled)"))
    for key, label in names:
        values = classical.get(key[10:]) if key.startswith("classical:") else metrics.get(key)
        if not values:
            continue
        psnr = values.get("psnr_db")
        ssim = values.get("ssim")
        residual = values.get("residual")
        cells = [
            html.escape(label),
            "" if psnr is None else f"{psnr:.2f}",
            "" if ssim is None else f"{ssim:.4f}",
            "" if residual is None else f"{residual:.4f}",
        ]
        if metrics.get("kspace_holdout"):
            held = values.get("holdout_error")
            spread = values.get("holdout_error_std", 0.0)
            cells.append("" if held is None else f"{held:.4f} &plusmn; {spread:.4f}")
        cells += [
            str(values.get("nfe", "")),
            "" if values.get("seconds") is None else f"{values['seconds']:.1f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return "\n".join(rows)


def _holdout_header(metrics: dict[str, Any]) -> str:
    """The hold-out column's header, when the run has one."""
    if not metrics.get("kspace_holdout"):
        return ""
    return "<th>k-space hold-out error (mean &plusmn; std over splits)</th>"


def _holdout_note(metrics: dict[str, Any]) -> str:
    """How the hold-out error was made, under the metrics table."""
    holdout = metrics.get("kspace_holdout")
    if not holdout:
        return ""
    paired = ""
    if holdout.get("ldm_minus_best_classical"):
        diff = holdout["ldm_minus_best_classical"]
        paired = (
            f" Paired over the same splits, LDM minus the best classical method "
            f"({html.escape(str(holdout['best_classical']).upper())}): "
            f"<b>{diff['mean']:+.4f}</b> (std {diff['std']:.4f}, from {diff['min']:+.4f} to "
            f"{diff['max']:+.4f}; negative: the LDM predicts the held-out k-space better)."
        )
    return (
        "<p class='note'>k-space hold-out (a score without a reference; lower is better): "
        + html.escape(holdout["description"])
        + ". It ranks methods on this scan; measurement noise in the held-out samples sets "
        "the same floor for every method." + paired + "</p>"
    )


def _weight_search_note(metrics: dict[str, Any]) -> str:
    """The per-scan weights of the solvers, when they were searched."""
    search = metrics.get("weight_search")
    if not search:
        return ""
    chosen = "; ".join(
        f"{html.escape(name.upper())} {entry['chosen_weight']:.3g} "
        f"({entry['chosen_factor']:g} x the preset's {entry['preset_weight']:.3g})"
        for name, entry in search["methods"].items()
    )
    from medldm.recon.kspace_weights import edge_text

    edge = edge_text(search)
    return (
        "<p class='note'>Per-scan weights: "
        + html.escape(search["description"])
        + f". Chosen: {chosen}."
        + (f" <b>{html.escape(edge)}.</b>" if edge else "")
        + "</p>"
    )


def _uncertainty_paragraph(metrics: dict[str, Any], interval_note: str) -> str:
    """What the posterior std is worth here: coverage of its intervals (uncalibrated and,
    when fitted on validation cases, calibrated) and its rank correlation with the error."""
    u = metrics.get("uncertainty")
    if not u:
        return ""

    def pct(key: str) -> str:
        value = u.get(key)
        return "n/a" if value is None else f"{100 * value:.0f} %"

    parts = [f"<h2>Uncertainty</h2><p class='note'>Interval map: {html.escape(interval_note)}."]
    if "coverage_90" in u:
        parts.append(
            f" The truth fell inside the 50 % / 90 % intervals (estimate +- z std) on "
            f"{pct('coverage_50')} / {pct('coverage_90')} of the "
            f"{html.escape(str(u.get('roi') or 'foreground'))} pixels"
        )
        if u.get("calibrated"):
            parts.append(
                f"; with the calibrated widths on {pct('coverage_50_calibrated')} / "
                f"{pct('coverage_90_calibrated')}"
            )
        rho = u.get("std_error_spearman")
        if rho is not None:
            verdict = "uninformative" if abs(rho) < 0.1 else "informative"
            parts.append(
                f". Spearman correlation of std and |error|: {rho:.2f} "
                f"(the std map is {verdict} about where the errors are)"
            )
        parts.append(".")
    parts.append("</p>")
    return "".join(parts)


def _measured_notes(metrics: dict[str, Any]) -> list[str]:
    """What a measured-data run did beyond the simulated path (empty for simulations)."""
    labels = [
        ("input", "Input"),
        ("sampling_mask", "Sampling mask"),
        ("coil_maps", "Coil maps"),
        ("orientation", "Orientation"),
        ("tuned_for", "Solver presets tuned for the simulated operator"),
    ]
    notes = [f"{label}: {metrics[key]}" for key, label in labels if metrics.get(key)]
    notes += [f"Reading: {note}" for note in metrics.get("reading") or []]
    return notes


def _figure_blocks(result: ReconResult, figures: Path) -> list[str]:
    """The first, middle and last slices' figures, saved in ``figures`` and embedded."""
    n = result.reconstruction.shape[0]
    chosen = sorted({n // 2, 0, n - 1}) if n > 2 else list(range(n))
    blocks = []
    for index in chosen:
        path = slice_figure(result, index, figures / f"slice_{index:03d}.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        blocks.append(
            f'<figure><img alt="slice {index}" src="data:image/png;base64,{data}">'
            f"<figcaption>slice {index + 1} of {n} (slab starts at index "
            f"{result.slab_start} of the input)</figcaption></figure>"
        )
    return blocks


def _verdict(m: dict[str, Any]) -> str:
    """The headline: the LDM against the best classical method (measured data) or the
    baseline, on the same measurement."""
    if m.get("best_classical") is not None:
        return (
            f"<p class='verdict'>LDM vs the best classical reconstruction "
            f"({html.escape(str(m['best_classical']).upper())}) on the same measurement: "
            f"<b>{m['ldm_minus_best_classical_psnr_db']:+.2f} dB</b> PSNR.</p>"
        )
    gain = m.get("ldm_minus_baseline_psnr_db")
    if gain is not None:
        return (
            f"<p class='verdict'>LDM vs {html.escape(str(m.get('baseline_solver')).upper())} on "
            f"the same measurement: <b>{gain:+.2f} dB</b> PSNR.</p>" + _foreground_slices_note(m)
        )
    return ""


def _foreground_slices_note(m: dict[str, Any]) -> str:
    """A line with the scores over the slices with foreground, when the slab also holds
    (nearly) empty ones."""
    ldm, baseline = (
        m.get("ldm", {}).get("foreground_slices"),
        (m.get("baseline") or {}).get("foreground_slices"),
    )
    if not ldm or not baseline:
        return ""
    name = html.escape(str(m.get("baseline_solver")).upper())
    return (
        f"<p>Over the {ldm['n']} slices with at least 15 % foreground (the "
        f"means above count every slice): LDM {ldm['psnr_db']:.2f} dB / SSIM "
        f"{ldm['ssim']:.4f}, {name} {baseline['psnr_db']:.2f} dB / {baseline['ssim']:.4f}.</p>"
    )


#: For automated checks (headless browsers): did every figure of the page decode?
FIGURES_LOADED_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  document.body.dataset.figures = images.length;
  document.body.dataset.figuresLoaded =
    images.every(function (i) { return i.complete && i.naturalWidth > 0; });
});
</script>"""


def _budget_item(metrics: dict[str, Any]) -> str:
    """A list item saying what ``time_budget`` chose and how long the LDM solver took."""
    budget = metrics.get("time_budget")
    if not budget:
        return ""
    return (
        f'<li id="time-budget">{html.escape(str(budget["summary"]))}; the LDM solver '
        f"took {budget['ldm_seconds']:.1f} s.</li>"
    )


def write_report(result: ReconResult, out: Path, *, overwrite: bool = False) -> Path:
    """Write ``out/report.html`` and ``out/figures/slice_*.png``; returns the HTML path."""
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    blocks = _figure_blocks(result, figures)
    m = result.metrics
    verdict = _verdict(m)
    residual = m["ldm"].get("residual_over_noise")
    relative = m["ldm"].get("residual")
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>medldm reconstruction: {html.escape(result.preset.name)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #bbb; padding: 4px 10px; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }}
.verdict {{ font-size: 1.2em; }} .note {{ color: #444; }}
</style></head><body>
<h1>medldm reconstruction — preset {html.escape(result.preset.name)}</h1>
{verdict}
<h2>Metrics</h2>
<table id="metrics"><thead><tr><th>method</th><th>PSNR (dB)</th><th>SSIM</th>
<th>data residual ||Ax-y||/||y||</th>{_holdout_header(m)}<th>NFE</th><th>seconds</th></tr>
</thead><tbody>
{_metrics_rows(m)}
</tbody></table>
{_holdout_note(m)}{_weight_search_note(m)}
<p class="note">Convention: {html.escape(str(m.get("convention", "")))}.
{
        "Simulated measurement (seed " + str(m.get("seed")) + ")."
        if result.simulated
        else "Measured data: no ground truth, only the data residual and the k-space "
        "hold-out error (where run) are reported."
        if result.truth is None
        else "Measured data, scored against the reference."
    }
LDM data residual ||Ax-y||/(sigma sqrt(m)) = {"n/a" if residual is None else f"{residual:.2f}"}
(about 1 = fits the data to the noise level); relative ||Ax-y||/||y|| =
{"n/a" if relative is None else f"{relative:.4f}"}.</p>
{_uncertainty_paragraph(m, result.interval_note)}
<h2>Figures</h2>
{"".join(blocks)}
<h2>What was done</h2>
<ul>
<li>Physics: {html.escape(str(m.get("physics") or result.preset.physics))};
solver {html.escape(str(m.get("solver")))} with prior {html.escape(str(m.get("prior")))};
{m.get("slices")} slice(s)
{"as one problem, coupled along z" if m.get("volume_mode") else "as independent 2D problems"}.</li>
<li>Grid: {html.escape(str(m.get("grid") or result.grid.describe()))}.</li>
{"".join(f"<li>{html.escape(str(note))}</li>" for note in _measured_notes(m))}
<li>Intensities: {html.escape(str(m.get("intensity")))}; outputs are mapped back.</li>
<li>Device {html.escape(str(m.get("device")))}; total {m.get("total_seconds")} s.</li>
{_budget_item(m)}
</ul>
{FIGURES_LOADED_SCRIPT}
</body></html>
"""
    path = out / "report.html"
    with atomic_output(path, overwrite=overwrite) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path
