"""Time loading DICOM with medldm, dcm2niix and MONAI's LoadImage, side by side.

Cases (from the data root's ``dicom_qa`` folder):

* ``philips_ct_head``: a 28-slice 512x512 CT series (one file per slice);
* ``canon_mr_enhanced``: eleven enhanced multi-frame MR objects (80x80x40x13 each).
  They are stored gzipped; dcm2niix and MONAI cannot read ``.dcm.gz``, so all three
  tools read the same decompressed copies, and medldm's time on the ``.gz`` files is
  reported beside them.

What each tool does in the timed region: medldm reads the series into a ``MedImage``
(pixels in physical units, affine); dcm2niix converts it to an uncompressed NIfTI in a
temporary folder (its only mode; the time includes starting the process and writing the
file); MONAI's ``LoadImage(reader="PydicomReader")`` reads it into a ``MetaTensor``.

Run::

    .venv/bin/python benchmarks/io_speed.py [--repeats 5]

The median of the repeats is reported per tool, with its ratio to medldm (> 1 means
slower than medldm).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from medldm.data.root import find_data_root
from medldm.io import read_dicom


def _time(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up: imports, plugin discovery, file cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _dcm2niix_binary() -> str:
    found = shutil.which("dcm2niix") or str(Path(sys.prefix) / "bin" / "dcm2niix")
    if not Path(found).exists():
        raise SystemExit("dcm2niix not found: pip install dcm2niix (a dev extra)")
    return found


def _dcm2niix(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [_dcm2niix_binary(), "-z", "n", "-b", "n", "-f", "%s_%p", "-o", out, str(folder)],
            check=True,
            capture_output=True,
        )


def _monai(folder: Path) -> None:
    from monai.transforms import LoadImage

    LoadImage(reader="PydicomReader", image_only=True)(str(folder))


def _medldm_folder(folder: Path) -> None:
    read_dicom(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    root = find_data_root() / "dicom_qa"

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        ct = root / "philips_ct_head"
        ct_files = [p for p in ct.iterdir() if p.name.startswith("I")]
        ct_copy = Path(scratch) / "ct"  # the DICOM files only (the folder holds a DIRFILE)
        ct_copy.mkdir()
        for path in ct_files:
            shutil.copy(path, ct_copy / path.name)
        rows.append(
            (
                "philips_ct_head (28 x 512x512)",
                _time(lambda: _medldm_folder(ct_copy), args.repeats),
                _time(lambda: _dcm2niix(ct_copy), args.repeats),
                _time(lambda: _monai(ct_copy), args.repeats),
                None,
            )
        )

        packed = sorted((root / "canon_mr_enhanced").glob("*.dcm.gz"))
        folders = []
        for path in packed:
            folder = Path(scratch) / path.name.removesuffix(".dcm.gz")
            folder.mkdir()
            (folder / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(path.read_bytes()))
            folders.append(folder)

        def each(function: Callable[[Path], None], items: list[Path]) -> Callable[[], None]:
            return lambda: [function(item) for item in items]

        rows.append(
            (
                f"canon_mr_enhanced ({len(folders)} x 80x80x40x13 multi-frame)",
                _time(each(_medldm_folder, folders), args.repeats),
                _time(each(_dcm2niix, folders), args.repeats),
                _time(each(_monai, folders), args.repeats),
                _time(each(lambda p: read_dicom(p), packed), args.repeats),
            )
        )

    print(f"median of {args.repeats} runs, seconds (ratio to medldm; > 1 = slower than medldm)")
    header = f"{'case':52s} {'medldm':>8s} {'dcm2niix':>16s} {'MONAI LoadImage':>18s}"
    print(f"{header} {'medldm .gz':>11s}")
    for name, ours, d2n, monai, gz in rows:
        gz_text = "" if gz is None else f"{gz:.3f}"
        print(
            f"{name:52s} {ours:8.3f} {d2n:8.3f} ({d2n / ours:4.2f}x) "
            f"{monai:9.3f} ({monai / ours:4.2f}x) {gz_text:>11s}"
        )


if __name__ == "__main__":
    main()
