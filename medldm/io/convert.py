"""MedImage <-> MONAI ``MetaTensor`` and nibabel images, for pipelines mixing the three.

A MetaTensor carries the array (spatial axes first, as in MedImage, no channel axis
added) and the affine in ``meta["affine"]``; medldm's modality, unit and axes travel in
``meta["medldm"]``. A nibabel ``Nifti1Image`` keeps array and affine (RAS+ mm).

Example
-------
>>> import numpy as np
>>> from medldm.io import MedImage
>>> image = MedImage(np.zeros((4, 5, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0]),
...                  modality="MR", unit="arbitrary MR units")
>>> tensor = to_metatensor(image)
>>> tuple(tensor.shape), float(tensor.affine[2, 2])
((4, 5, 6), 3.0)
>>> from_metatensor(tensor).modality, to_nibabel(image).shape
('MR', (4, 5, 6))
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medldm.io.image import MedImage


def to_metatensor(image: MedImage) -> Any:
    """A MONAI ``MetaTensor`` with the image's array and affine."""
    from monai.data import MetaTensor

    meta = {
        "affine": torch.as_tensor(image.affine, dtype=torch.float64),
        "medldm": {"modality": image.modality, "unit": image.unit, "axes": list(image.axes)},
    }
    return MetaTensor(torch.as_tensor(np.ascontiguousarray(image.array)), meta=meta)


def from_metatensor(tensor: Any, **fields: Any) -> MedImage:
    """A MedImage from a MetaTensor (its ``affine``; medldm fields if it has them)."""
    extra = dict(getattr(tensor, "meta", {}).get("medldm", {}))
    affine = np.asarray(tensor.affine.detach().cpu().numpy(), np.float64)
    array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    axes = tuple(extra.get("axes", ())) or ()
    return MedImage(
        array,
        affine,
        axes=fields.pop("axes", axes),
        modality=fields.pop("modality", extra.get("modality", "OT")),
        unit=fields.pop("unit", extra.get("unit", "unknown")),
        **fields,
    )


def to_nibabel(image: MedImage) -> Any:
    """A ``nibabel.Nifti1Image`` (array and affine)."""
    import nibabel as nib

    return nib.Nifti1Image(np.asarray(image.array), image.affine)


def from_nibabel(nifti: Any, modality: str = "OT", unit: str = "unknown") -> MedImage:
    """A MedImage from any nibabel spatial image (data scaled as nibabel reads it)."""
    array = np.asarray(nifti.get_fdata(dtype=np.float32))
    axes = ("x", "y", "z", "t")[: array.ndim] if array.ndim <= 4 else ()
    return MedImage(
        array, np.asarray(nifti.affine, np.float64), axes=axes, modality=modality, unit=unit
    )
