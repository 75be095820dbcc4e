"""Example inputs that ship with installed packages (no download), written once to a cache.

* ``brain_native_t1``: an axial T1-weighted brain MRI at the scanner's resolution (256 x 256 x
  48 at 0.91 x 0.91 x 3 mm), the test patient of the ``brain_mri_native`` data card, shipped
  in ``medldm/recon/example_data/`` with its licence (CC BY, Lesjak et al. 2016; see the
  README there and data_cards/).
* ``mni152_t1_2mm``: the MNI152 2009 T1 template shipped by nilearn, resampled by nilearn
  to 2 mm (99 x 117 x 95), as NIfTI. Copyright (C) 1993-2009 Louis Collins, McConnell Brain
  Imaging Centre, Montreal Neurological Institute, McGill University (see data_cards/).
* ``pydicom_ct_small``: pydicom's ``CT_small.dcm`` test file (one 128 x 128 CT slice).
* ``skimage_cells``: scikit-image's ``cell.png`` (``skimage.data.cell()``), a 2D
  microscopy image, written as TIFF.

The cache folder is ``$MEDLDM_CACHE_DIR`` (default ``~/.cache/medldm``)/examples.

Example
-------
>>> path = example_input("pydicom_ct_small")
>>> path.name
'CT_small.dcm'
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medldm.errors import InvalidInputError

EXAMPLES = ("brain_native_t1", "mni152_t1_2mm", "pydicom_ct_small", "skimage_cells")
#: Examples that are files of this package (read in place, never written).
PACKAGED = {"brain_native_t1": Path(__file__).parent / "example_data" / "brain_native_t1.nii.gz"}


def cache_dir() -> Path:
    """``$MEDLDM_CACHE_DIR`` or ``~/.cache/medldm``."""
    return Path(os.environ.get("MEDLDM_CACHE_DIR") or Path.home() / ".cache" / "medldm")


def example_input(name: str) -> Path:
    """Path of the example input ``name`` (written to the cache on first use)."""
    if name in PACKAGED:
        return PACKAGED[name]
    if name == "pydicom_ct_small":
        from pydicom.data import get_testdata_file

        return Path(get_testdata_file("CT_small.dcm"))
    folder = cache_dir() / "examples"
    if name == "mni152_t1_2mm":
        path = folder / "mni152_t1_2mm.nii.gz"
        if not path.exists():
            import nibabel as nib
            from nilearn.datasets import load_mni152_template

            from medldm.utils.files import atomic_output

            image = load_mni152_template(resolution=2)
            data = np.asarray(image.get_fdata(), np.float32)
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, overwrite=True) as temporary:
                nib.save(nib.Nifti1Image(data, image.affine), str(temporary))
        return path
    if name == "skimage_cells":
        path = folder / "skimage_cell.tif"
        if not path.exists():
            import tifffile
            from skimage.data import cell

            from medldm.utils.files import atomic_output

            folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, overwrite=True) as temporary:
                tifffile.imwrite(str(temporary), np.asarray(cell(), np.uint8))
        return path
    raise InvalidInputError(f"unknown example input {name!r}", fix=f"use one of {EXAMPLES}")
