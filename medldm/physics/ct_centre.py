"""Finding the rotation centre of a parallel-beam scan, two independent ways.

Real tomography data is rarely centred: the rotation axis projects onto detector position
``c`` (0-based, pixel centres at integers), not onto the middle bin, and an FBP that
assumes the middle smears every edge into arcs. Two estimates of ``c`` that rest on
different facts about the data:

1. :func:`centre_from_opposite_views` (projection symmetry). A parallel-beam view at
   ``theta + 180`` degrees is the view at ``theta`` mirrored about ``c``:
   ``p(theta + 180, c + u) = p(theta, c - u)``. Registering the first view with the
   mirrored last view (sub-pixel, :func:`register_profiles`) gives ``2c - (n - 1)`` up
   to the object's motion over the angular gap between them (``theta_0 + 180 - theta_last``,
   one step for views spread evenly over ``[0, 180)``), which is removed by extrapolating
   the shift measured between neighbouring views (first order). Done at both ends of the
   scan (first view vs mirrored last, last vs mirrored first) and averaged.
2. :func:`centre_by_sharpness` (image sharpness). FBP images for candidate centres; a wrong
   centre doubles edges into arcs and raises the image's total variation (``sum |grad|``),
   so the estimate is the candidate with the least TV: a coarse search on a 2x-binned
   detector, then a fine search at full resolution, refined to sub-pixel by a parabola
   through the three best candidates. Candidate centres are applied by shifting the
   sinogram (Fourier interpolation) so that one FBP geometry serves every candidate.

Neither uses the other. The reconstruction itself then runs with the chosen centre as
:class:`~medldm.physics.ct.ParallelBeamCT`'s exact ``centre_offset`` (see
:func:`axis_centred_window`), not with a shifted sinogram.

Conventions: sinograms are ``(n_detectors, n_views)`` (one column per view, as
:class:`~medldm.physics.ct.ParallelBeamCT`); angles in degrees.

Example
-------
>>> import numpy as np, torch
>>> from medldm.physics.ct import ParallelBeamCT, sparse_view_angles
>>> angles = sparse_view_angles(90)
>>> x = torch.zeros(1, 1, 48, 48, dtype=torch.float64)
>>> x[..., 14:24, 20:34] = 1.0; x[..., 28:36, 12:20] = 2.0
>>> true_offset = -5.3  # the axis sits 5.3 bins left of bin 64 // 2
>>> sino = ParallelBeamCT(48, angles, n_detectors=64, centre_offset=true_offset).A(x)
>>> sino = sino[0, 0].numpy()
>>> a = centre_from_opposite_views(sino, angles)
>>> b = centre_by_sharpness(sino, angles)
>>> round(a.offset, 1), round(b.offset, 1)
(-5.3, -5.3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError


@dataclass(frozen=True)
class CentreEstimate:
    """A rotation-centre estimate.

    Attributes
    ----------
    centre:
        Detector position of the rotation axis, in bins (0-based, pixel centres at integers).
    n_detectors:
        Detector bins of the sinogram it was found on.
    method:
        How it was found.
    details:
        The method's intermediate values (per-end estimates, the criterion's curve, ...).
    """

    centre: float
    n_detectors: int
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def offset(self) -> float:
        """``centre - n_detectors // 2``: :class:`~medldm.physics.ct.ParallelBeamCT`'s
        ``centre_offset`` for the whole detector."""
        return self.centre - self.n_detectors // 2


def _check_sinogram(sinogram: Any, angles_deg: Any) -> tuple[np.ndarray, np.ndarray]:
    sinogram = np.asarray(sinogram, dtype=np.float64)
    angles = np.asarray(angles_deg, dtype=np.float64).ravel()
    if sinogram.ndim != 2 or sinogram.shape[1] != angles.size or sinogram.shape[0] < 8:
        raise InvalidInputError(
            f"sinogram of shape {sinogram.shape} with {angles.size} angles; expected "
            "(n_detectors >= 8, n_views) with one angle per view"
        )
    if not (np.all(np.isfinite(sinogram)) and np.all(np.isfinite(angles))):
        raise InvalidInputError("the sinogram or its angles contain NaN/Inf")
    return sinogram, angles


def fourier_shift(profiles: np.ndarray, shift: float, axis: int = 0) -> np.ndarray:
    """``profiles`` moved by ``shift`` bins along ``axis`` (``out[j] = in[j - shift]``),
    band-limited (Fourier) interpolation; the ends are extended with their edge values
    first, so nothing wraps around from the other side."""
    profiles = np.moveaxis(np.asarray(profiles, dtype=np.float64), axis, 0)
    n = profiles.shape[0]
    pad = math.ceil(abs(shift)) + 8
    padded = np.pad(profiles, [(pad, pad)] + [(0, 0)] * (profiles.ndim - 1), mode="edge")
    frequencies = np.fft.fftfreq(padded.shape[0]).reshape((-1,) + (1,) * (profiles.ndim - 1))
    spectrum = np.fft.fft(padded, axis=0) * np.exp(-2j * np.pi * frequencies * shift)
    shifted = np.real(np.fft.ifft(spectrum, axis=0))[pad : pad + n]
    return np.moveaxis(shifted, 0, axis)


def register_profiles(
    reference: np.ndarray, moving: np.ndarray, max_shift: float | None = None
) -> float:
    """The sub-pixel shift ``s`` with ``reference[j] ~ moving[j - s]``.

    Integer part from the peak of the cross-correlation of the two mean-removed profiles;
    sub-pixel part by least squares: the mean squared difference over the bins both
    profiles cover, with ``moving`` shifted by :func:`fourier_shift`, minimised over
    ``s`` within one bin of the peak (bounded scalar search).
    """
    from scipy.optimize import minimize_scalar

    reference = np.asarray(reference, dtype=np.float64)
    moving = np.asarray(moving, dtype=np.float64)
    n = reference.size
    size = 2 * n
    correlation = np.real(
        np.fft.ifft(
            np.fft.fft(reference - reference.mean(), size)
            * np.conj(np.fft.fft(moving - moving.mean(), size))
        )
    )
    lags = np.fft.fftfreq(size, 1.0 / size)
    if max_shift is not None:
        correlation = np.where(np.abs(lags) <= max_shift, correlation, -np.inf)
    peak = float(lags[int(np.argmax(correlation))])
    margin = math.ceil(abs(peak)) + 2
    if n - 2 * margin < 8:
        raise InvalidInputError(
            f"profiles of {n} bins overlap too little at a shift of {peak:g} bins to register"
        )
    inside = slice(margin, n - margin)

    def mismatch(shift: float) -> float:
        return float(np.mean((reference[inside] - fourier_shift(moving, shift)[inside]) ** 2))

    result = minimize_scalar(
        mismatch, bounds=(peak - 1.0, peak + 1.0), method="bounded", options={"xatol": 1e-4}
    )
    return float(result.x)


def centre_from_opposite_views(sinogram: Any, angles_deg: Any) -> CentreEstimate:
    """Estimate 1: the rotation centre from the 180-degree symmetry of the projections.

    Needs views that cover (close to) 180 degrees: ``theta_last - theta_0`` between 170 and
    190 degrees. With the first view ``v_0``, the last ``v_L``, the angular gap
    ``g = theta_0 + 180 - theta_L`` and the registration shifts
    ``s_0 = register(v_0, flip(v_L))``, ``d_0 = register(v_0, v_1)`` (per step ``D_0``)
    and likewise ``s_L = register(v_L, flip(v_0))``, ``d_L = register(v_{L-1}, v_L)``:
    ``2c = n - 1 + s_0 + d_0 g / D_0`` and ``2c = n - 1 + s_L - d_L g / D_L`` (the object's
    drift over the gap extrapolated from its neighbouring views); the estimate is their mean.
    """
    sinogram, angles = _check_sinogram(sinogram, angles_deg)
    order = np.argsort(angles)
    sinogram, angles = sinogram[:, order], angles[order]
    n_detectors, n_views = sinogram.shape
    arc = angles[-1] - angles[0]
    if n_views < 3 or not 170.0 <= arc <= 190.0:
        raise InvalidInputError(
            f"the views span {arc:g} degrees; opposite-view registration needs about 180",
            fix="use centre_by_sharpness for limited-angle scans",
        )
    gap = angles[0] + 180.0 - angles[-1]
    first, second, before_last, last = (sinogram[:, i] for i in (0, 1, -2, -1))
    shift_first = register_profiles(first, last[::-1])
    drift_first = register_profiles(first, second)
    shift_last = register_profiles(last, first[::-1])
    drift_last = register_profiles(before_last, last)
    step_first = angles[1] - angles[0]
    step_last = angles[-1] - angles[-2]
    centre_first = 0.5 * (n_detectors - 1 + shift_first + drift_first * gap / step_first)
    centre_last = 0.5 * (n_detectors - 1 + shift_last - drift_last * gap / step_last)
    return CentreEstimate(
        centre=float(0.5 * (centre_first + centre_last)),
        n_detectors=n_detectors,
        method="opposite views: first view vs mirrored last view and last vs mirrored first, "
        "sub-pixel least-squares registration, drift over the angular gap extrapolated",
        details={
            "centre_first_end": float(centre_first),
            "centre_last_end": float(centre_last),
            "angular_gap_deg": float(gap),
            "shift_first_vs_mirrored_last": shift_first,
            "shift_last_vs_mirrored_first": shift_last,
            "drift_per_step_first": drift_first,
            "drift_per_step_last": drift_last,
        },
    )


def object_support(sinogram: Any, fraction: float = 0.05, smooth_views: int = 5) -> tuple[int, int]:
    """First and last detector bins where a view's line integral exceeds ``fraction`` of
    the sinogram's maximum: the object's shadow over the whole scan. The rotation axis lies
    inside it (every point's track over 180 degrees touches the axis' bin). Each bin is
    first averaged over ``smooth_views`` neighbouring views, so that noise alone does not
    cross the threshold (the object's shadow changes slowly from view to view)."""
    from scipy.ndimage import uniform_filter1d

    sinogram = np.asarray(sinogram, dtype=np.float64)
    smoothed = uniform_filter1d(sinogram, size=max(1, int(smooth_views)), axis=1, mode="nearest")
    profile = smoothed.max(axis=1)
    inside = np.flatnonzero(profile > fraction * profile.max())
    if inside.size == 0 or profile.max() <= 0:
        raise InvalidInputError("the sinogram is empty (no line integral above zero)")
    return int(inside[0]), int(inside[-1])


def axis_centred_window(sinogram: Any, centre: float, radius: int) -> tuple[np.ndarray, float]:
    """``(window, centre_offset)``: the ``2 radius + 1`` detector bins around the rotation
    axis (bins ``round(centre) - radius .. round(centre) + radius``, zero beyond the
    detector) and the axis' offset from the window's middle bin, for
    ``ParallelBeamCT(2 radius + 1, angles, centre_offset=offset)``: an image of
    ``(2 radius + 1)^2`` pixels centred on the axis. ``sinogram`` is
    ``(..., n_detectors, n_views)``."""
    sinogram = np.asarray(sinogram)
    n_detectors = sinogram.shape[-2]
    middle = round(centre)
    start, stop = middle - radius, middle + radius + 1
    pad_before, pad_after = max(0, -start), max(0, stop - n_detectors)
    window = sinogram[..., max(0, start) : min(n_detectors, stop), :]
    if pad_before or pad_after:
        widths = [(0, 0)] * (sinogram.ndim - 2) + [(pad_before, pad_after), (0, 0)]
        window = np.pad(window, widths)
    return np.ascontiguousarray(window), float(centre - middle)


def total_variation_2d(image: np.ndarray) -> float:
    """Anisotropic total variation ``sum |x[i+1, j] - x[i, j]| + |x[i, j+1] - x[i, j]|``."""
    return float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())


def bin_detector(sinogram: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` neighbouring detector bins (trailing bins dropped): binned bin
    ``b`` sits at full-resolution position ``factor * b + (factor - 1) / 2``."""
    n_binned = sinogram.shape[0] // factor
    return sinogram[: n_binned * factor].reshape(n_binned, factor, -1).mean(axis=1)


def fbp_scores(
    sinogram: np.ndarray,
    angles_deg: np.ndarray,
    centres: np.ndarray,
    image_side: int | None,
    batch: int = 32,
) -> dict[str, np.ndarray]:
    """``{"l1", "total_variation"}`` of the FBP image for each candidate centre.

    The sinogram is padded with zeros and Fourier-shifted so that each candidate axis
    lands on the middle bin, then reconstructed on one ``image_side`` square around the
    axis (default: the whole padded detector), so every candidate shares one geometry;
    they are back-projected in batches of ``batch`` (which bounds memory).
    """
    from medldm.physics.ct import filtered_backprojection

    n_detectors = sinogram.shape[0]
    pad = math.ceil(np.max(np.abs(n_detectors // 2 - centres))) + 8
    padded = np.pad(sinogram, ((pad, pad), (0, 0)))
    n_padded = padded.shape[0]
    side = int(image_side or n_padded)
    images = []
    for first in range(0, len(centres), batch):
        aligned = np.stack(
            [
                fourier_shift(padded, n_padded // 2 - (centre + pad))
                for centre in centres[first : first + batch]
            ]
        )
        with torch.no_grad():
            sinograms = torch.from_numpy(aligned.astype(np.float32))
            images.append(filtered_backprojection(sinograms, angles_deg, (side, side)).numpy())
    stack = np.concatenate(images)
    return {
        "l1": np.abs(stack).sum(axis=(1, 2)).astype(np.float64),
        "total_variation": np.asarray([total_variation_2d(image) for image in stack]),
    }


def _parabola_minimum(x: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through the best sample and its two neighbours (the best
    sample itself at the ends of the range or where the three are not convex)."""
    best = int(np.argmin(y))
    if best == 0 or best == len(y) - 1:
        return float(x[best])
    (x0, x1, x2), (y0, y1, y2) = x[best - 1 : best + 2], y[best - 1 : best + 2]
    curvature = (y0 - 2 * y1 + y2) / ((x1 - x0) * (x2 - x1))
    if curvature <= 0:
        return float(x[best])
    slope = (y2 - y0) / (x2 - x0)
    return float(np.clip(x1 - slope / curvature, x0, x2))


def centre_by_sharpness(
    sinogram: Any,
    angles_deg: Any,
    *,
    search: tuple[float, float] | None = None,
    coarse_binning: int | None = None,
    fine_step: float = 0.5,
    margin: int = 8,
    max_image_side: int = 512,
) -> CentreEstimate:
    """Estimate 2: the centre whose FBP image is the sharpest (least L1 norm).

    Why the L1 norm: a centre error only changes the phases of the FBP image's Fourier
    transform (each view's data moves by the same distance), so the image's energy (L2)
    and its sum do not depend on the centre; what does is how that energy is spread: a
    wrong centre splits every edge into arcs with negative lobes. The sparsest image for
    its energy, the one with the least L1 norm (= its sum plus twice its negative mass),
    is the sharpest. The total variation of each image is recorded too; on noisy data it
    is the rougher curve of the two.

    Parameters
    ----------
    sinogram, angles_deg:
        ``(n_detectors, n_views)`` line integrals and their angles in degrees.
    search:
        ``(lowest, highest)`` candidate centres in detector bins; default: the object's
        shadow (:func:`object_support`), which always holds the axis.
    coarse_binning:
        Detector binning of the coarse search (steps of one binned bin, image of the whole
        detector); default: about 160 binned bins.
    fine_step:
        Step of the full-resolution search over the coarse minimum +- one coarse step; the
        estimate is the vertex of the parabola through the three best candidates.
    margin:
        Bins of background kept around the object in the fine images.
    max_image_side:
        Largest image side reconstructed (the fine stage bins the detector when the
        object needs more), which bounds memory.
    """
    sinogram, angles = _check_sinogram(sinogram, angles_deg)
    n_detectors = sinogram.shape[0]
    low, high = object_support(sinogram)
    search_low, search_high = (float(v) for v in (search or (low, high)))
    if not search_low < search_high:
        raise InvalidInputError(f"search range {search} is empty")
    binning = int(coarse_binning or max(1, round(n_detectors / 160)))

    # coarse: binned detector, one binned bin per step, image of the whole detector
    coarse = np.arange(search_low, search_high + 1e-9, float(binning))
    coarse_positions = (coarse - (binning - 1) / 2) / binning
    coarse_scores = fbp_scores(bin_detector(sinogram, binning), angles, coarse_positions, None)
    coarse_best = float(coarse[int(np.argmin(coarse_scores["l1"]))])

    # fine: full resolution (or the least binning that fits max_image_side)
    fine = coarse_best + np.arange(-binning, binning + 1e-9, fine_step)
    reach = max(np.max(fine) - low, high - np.min(fine)) + margin
    fine_binning = max(1, math.ceil((2 * reach + 1) / max_image_side))
    side = 2 * math.ceil(reach / fine_binning) + 1
    fine_positions = (fine - (fine_binning - 1) / 2) / fine_binning
    fine_data = bin_detector(sinogram, fine_binning) if fine_binning > 1 else sinogram
    fine_scores = fbp_scores(fine_data, angles, fine_positions, side)
    centre = _parabola_minimum(fine, fine_scores["l1"])
    return CentreEstimate(
        centre=centre,
        n_detectors=n_detectors,
        method="FBP sharpness: least L1 norm of the FBP image over candidate centres "
        f"(coarse on a {binning}x-binned detector, fine every {fine_step:g} bin"
        + (f" on a {fine_binning}x-binned detector" if fine_binning > 1 else "")
        + ", parabola through the three best)",
        details={
            "search": [search_low, search_high],
            "object_support": [low, high],
            "coarse_binning": binning,
            "coarse_centres": coarse.tolist(),
            "coarse_l1": coarse_scores["l1"].tolist(),
            "coarse_total_variation": coarse_scores["total_variation"].tolist(),
            "fine_binning": fine_binning,
            "fine_image_side": side,
            "fine_centres": fine.tolist(),
            "fine_l1": fine_scores["l1"].tolist(),
            "fine_total_variation": fine_scores["total_variation"].tolist(),
            "fine_total_variation_minimum": float(
                fine[int(np.argmin(fine_scores["total_variation"]))]
            ),
        },
    )
