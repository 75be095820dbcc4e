"""A whole IXI test volume (every axial slice) through ``mri_brain_3d``: time, memory, quality.

``--preset mri_brain_4x`` (or ``_8x``) runs the 2D per-slice acquisition instead: every axial
slice its own 2D k-space with the same lines (multislice, the app's slab as one problem,
coupled by TV along z), against 3D TV on the same data. A preset may be a YAML path.

The volume is one 3D problem (3D k-space with random phase-encode planes, the preset's
``mri_4x`` physics); the 2D brain prior denoises all its slices x samples as one batch per
step and the data consistency couples neighbouring slices. Reported for each setting
(``--settings``, ``samples x steps``): wall time of ``medldm.reconstruct`` (load,
simulate, LDM, TV baseline, scoring), the LDM solver's seconds, peak memory above the start
(:class:`medldm.utils.memory.PeakMemory`: resident set size on CPU) and PSNR/SSIM of the LDM
and TV (per slice against the input, mean over slices: the app's ``metrics.json``). The
issue's target: the whole volume in at most 5 minutes on two cores.

Then the whole-head comparison the issue asks for: over the slices with at least 15 % of
their pixels foreground (the volume in the IXI card's model range, the rule training and
the bench keep slices by: :mod:`medldm.problems.model_view`), LDM minus 3D TV per slice,
mean with a paired 95 % Student-t interval, over all of them and per third of that extent
(inferior, middle, superior).

Run::

    .venv/bin/python benchmarks/whole_volume.py --subject IXI603 IXI606 IXI632 --settings 4x8 \\
        --json benchmarks/results/whole_volume/cpu.json

``--physics mri_8x`` measures with another operator (the preset's domain picks its solver
preset: ``latent_dds_mri_8x_volume`` for ``mri_brain_3d``). ``--set slice_weight=0`` passes
solver options to every setting; choose them on the
validation subjects (``--subject IXI527 IXI565 IXI577``), report them on the test ones.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

import medldm
from medldm.data.cards import load_card
from medldm.data.root import find_data_root
from medldm.metrics.psnr import psnr
from medldm.metrics.ssim import ssim
from medldm.problems.model_view import FOREGROUND_LEVEL, MIN_FOREGROUND_FRACTION, fit_intensity
from medldm.utils.memory import PeakMemory

THIRDS = ("inferior", "middle", "superior")


def paired(differences: np.ndarray) -> dict:
    """Mean of paired differences, its 95 % Student-t interval and the share above 0.

    >>> paired(np.array([1.0, 2.0, 3.0]))["mean"]
    2.0
    """
    n = differences.size
    half = stats.t.ppf(0.975, n - 1) * differences.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    mean = float(differences.mean())
    return {
        "n": int(n),
        "mean": round(mean, 3),
        "ci95": [round(mean - float(half), 3), round(mean + float(half), 3)],
        "wins": round(float((differences > 0).mean()), 3),
    }


def foreground_extent(truth: np.ndarray) -> np.ndarray:
    """Indices of the foreground extent of an IXI ``(S, rows, cols)`` stack (inferior
    first): first to last slice with at least 15 % of its pixels foreground."""
    model = fit_intensity(load_card("ixi_t1").normalizer(), truth).forward(truth)
    fraction = (np.abs(np.asarray(model)) > FOREGROUND_LEVEL).reshape(len(truth), -1).mean(1)
    keep = np.flatnonzero(fraction >= MIN_FOREGROUND_FRACTION)
    return np.arange(keep[0], keep[-1] + 1)


def by_third(truth: np.ndarray, ldm: np.ndarray, tv: np.ndarray) -> dict:
    """LDM - TV per foreground slice of ``(S, rows, cols)`` stacks (inferior first): PSNR and
    SSIM (each slice's own range, as the app scores), overall and per third."""
    keep = foreground_extent(truth)
    gain_psnr = np.array([psnr(ldm[i], truth[i]) - psnr(tv[i], truth[i]) for i in keep])
    gain_ssim = np.array([ssim(ldm[i], truth[i]) - ssim(tv[i], truth[i]) for i in keep])
    parts = np.array_split(np.arange(keep.size), 3)
    result = {"slices": [int(keep[0]), int(keep[-1])], "all": paired(gain_psnr)}
    result["all"]["ssim"] = round(float(gain_ssim.mean()), 4)
    for name, part in zip(THIRDS, parts, strict=True):
        result[name] = {**paired(gain_psnr[part]), "ssim": round(float(gain_ssim[part].mean()), 4)}
    return result


def run(
    path: Path,
    samples: int,
    steps: int,
    precision: str,
    progress: bool,
    options: dict[str, float] | None = None,
    prior: str | None = None,
    preset: str = "mri_brain_3d",
    physics: str | None = None,
) -> dict:
    start = time.perf_counter()
    with PeakMemory("cpu") as memory:
        result = medldm.reconstruct(
            path,
            preset,
            slices="all",
            precision=precision,
            progress=progress,
            solver_options={**(options or {}), "n_samples": samples, "n_steps": steps},
            **({"prior": prior} if prior else {}),
            **({"physics": physics} if physics else {}),
        )
    wall = time.perf_counter() - start
    m = result.metrics
    return {
        "input": path.name,
        "preset": preset,
        "physics": physics or "preset",
        "slices": m["slices"],
        "volume_mode": bool(m["volume_mode"]),
        "n_samples": samples,
        "n_steps": steps,
        "options": dict(options or {}),
        "precision": m["precision"],
        "wall_s": round(wall, 1),
        "ldm_s": round(float(m["ldm"]["seconds"]), 1),
        "tv_s": round(float(m["baseline"]["seconds"]), 1),
        "peak_mb": round(memory.peak_mb),
        "ldm_psnr_db": round(float(m["ldm"]["psnr_db"]), 2),
        "ldm_ssim": round(float(m["ldm"]["ssim"]), 4),
        "tv_psnr_db": round(float(m["baseline"]["psnr_db"]), 2),
        "tv_ssim": round(float(m["baseline"]["ssim"]), 4),
        "prior": prior or m["prior"],
        "ldm_minus_tv": by_third(result.truth, result.reconstruction, result.baseline),
    }


def markdown(rows: list[dict], machine: str) -> str:
    preset = rows[0].get("preset", "mri_brain_3d") if rows else "mri_brain_3d"
    baseline = "3D TV" if rows and rows[0].get("volume_mode", True) else "TV per slice"
    lines = [
        f"# A whole IXI volume through {preset}",
        "",
        f"Written by `benchmarks/whole_volume.py` on {machine}. Wall = the whole "
        "`medldm.reconstruct` call (load, simulate, LDM, TV baseline, scoring); PSNR/SSIM per "
        "slice against the input, mean over slices (as the app's metrics.json). "
        "Target: <= 300 s on two cores.",
        "",
        "| input | slices | samples x steps | solver options | precision | wall s | LDM s | TV s"
        " | peak MB"
        " | LDM PSNR / SSIM | TV PSNR / SSIM |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['slices']} | {r['n_samples']} x {r['n_steps']} | "
            f"{_options_text(r.get('options'))} | {r['precision']} | {r['wall_s']} | "
            f"{r['ldm_s']} | {r['tv_s']} | {r['peak_mb']} | "
            f"{r['ldm_psnr_db']} / {r['ldm_ssim']} | {r['tv_psnr_db']} / {r['tv_ssim']} |"
        )
    lines += [
        "",
        f"LDM - {baseline}, slice by slice over the foreground extent (slices with >= 15 % "
        "foreground): mean PSNR dB [paired 95 % CI] (share of slices the LDM wins), mean SSIM "
        "difference.",
        "",
        "| input | samples x steps | solver options | slices | all | inferior | middle "
        "| superior |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gain = r["ldm_minus_tv"]
        cells = [_gain_text(gain[part]) for part in ("all", *THIRDS)]
        lines.append(
            f"| {r['input']} | {r['n_samples']} x {r['n_steps']} | "
            f"{_options_text(r.get('options'))} | {gain['all']['n']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _gain_text(part: dict) -> str:
    low, high = part["ci95"]
    share = f"({part['wins']:.0%})"
    return f"{part['mean']:+.2f} [{low:+.2f}, {high:+.2f}] {share}, {part['ssim']:+.4f}"


def _options_text(options: dict | None) -> str:
    """``key=value`` pairs of the extra solver options (``preset`` when none)."""
    return ", ".join(f"{k}={v:g}" for k, v in (options or {}).items()) or "preset"


def parse_options(items: list[str]) -> dict[str, float]:
    """``["eta=0", "dc_weight=0.01"]`` -> ``{"eta": 0.0, "dc_weight": 0.01}``.

    >>> parse_options(["eta=0"])
    {'eta': 0.0}
    """
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set takes key=value solver options, got {item!r}")
        options[key] = float(value)
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--subject",
        nargs="+",
        default=["IXI603"],
        help="IXI subjects: a test one (IXI603, IXI606, IXI632) to report, a validation one "
        "(IXI527, IXI565, IXI577) to choose settings on",
    )
    parser.add_argument("--settings", nargs="+", default=["4x50"], help="samples x steps")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--prior", default=None, help="another prior (a name or a checkpoint folder)"
    )
    parser.add_argument(
        "--set", nargs="*", default=[], help="solver options for every setting, e.g. eta=0"
    )
    parser.add_argument(
        "--preset",
        default="mri_brain_3d",
        help="the app preset: mri_brain_3d (3D k-space) or mri_brain_4x / mri_brain_8x (2D "
        "k-space per slice, multislice), or a preset YAML path",
    )
    parser.add_argument(
        "--physics", default=None, help="another operator for the preset, e.g. mri_8x"
    )
    args = parser.parse_args()
    options = parse_options(args.set)
    folder = find_data_root(required=True) / "ixi_t1"
    rows = []
    for subject in args.subject:
        (path,) = sorted(folder.glob(f"{subject}-*_T1.nii.gz"))
        for setting in args.settings:
            samples, steps = (int(v) for v in setting.lower().split("x"))
            rows.append(
                run(
                    path,
                    samples,
                    steps,
                    args.precision,
                    args.progress,
                    options,
                    args.prior,
                    args.preset,
                    args.physics,
                )
            )
            print(json.dumps(rows[-1]), flush=True)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    text = markdown(rows, machine)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        command = "python benchmarks/whole_volume.py " + " ".join(sys.argv[1:])
        record = {"command": command, "machine": machine, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
