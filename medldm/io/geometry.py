"""Geometry helpers: DICOM (LPS) <-> NIfTI (RAS+) affines, orientation cosines.

DICOM patient coordinates are LPS+ (x to the patient's left, y to posterior, z to head);
medldm affines are RAS+ like nibabel's. The two differ by a sign flip of x and y.

Example
-------
>>> import numpy as np
>>> aff = dicom_affine([1, 0, 0, 0, 1, 0], [0.5, 0.8], [10.0, 20.0, 30.0], [0, 0, 2.0])
>>> aff[:3, 3].tolist()
[-10.0, -20.0, 30.0]
>>> np.round(np.diag(aff), 3).tolist()
[-0.8, -0.5, 2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Flips x and y: multiply an LPS affine (or point) by this to get RAS, and back.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def dicom_affine(
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    first_position: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """RAS+ affine of a DICOM volume stored as ``array[column, row, slice]``.

    Parameters
    ----------
    orientation:
        ImageOrientationPatient: row direction cosine (along a row, i.e. increasing column
        index) then column direction cosine (increasing row index), LPS.
    pixel_spacing:
        PixelSpacing ``[between rows, between columns]`` in mm.
    first_position:
        ImagePositionPatient of the first slice (centre of its first pixel), LPS mm.
    slice_step:
        Vector from one slice's position to the next, LPS mm (``[0, 0, 0]`` for one slice:
        the slice normal times the slice thickness is then the caller's choice).
    """
    orientation = np.asarray(orientation, dtype=np.float64)
    row_cos, col_cos = orientation[:3], orientation[3:]
    row_spacing, col_spacing = (float(v) for v in pixel_spacing)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * col_spacing
    lps[:3, 1] = col_cos * row_spacing
    lps[:3, 2] = np.asarray(slice_step, dtype=np.float64)
    lps[:3, 3] = np.asarray(first_position, dtype=np.float64)
    return LPS_TO_RAS @ lps


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (LPS) of the image plane: row cosine x column cosine."""
    orientation = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def affine_to_dicom(affine: np.ndarray) -> dict[str, list[float]]:
    """Inverse of :func:`dicom_affine`: DICOM geometry of slice 0 of an ``array[x, y, z]``.

    Returns ``ImageOrientationPatient``, ``PixelSpacing``, ``ImagePositionPatient`` (of
    slice 0) and ``SliceStep`` (LPS vector between slices), all in LPS millimetres.
    """
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=np.float64)
    col_spacing = float(np.linalg.norm(lps[:3, 0]))
    row_spacing = float(np.linalg.norm(lps[:3, 1]))
    row_cos = lps[:3, 0] / col_spacing
    col_cos = lps[:3, 1] / row_spacing
    return {
        "ImageOrientationPatient": [*row_cos.tolist(), *col_cos.tolist()],
        "PixelSpacing": [row_spacing, col_spacing],
        "ImagePositionPatient": lps[:3, 3].tolist(),
        "SliceStep": lps[:3, 2].tolist(),
    }
