"""The I/O pipeline end to end on real data that ships with the installed packages.

1. A CT slice from pydicom's test data (``CT_small.dcm``): read, print the geometry,
   write NIfTI and a DICOM derived series (with provenance), read both back and compare.
2. The MNI152 2009a T1 template shipped by nilearn (NIfTI, 2 mm): the same, as an MR
   volume.

Run it with ``medldm-io-demo --output-dir demo_output`` (``make demo`` does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from medldm.errors import MedLDMError
from medldm.io import MedImage, load, write_dicom_series, write_nifti, write_provenance


def _mni152_t1_path() -> Path:
    import nilearn

    path = Path(nilearn.__file__).parent / "datasets" / "data"
    return path / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _compare(name: str, original: MedImage, copy: MedImage) -> str:
    affine_error = float(np.abs(original.affine - copy.affine).max())
    value_error = float(np.abs(original.array.astype(np.float64) - copy.array).max())
    return (
        f"  read back {name}: affine max diff {affine_error:.2e} mm, "
        f"value max diff {value_error:.3g}"
    )


def run_case(label: str, source: Path, out: Path, modality: str | None = None) -> list[Path]:
    """Read ``source``, print its geometry, write NIfTI + DICOM + provenance into ``out``."""
    print(f"\n== {label}\n  input: {source}")
    image = load(source) if modality is None else load(source, modality=modality)
    print("  " + image.summary().replace("\n", "\n  "))
    out.mkdir(parents=True, exist_ok=True)
    nifti_path = write_nifti(image, out / "image.nii.gz", overwrite=True)
    dicom_files = write_dicom_series(
        image,
        out / "dicom",
        source=image,
        same_study=False,
        overwrite=True,
        series_description=f"medldm demo: {label}",
    )
    write_provenance(nifti_path, inputs=[source], config={"demo": label}, overwrite=True)
    write_provenance(out / "dicom", inputs=[source], config={"demo": label}, overwrite=True)
    print(_compare("NIfTI", image, load(nifti_path)))
    print(_compare("DICOM", image, load(out / "dicom")))
    print(f"  wrote {nifti_path}")
    print(f"  wrote {len(dicom_files)} DICOM files in {out / 'dicom'}")
    return [nifti_path, *dicom_files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)
    from pydicom.data import get_testdata_file

    out = args.output_dir / "io"
    try:
        run_case(
            "CT slice (pydicom CT_small.dcm)",
            Path(get_testdata_file("CT_small.dcm")),
            out / "ct_small",
        )
        run_case(
            "MNI152 2009a T1 template (nilearn)",
            _mni152_t1_path(),
            out / "mni152_t1",
            modality="MR",
        )
    except MedLDMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"\nAll outputs are in {out.resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
