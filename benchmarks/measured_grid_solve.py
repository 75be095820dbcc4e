"""Which final solve on the measured grid, when the prior's grid is coarser? On VALIDATION
slices at the scanner's resolution, simulated as raw k-space.

A 1 mm acquisition reconstructed with a 2 mm prior: the LDM runs on the prior's grid (its
data term is the measured k-space, seen through Fourier resampling), and its estimate,
Fourier-resampled to the measured grid, misfits what the 1 mm k-space holds beyond the
2 mm band. ``medldm.recon.measured`` then anchors a final solve there (``grid_solve=``):
``none`` (the resampled estimate as it is), ``least_squares`` (CG on
``||A x - y||^2 + lam ||x - anchor||^2``) or ``tv`` (the same plus the preset's final TV).
This script scores the three against the fully sampled truth, with TV, CG-SENSE and
l1-wavelet beside them, on ``--slices`` foreground slices spread over every series of the
``brain_mri_native`` validation patient (never the test patient): 8-coil birdcage k-space
with noise (``kspace_holdout_ranking.coil_kspace``), fastMRI random lines at 4x and 8x.

Run::

    .venv/bin/python benchmarks/measured_grid_solve.py --slices 4 \\
        --out benchmarks/results/measured_grid_solve
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kspace_holdout_ranking import coil_kspace

from medldm.recon.measured import GRID_SOLVES, reconstruct_kspace
from medldm.train.data import native_brain_slices


def spread(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)``."""
    return np.linspace(0, n_total - 1, n).round().astype(int).tolist()


def run_slice(path: Path, acceleration: float, seed: int) -> dict[str, dict[str, float]]:
    """PSNR / SSIM / residual of every grid solve and of the classical solvers."""
    rows = {}
    for solve in GRID_SOLVES:
        first = solve == GRID_SOLVES[0]
        result = reconstruct_kspace(
            path,
            "mri_brain_4x",
            acceleration=acceleration,
            seed=seed,
            holdout_splits=0,
            grid_solve=solve,
            baseline=first,  # the classical solvers once
        )
        m = result.metrics
        rows[f"ldm/{solve}"] = _row(m["ldm"])
        if first:
            rows.update({name: _row(values) for name, values in m["classical"].items()})
    return rows


def _row(values: dict) -> dict[str, float]:
    return {key: float(values[key]) for key in ("psnr_db", "ssim", "residual")}


def write_summary(args, names: list[str], picked: list[int], results: dict) -> None:
    summary = {
        "what": f"brain_mri_native validation patient, {len(picked)} slices spread over its "
        f"series ({', '.join(names[i] + f' #{i}' for i in picked)}), native matrix; 8-coil "
        f"birdcage k-space, noise {args.noise} x RMS, fastMRI random lines; read as .npy "
        "(1 mm assumed), prior brain_t1_2d on its 2 mm grid (mri_brain_4x preset)",
        "means": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "validation.json").write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--accelerations", nargs="+", type=float, default=[4, 8])
    parser.add_argument("--noise", type=float, default=0.02, help="noise / k-space RMS")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/measured_grid_solve"))
    args = parser.parse_args()
    slices, names = native_brain_slices("validation")
    picked = spread(len(slices), args.slices)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        for acceleration in args.accelerations:
            per_method: dict[str, list[dict[str, float]]] = {}
            for index in picked:
                path = Path(folder) / f"slice{index:03d}.npy"
                np.save(path, coil_kspace(slices[index], 8, args.noise, seed=index))
                rows = run_slice(path, acceleration, seed=index)
                for name, row in rows.items():
                    per_method.setdefault(name, []).append(row)
                print(
                    f"{acceleration:g}x {names[index]} #{index}: "
                    + ", ".join(f"{n} {r['psnr_db']:.2f}" for n, r in rows.items()),
                    flush=True,
                )
            results[f"{acceleration:g}x"] = {
                name: {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
                for name, rows in per_method.items()
            }
            write_summary(args, names, picked, results)  # after each acceleration
    for acceleration, table in results.items():
        print(f"\n{acceleration} (mean over {len(picked)} validation slices)")
        for name, row in table.items():
            print(
                f"  {name:<20} PSNR {row['psnr_db']:6.2f}  SSIM {row['ssim']:.4f}  "
                f"residual {row['residual']:.4f}"
            )


if __name__ == "__main__":
    main()
