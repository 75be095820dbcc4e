"""Where a measured sinogram's image lies: the rotation centre (:func:`estimate_centres`,
:func:`choose_centre`), the detector window around it (:func:`reconstruction_window`) and
whether that field of view suits the shipped CT prior (:func:`prior_suitability`).

The centre is found two independent ways on every row (:mod:`medldm.physics.ct_centre`:
opposite-view registration and FBP sharpness) and their mean is used (or
``rotation_centre`` when given); a disagreement of more than :data:`CENTRE_AGREEMENT_PX`
is reported as a warning. The window is centred on the axis and holds the object's shadow
plus a margin: the image is the square of that width around the axis.

Example
-------
>>> import numpy as np
>>> from medldm.io.raw_ct import ProjectionData
>>> scan = ProjectionData(np.zeros((1, 40, 30), np.float32), np.linspace(0, 180, 30), 0.5,
...                       "from the file", 1e-6, 0.0, 2, 2)
>>> estimates = {"row 0": {"opposite_views": 20.25, "fbp_sharpness": 20.75,
...                        "difference_px": 0.5}}
>>> choose_centre(estimates, None, scan)
(20.5, 'mean of both estimates over all rows', [])
>>> choose_centre(estimates, 17.0, scan)[:2]
(17.0, 'given (rotation_centre)')
>>> prior_suitability(scan, image_side=361)  # a 180 mm field of view
(True, "field of view 180 mm matches the prior's")
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from medldm.errors import InvalidInputError
from medldm.io.raw_ct import ProjectionData

#: The two centre estimates should agree to this many detector pixels.
CENTRE_AGREEMENT_PX = 1.0
#: Bins of background kept around the object's shadow in the reconstruction window.
WINDOW_MARGIN = 8
#: The reconstructed field of view (mm) of the images the shipped CT prior learned:
#: MedNIST CT slices are whole clinical head, chest and abdomen cross-sections. MedNIST
#: carries no pixel spacing, so this is the clinical range of such slices, not a
#: measured property of the training set.
CT_PRIOR_FIELD_OF_VIEW_MM = (150.0, 600.0)


def estimate_centres(scan: ProjectionData, *, sharpness: bool = True) -> dict[str, dict[str, Any]]:
    """``{"row <i>": {"opposite_views": c, "fbp_sharpness": c, ...}}`` for every row."""
    from medldm.physics.ct_centre import centre_by_sharpness, centre_from_opposite_views

    estimates: dict[str, dict[str, Any]] = {}
    for row in range(scan.n_rows):
        sinogram = scan.sinogram(row)
        started = time.perf_counter()
        opposite = centre_from_opposite_views(sinogram, scan.angles_deg)
        entry: dict[str, Any] = {
            "opposite_views": opposite.centre,
            "opposite_views_details": opposite.details,
            "opposite_views_seconds": round(time.perf_counter() - started, 3),
        }
        if sharpness:
            started = time.perf_counter()
            sharp = centre_by_sharpness(sinogram, scan.angles_deg)
            entry.update(
                {
                    "fbp_sharpness": sharp.centre,
                    "fbp_sharpness_details": sharp.details,
                    "fbp_sharpness_seconds": round(time.perf_counter() - started, 3),
                    "difference_px": abs(opposite.centre - sharp.centre),
                }
            )
        estimates[f"row {row}"] = entry
    return estimates


def mean_centre(estimates: dict[str, dict[str, Any]]) -> float:
    values = [
        entry[key]
        for entry in estimates.values()
        for key in ("opposite_views", "fbp_sharpness")
        if key in entry
    ]
    return float(np.mean(values))


def choose_centre(
    estimates: dict[str, dict[str, Any]], rotation_centre: float | None, scan: ProjectionData
) -> tuple[float, str, list[str]]:
    """``(centre, where it came from, warnings)``: ``rotation_centre`` when given (checked
    to lie on the detector), else the mean of both estimates over all rows."""
    if rotation_centre is not None:
        centre = float(rotation_centre)
        if not 0 <= centre < scan.n_detectors:
            raise InvalidInputError(
                f"rotation_centre {centre} lies outside the detector (0..{scan.n_detectors - 1})",
                path=scan.path,
            )
        return centre, "given (rotation_centre)", []
    notes = []
    worst = max(entry["difference_px"] for entry in estimates.values())
    if worst > CENTRE_AGREEMENT_PX:
        notes.append(
            f"warning: the two centre estimates differ by up to {worst:.2f} pixels "
            f"(more than {CENTRE_AGREEMENT_PX:g}); check the reconstruction, or give "
            "rotation_centre"
        )
    return mean_centre(estimates), "mean of both estimates over all rows", notes


def reconstruction_window(
    scan: ProjectionData, centre: float, margin: int = WINDOW_MARGIN
) -> tuple[np.ndarray, int, float, dict[str, Any]]:
    """``(window sinograms (n_rows, side, n_views), first bin, centre_offset, info)``.

    The window is centred on the axis and reaches the farthest bin of the object's shadow
    (any row) plus ``margin``; what is cut away is reported (``outside_max``: the largest
    line integral outside, against ``inside_max``)."""
    from medldm.physics.ct_centre import axis_centred_window, object_support

    supports = [object_support(scan.sinogram(row)) for row in range(scan.n_rows)]
    low = min(s[0] for s in supports)
    high = max(s[1] for s in supports)
    radius = math.ceil(max(centre - low, high - centre)) + margin
    window, offset = axis_centred_window(scan.sinograms, centre, radius)
    start = round(centre) - radius
    inside = np.zeros(scan.n_detectors, bool)
    inside[max(0, start) : max(0, start + 2 * radius + 1)] = True
    outside_max = float(scan.sinograms[:, ~inside].max()) if (~inside).any() else 0.0
    info = {
        "object_shadow_bins": [low, high],
        "window_bins": [start, start + 2 * radius],
        "image_side": 2 * radius + 1,
        "outside_max_line_integral": outside_max,
        "inside_max_line_integral": float(window.max()),
        "zero_padded": bool(start < 0 or start + 2 * radius >= scan.n_detectors),
    }
    return window, start, offset, info


def window_at_middle(scan: ProjectionData, radius: int) -> tuple[np.ndarray, int, float]:
    """The window of the same size centred on the detector's middle bin."""
    from medldm.physics.ct_centre import axis_centred_window

    window, offset = axis_centred_window(scan.sinograms, scan.n_detectors // 2, radius)
    return window, scan.n_detectors // 2 - radius, offset


def prior_suitability(scan: ProjectionData, image_side: int) -> tuple[bool, str]:
    """Whether the shipped CT prior (``ct_2d``) suits this field of view, and why (not)."""
    low, high = CT_PRIOR_FIELD_OF_VIEW_MM
    learned = (
        "ct_2d learned whole clinical head, chest and abdomen CT slices (MedNIST, 64x64 "
        f"pixels, a field of view of roughly {low:g}-{high:g} mm)"
    )
    if scan.pixel_size_mm is None:
        return False, (
            f"not run: {learned}; this file gives no pixel size, so its field of view "
            f"({image_side} detector pixels) cannot be matched to the prior's"
            + (
                f", and a {scan.metadata['sample']!r} scan is not such a slice"
                if scan.metadata.get("sample")
                else ""
            )
        )
    field_of_view = image_side * scan.pixel_size_mm
    if not low <= field_of_view <= high:
        return False, (
            f"not run: {learned}; this scan's field of view is {field_of_view:.3g} mm, "
            "outside that range, so the prior's anatomy and scale do not apply"
        )
    return True, f"field of view {field_of_view:.3g} mm matches the prior's"
