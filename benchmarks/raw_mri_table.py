"""The "Measured raw MRI data" table of the user guide (``docs/user_guide/
measured_raw_data.md``) from ``medldm-recon kspace=`` run folders.

Run the commands of that page first (each writes a run folder with its ``metrics.json``),
then::

    .venv/bin/python benchmarks/raw_mri_table.py out/brain out/phantom4_acs ...

prints one Markdown row per method and run: PSNR / SSIM against the reference where the
run has one, the relative data residual ``||A x - y|| / ||y||``, the k-space hold-out
error (mean ± std over its splits, where the run made them) and the seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def rows(folder: Path) -> list[str]:
    metrics = json.loads((folder / "metrics.json").read_text())
    methods = [(f"LDM ({metrics['solver']})", metrics["ldm"])]
    methods += [(name, values) for name, values in metrics.get("classical", {}).items()]
    methods.append(("zero-filled (RSS)", metrics.get("direct", {})))
    out = []
    for name, values in methods:
        psnr = f"{values['psnr_db']:.2f}" if "psnr_db" in values else "-"
        ssim = f"{values['ssim']:.4f}" if "ssim" in values else "-"
        residual = f"{values['residual']:.4f}" if values.get("residual") is not None else "-"
        held = "-"
        if values.get("holdout_error") is not None:
            held = f"{values['holdout_error']:.4f} ± {values['holdout_error_std']:.4f}"
        seconds = f"{values['seconds']:.1f}" if values.get("seconds") is not None else "-"
        out.append(
            f"| {folder.name} | {name} | {psnr} | {ssim} | {residual} | {held} | {seconds} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="medldm-recon run folders")
    args = parser.parse_args()
    print("| run | method | PSNR (dB) | SSIM | residual | hold-out error | seconds |")
    print("|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print("\n".join(rows(folder)))
    for folder in args.folders:
        metrics = json.loads((folder / "metrics.json").read_text())
        print(
            f"\n{folder.name}: {metrics['physics']}; mask: {metrics['sampling_mask']}; "
            f"coil maps: {metrics['coil_maps']}; total {metrics['total_seconds']:.0f} s "
            f"on {metrics['device']}"
        )


if __name__ == "__main__":
    main()
