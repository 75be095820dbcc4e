"""Where in k-space whole-head reconstructions miss: radial error spectra by third.

Each IXI volume goes through an app preset, every axial slice (``medldm.reconstruct``,
``slices="all"``, as ``benchmarks/whole_volume.py`` runs it). Over the slices of the
foreground extent (>= 15 % foreground, split into inferior, middle and superior thirds),
the script averages, in rings of spatial frequency ``|k|`` (cycles per pixel, 0 to the
corner's 0.71), the in-plane power spectrum of the truth and of the errors of the LDM and of
the preset's classical baseline (orthonormal 2D FFT per slice: a ring's value is the mean
``|F|^2`` of its frequencies). Rings where the LDM error sits well below the baseline's are
where the prior fills in what the measurement lacks; rings where both errors sit together
are where it adds nothing.

Run::

    .venv/bin/python benchmarks/error_spectrum.py --subject IXI603 IXI606 IXI632 \\
        --preset mri_brain_4x --json benchmarks/results/whole_volume/error_spectrum_4x.json \\
        --figure benchmarks/results/whole_volume/error_spectrum_4x.png

Choose settings on the validation subjects (IXI527, IXI565, IXI577), report the test ones.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch

import medldm
from medldm.data.root import find_data_root

sys.path.insert(0, str(Path(__file__).resolve().parent))
from whole_volume import THIRDS, foreground_extent

#: Ring edges in cycles per pixel: 14 rings from the centre to the corner of k-space.
EDGES = np.linspace(0.0, 0.71, 15)
CURVES = ("truth", "ldm_error", "baseline_error")


def rings(shape: tuple[int, int], edges: np.ndarray = EDGES) -> list[np.ndarray]:
    """Boolean masks of the FFT frequencies of a ``shape`` image in each ring of ``|k|``."""
    ky, kx = np.meshgrid(np.fft.fftfreq(shape[0]), np.fft.fftfreq(shape[1]), indexing="ij")
    radius = np.hypot(ky, kx)
    return [(radius >= low) & (radius < high) for low, high in itertools.pairwise(edges)]


def radial_power(stack: np.ndarray, edges: np.ndarray = EDGES) -> np.ndarray:
    """Mean ``|FFT|^2`` (orthonormal, per slice) in each ring of ``|k|``, averaged over the
    slices of an ``(S, rows, cols)`` stack: one value per ring (``len(edges) - 1``).

    >>> ones = np.ones((2, 8, 8))
    >>> power = radial_power(ones, np.array([0.0, 0.01, 0.71]))
    >>> power.round(3).tolist()  # a constant image: all its power at k = 0
    [64.0, 0.0]
    """
    power = (np.abs(np.fft.fft2(stack, norm="ortho")) ** 2).mean(axis=0)
    masks = rings(stack.shape[1:], edges)
    return np.array([power[ring].mean() if ring.any() else np.nan for ring in masks])


def spectra_by_third(truth: np.ndarray, ldm: np.ndarray, baseline: np.ndarray) -> dict:
    """``{third: {curve: ring powers}}`` over the foreground extent of one volume (linear
    power; ``CURVES``: the truth, the LDM error, the baseline error)."""
    keep = foreground_extent(truth)
    result = {}
    for name, part in zip(THIRDS, np.array_split(keep, 3), strict=True):
        result[name] = {
            "slices": int(part.size),
            "frequencies": [int(ring.sum()) for ring in rings(truth.shape[1:])],
            "truth": radial_power(truth[part]),
            "ldm_error": radial_power(ldm[part] - truth[part]),
            "baseline_error": radial_power(baseline[part] - truth[part]),
        }
    return result


def average(volumes: list[dict]) -> dict:
    """Slice-weighted mean of :func:`spectra_by_third` over volumes, per third, in dB."""
    result = {}
    for name in THIRDS:
        weights = np.array([v[name]["slices"] for v in volumes], float)
        frequencies = volumes[0][name]["frequencies"]
        if any(v[name]["frequencies"] != frequencies for v in volumes):
            raise SystemExit("the volumes' slices differ in shape: give one in-plane size")
        result[name] = {"slices": int(weights.sum()), "frequencies": frequencies}
        for curve in CURVES:
            linear = np.average([v[name][curve] for v in volumes], axis=0, weights=weights)
            result[name][curve] = np.round(10 * np.log10(np.maximum(linear, 1e-30)), 2).tolist()
    return result


def error_share_inner(result: dict, n_rings: int) -> dict:
    """Share of each third's LDM and baseline error energy in the ``n_rings`` innermost
    rings (each ring's mean power times its number of frequencies)."""
    shares = {}
    for name in THIRDS:
        counts = np.array(result[name]["frequencies"], float)
        shares[name] = {}
        for curve in ("ldm_error", "baseline_error"):
            energy = counts * 10 ** (np.array(result[name][curve]) / 10)
            shares[name][curve] = round(float(energy[:n_rings].sum() / energy.sum()), 3)
    return shares


def markdown(result: dict, shares: dict, preset: str, subjects: list[str], machine: str) -> str:
    lines = [
        f"# Radial error spectra by third: {preset}, {', '.join(subjects)}",
        "",
        f"Written by `benchmarks/error_spectrum.py` on {machine}. Power in dB (orthonormal "
        "2D FFT per slice, mean over a ring's frequencies and the third's slices).",
        "",
    ]
    header = "| |k| (cycles/pixel) | " + " | ".join(
        f"{t}: truth | LDM error | baseline error" for t in THIRDS
    )
    lines += [header + " |", "|---" * (1 + 3 * len(THIRDS)) + "|"]
    for i, (low, high) in enumerate(itertools.pairwise(EDGES)):
        cells = [f"{result[t][c][i]:.1f}" for t in THIRDS for c in CURVES]
        lines.append(f"| {low:.2f}-{high:.2f} | " + " | ".join(cells) + " |")
    lines += ["", f"Share of the error energy below |k| = {EDGES[3]:.3f} (LDM / baseline):", ""]
    for name in THIRDS:
        share = shares[name]
        lines.append(f"- {name}: {share['ldm_error']:.0%} / {share['baseline_error']:.0%}")
    return "\n".join(lines) + "\n"


def figure(result: dict, path: Path, title: str) -> None:
    """One panel per third (the truth's spectrum and the two errors against ``|k|``), and a
    last one with the baseline's error minus the LDM's per ring (dB), all thirds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = (EDGES[:-1] + EDGES[1:]) / 2
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    styles = {"truth": ("k", "truth"), "ldm_error": ("C0", "LDM error"),
              "baseline_error": ("C3", "baseline error")}  # fmt: skip
    for axis, name in zip(axes[:3], THIRDS, strict=True):
        for curve, (colour, label) in styles.items():
            axis.plot(centres, result[name][curve], color=colour, marker="o", ms=3, label=label)
        axis.set_title(f"{name} third ({result[name]['slices']} slices)")
        axis.set_ylabel("power (dB)")
    axes[0].legend()
    for name, colour in zip(THIRDS, ("C2", "C1", "C4"), strict=True):
        gain = np.subtract(result[name]["baseline_error"], result[name]["ldm_error"])
        axes[3].plot(centres, gain, color=colour, marker="o", ms=3, label=name)
    axes[3].axhline(0.0, color="grey", lw=0.8)
    axes[3].set_title("baseline error - LDM error")
    axes[3].set_ylabel("dB")
    axes[3].legend()
    for axis in axes:
        axis.set_xlabel("|k| (cycles per pixel)")
        axis.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subject", nargs="+", default=["IXI603"])
    parser.add_argument("--preset", default="mri_brain_4x", help="an app preset or YAML path")
    parser.add_argument("--physics", default=None, help="another operator for the preset")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None)
    args = parser.parse_args()
    folder = find_data_root(required=True) / "ixi_t1"
    volumes = []
    for subject in args.subject:
        (path,) = sorted(folder.glob(f"{subject}-*_T1.nii.gz"))
        extra = {"physics": args.physics} if args.physics else {}
        result = medldm.reconstruct(path, args.preset, slices="all", **extra)
        volumes.append(spectra_by_third(result.truth, result.reconstruction, result.baseline))
        print(f"{subject}: done", flush=True)
    result = average(volumes)
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    shares = error_share_inner(result, 3)
    text = markdown(result, shares, args.preset, args.subject, machine)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "python benchmarks/error_spectrum.py " + " ".join(sys.argv[1:]),
            "machine": machine,
            "edges": EDGES.round(4).tolist(),
            "by_third": result,
            "error_share_inner_3_rings": shares,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    if args.figure:
        figure(result, args.figure, f"{args.preset}: {', '.join(args.subject)}")
    print(text)


if __name__ == "__main__":
    main()
