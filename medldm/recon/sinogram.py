"""Measured CT projections in (``medldm-recon sinogram=FILE``): FBP and TV of every row.

Steps (each recorded in :class:`SinogramResult` and ``metrics.json``):

1. read the Data Exchange file (:func:`medldm.io.raw_ct.read_data_exchange`): flat/dark
   correction, ``-log``, angles from the file, one sinogram per detector row;
2. find the rotation centre two independent ways on every row
   (:mod:`medldm.physics.ct_centre`: opposite-view registration and FBP sharpness) and
   reconstruct with their mean (or with ``rotation_centre`` when given); a disagreement of
   more than :data:`CENTRE_AGREEMENT_PX` is reported as a warning;
3. cut the detector window centred on the axis that holds the object's shadow plus a
   margin: the image is the square of that width around the axis, and the projector is
   :class:`~medldm.physics.ct.ParallelBeamCT` with the centre's sub-pixel
   ``centre_offset`` (exact, no interpolation of the data);
4. FBP; TV (:class:`~medldm.solvers.tv.TotalVariation`, non-negative) on the sinograms
   scaled so that the FBP's 99.5th percentile is 1, the weight given or chosen by the
   discrepancy principle: the largest weight of a grid whose data residual stays within
   the noise estimated from the sinogram's background (:func:`noise_sigma`);
5. the CT prior is run only where the field of view suits it (:func:`prior_suitability`),
   which a micro-CT never does; the result says why.

Intensities: attenuation per pixel (line integral per pixel length), per mm when the file
gives the pixel size.

Example
-------
>>> import h5py, numpy as np, tempfile, pathlib, torch
>>> from medldm.physics.ct import ParallelBeamCT, sparse_view_angles
>>> angles = sparse_view_angles(60)
>>> disc = torch.zeros(1, 1, 24, 24); disc[..., 8:15, 9:17] = 0.05
>>> lines = ParallelBeamCT(24, angles, n_detectors=40, centre_offset=-3.0).A(disc)[0, 0]
>>> counts = 1000.0 * np.exp(-lines.numpy().T)[:, None, :]  # (views, 1 row, 40 bins)
>>> path = pathlib.Path(tempfile.mkdtemp()) / "scan.h5"
>>> with h5py.File(path, "w") as f:
...     f["exchange/data"] = counts.astype(np.float32)
...     f["exchange/data_white"] = np.full((2, 1, 40), 1000.0, np.float32)
...     f["exchange/data_dark"] = np.zeros((2, 1, 40), np.float32)
...     f["exchange/theta"] = angles
>>> result = reconstruct_sinogram(path, tv_weight=0.01, tv_iterations=50)
>>> round(result.centre, 1), result.tv.shape == result.fbp.shape
(17.0, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io.raw_ct import ProjectionData, read_data_exchange

#: The two centre estimates should agree to this many detector pixels.
CENTRE_AGREEMENT_PX = 1.0
#: Bins of background kept around the object's shadow in the reconstruction window.
WINDOW_MARGIN = 8
#: TV weights tried by the discrepancy principle (the sinogram scaled so that the FBP's
#: 99.5th percentile is 1).
TV_WEIGHT_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0)
TV_ITERATIONS = 500
#: PDHG's primal/dual balance for measured sinograms. The solver's default (10, for
#: 64 x 64 simulations) converges slowly on a 361-pixel micro-CT window: on the tooth
#: (2x-binned, weight 0.3) 300 iterations at 0.3 reach the objective of 1000 iterations
#: within 0.04 %, at 10 within 8 %. The ratio changes the speed, not the minimiser.
TV_STEP_RATIO = 0.3
#: The reconstructed field of view (mm) of the images the shipped CT prior learned:
#: MedNIST CT slices are whole clinical head, chest and abdomen cross-sections. MedNIST
#: carries no pixel spacing, so this is the clinical range of such slices, not a
#: measured property of the training set.
CT_PRIOR_FIELD_OF_VIEW_MM = (150.0, 600.0)


@dataclass
class SinogramResult:
    """What :func:`reconstruct_sinogram` produced. Images are ``(n_rows, side, side)``
    (row index, image row, image column), centred on the rotation axis."""

    scan: ProjectionData
    centre: float
    centre_source: str
    centre_estimates: dict[str, dict[str, Any]]
    window_start: int
    centre_offset: float
    fbp: np.ndarray
    tv: np.ndarray
    fbp_centre_at_middle: np.ndarray
    measurement: np.ndarray
    metrics: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    tv_candidates: dict[float, np.ndarray] = field(default_factory=dict)

    @property
    def image_side(self) -> int:
        return int(self.fbp.shape[-1])

    @property
    def unit(self) -> str:
        if self.scan.pixel_size_mm is None:
            return "attenuation per detector pixel"
        return "attenuation per mm"


# --- centre -----------------------------------------------------------------------------
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


def _mean_centre(estimates: dict[str, dict[str, Any]]) -> float:
    values = [
        entry[key]
        for entry in estimates.values()
        for key in ("opposite_views", "fbp_sharpness")
        if key in entry
    ]
    return float(np.mean(values))


# --- geometry ---------------------------------------------------------------------------
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


def noise_sigma(scan: ProjectionData, window: np.ndarray, shadow: tuple[int, int]) -> np.ndarray:
    """Per-measurement noise standard deviation of the line integrals in ``window``.

    ``sigma_0`` from the background bins (more than 10 bins outside the object's shadow):
    the standard deviation of neighbouring-bin differences over ``sqrt(2)`` (insensitive to
    slow offsets); scaled by ``exp(p / 2)`` inside the object, as for photon-counting noise
    (``var(-log T) = 1 / (N_0 T)``). Raises when there is too little background."""
    low, high = shadow
    background = np.concatenate(
        [scan.sinograms[:, : max(0, low - 10)], scan.sinograms[:, high + 11 :]], axis=1
    )
    if background.shape[1] < 8:
        raise InvalidInputError(
            "the object fills the detector, so the noise cannot be measured from background",
            path=scan.path,
            fix="give the TV weight (sinogram_tv_weight=...)",
        )
    sigma_0 = float(np.std(np.diff(background, axis=1)) / math.sqrt(2))
    return sigma_0 * np.exp(np.clip(window, 0, None) / 2)


# --- solvers ----------------------------------------------------------------------------
def tv_for_weights(
    y: torch.Tensor,
    physics: Any,
    weights: list[float] | tuple[float, ...],
    n_iter: int = TV_ITERATIONS,
    *,
    return_change: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, float]:
    """TV reconstructions of ``y`` ``(B, 1, n_det, n_views)`` for several weights in one
    batched PDHG run: ``(len(weights), B, 1, H, W)`` (and, with ``return_change``, the
    last iteration's relative change of the whole batch, a convergence check).

    TV is 1-homogeneous, so ``x`` minimises ``1/2 ||A x - a y||^2 + l TV(x)`` exactly when
    ``x / a`` minimises ``1/2 ||A z - y||^2 + (l / a) TV(z)``; with ``l`` the largest weight
    and ``a = l / w`` for each weight ``w``, one solve of the scaled copies gives every
    weight, with the same PDHG iterates (step sizes do not depend on the data) as separate
    solves. ``tol=0``: every copy runs ``n_iter`` iterations."""
    from medldm.solvers.tv import TotalVariation

    largest = max(weights)
    factors = torch.tensor([largest / w for w in weights], dtype=y.dtype, device=y.device)
    batch = (factors[:, None, None, None, None] * y[None]).reshape(-1, *y.shape[1:])
    solver = TotalVariation(
        weight=largest,
        n_iter=n_iter,
        constraint="nonnegative",
        step_ratio=TV_STEP_RATIO,
        tol=0.0,
    )
    reconstruction = solver.solve(batch, physics)
    estimate = reconstruction.estimate
    shaped = estimate.reshape(len(weights), *y.shape[:2], *estimate.shape[-2:])
    estimates = shaped / factors[:, None, None, None, None]
    if return_change:
        return estimates, float(reconstruction.info["relative_change"])
    return estimates


def residual_rms(physics: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Root mean square of ``A x - y`` (the units of ``y``)."""
    with torch.no_grad():
        return float((physics.A(x) - y).pow(2).mean().sqrt())


# --- prior ------------------------------------------------------------------------------
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


# --- the reconstruction -----------------------------------------------------------------
def reconstruct_sinogram(
    path: str | Path,
    *,
    rotation_centre: float | None = None,
    tv_weight: float | None = None,
    tv_iterations: int = TV_ITERATIONS,
    device: str | torch.device = "cpu",
) -> SinogramResult:
    """Reconstruct every detector row of a Data Exchange scan (see the module text).

    Parameters
    ----------
    path:
        The Data Exchange HDF5 file.
    rotation_centre:
        The axis' detector position (0-based bins); ``None`` finds it from the data (both
        estimates, their mean is used).
    tv_weight:
        TV weight for the sinograms scaled to FBP 99.5th percentile 1; ``None``: the
        discrepancy principle over :data:`TV_WEIGHT_GRID`.
    tv_iterations:
        PDHG iterations.
    device:
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """
    from medldm.models.prior import resolve_device
    from medldm.physics.ct import (
        ParallelBeamCT,
        backprojector_matrix,
        fbp_detector_count,
        filtered_backprojection,
    )

    started = time.perf_counter()
    torch_device = resolve_device(device)
    scan = read_data_exchange(path)
    notes = [scan.pixel_size_note]
    if scan.floored_fraction > 0:
        notes.append(
            f"{scan.floored_fraction:.3%} of the transmissions were below "
            f"{scan.transmission_floor:g} and raised to it before -log"
        )
    estimates = estimate_centres(scan, sharpness=rotation_centre is None)
    if rotation_centre is None:
        centre, centre_source = _mean_centre(estimates), "mean of both estimates over all rows"
        worst = max(entry["difference_px"] for entry in estimates.values())
        if worst > CENTRE_AGREEMENT_PX:
            notes.append(
                f"warning: the two centre estimates differ by up to {worst:.2f} pixels "
                f"(more than {CENTRE_AGREEMENT_PX:g}); check the reconstruction, or give "
                "rotation_centre"
            )
    else:
        centre, centre_source = float(rotation_centre), "given (rotation_centre)"
        if not 0 <= centre < scan.n_detectors:
            raise InvalidInputError(
                f"rotation_centre {centre} lies outside the detector (0..{scan.n_detectors - 1})",
                path=scan.path,
            )
    window, start, offset, window_info = reconstruction_window(scan, centre)
    if window_info["outside_max_line_integral"] > 0.1 * window_info["inside_max_line_integral"]:
        notes.append(
            "warning: the detector outside the reconstruction window holds line integrals "
            f"up to {window_info['outside_max_line_integral']:.3g}: the object may reach "
            "beyond it"
        )
    side = window_info["image_side"]
    physics = ParallelBeamCT(
        side, scan.angles_deg, n_detectors=side, circle=True, centre_offset=offset
    ).to(torch_device)
    y = torch.from_numpy(window[:, None]).to(torch_device)

    fbp_started = time.perf_counter()
    with torch.no_grad():
        fbp = physics.fbp(y)
    fbp_seconds = time.perf_counter() - fbp_started
    scale = float(np.percentile(fbp.cpu().numpy(), 99.5))
    if not scale > 0:
        raise InvalidInputError("the FBP image is empty (no attenuation)", path=scan.path)

    tv_started = time.perf_counter()
    y_scaled = y / scale
    if tv_weight is None:
        sigma = torch.from_numpy(noise_sigma(scan, window, window_info["object_shadow_bins"]))
        noise_rms = float(sigma.pow(2).mean().sqrt())
        candidates, change = tv_for_weights(
            y_scaled, physics, TV_WEIGHT_GRID, tv_iterations, return_change=True
        )
        candidates = candidates * scale
        residuals = [residual_rms(physics, x, y) for x in candidates]
        fitting = [i for i, r in enumerate(residuals) if r <= noise_rms]
        chosen = fitting[-1] if fitting else 0
        tv = candidates[chosen]
        weight_info = {
            "weight": TV_WEIGHT_GRID[chosen],
            "rule": "discrepancy principle: the largest weight of the grid whose residual "
            "RMS stays within the estimated noise RMS"
            + ("" if fitting else " (none did: the smallest weight is used)"),
            "grid": list(TV_WEIGHT_GRID),
            "residual_rms_per_weight": residuals,
            "noise_rms_estimate": noise_rms,
            "last_relative_change": change,
        }
    else:
        from medldm.solvers.tv import TotalVariation

        solver = TotalVariation(
            weight=float(tv_weight),
            n_iter=tv_iterations,
            constraint="nonnegative",
            step_ratio=TV_STEP_RATIO,
        )
        tv = solver.solve(y_scaled, physics).estimate * scale
        candidates = tv[None]
        weight_info = {"weight": float(tv_weight), "rule": "given (sinogram_tv_weight)"}
    tv_seconds = time.perf_counter() - tv_started

    # the same data reconstructed as if the axis sat at the detector's middle bin: what
    # centre finding fixes (shown in the report)
    middle_window, _, _ = _window_at_middle(scan, side // 2)
    with torch.no_grad():  # FBP only: no projector built, no cache entry kept
        fbp_middle = filtered_backprojection(
            torch.from_numpy(middle_window[:, None]),
            scan.angles_deg,
            (side, side),
            backprojector=backprojector_matrix(
                side, side, scan.angles_deg, fbp_detector_count(side, True)
            ),
        )

    pixel = scan.pixel_size_mm or 1.0
    suits, prior_reason = prior_suitability(scan, side)
    if suits:
        prior_reason += (
            "; the prior path for measured sinograms is not implemented yet, so it was not run"
        )
    metrics: dict[str, Any] = {
        "input": str(scan.path),
        "format": "data-exchange",
        "sample": scan.metadata.get("sample"),
        "rows": scan.n_rows,
        "detector_bins": scan.n_detectors,
        "views": scan.n_views,
        "angles_deg": {
            "first": float(scan.angles_deg[0]),
            "last": float(scan.angles_deg[-1]),
            "median_step": float(np.median(np.diff(np.sort(scan.angles_deg)))),
        },
        "pixel_size_mm": scan.pixel_size_mm,
        "pixel_size_note": scan.pixel_size_note,
        "flat_dark": {
            "flats": scan.n_flats,
            "darks": scan.n_darks,
            "transmission_floor": scan.transmission_floor,
            "floored_fraction": scan.floored_fraction,
        },
        "rotation_centre": {
            "used": centre,
            "source": centre_source,
            "detector_middle_bin": scan.n_detectors // 2,
            "offset_from_middle": centre - scan.n_detectors // 2,
            "convention": "detector position in bins, 0-based, pixel centres at integers",
            "estimates": estimates,
        },
        "window": {**window_info, "centre_offset_in_window": offset},
        "intensity_unit": "attenuation per detector pixel"
        if scan.pixel_size_mm is None
        else "attenuation per mm",
        "convention": "measured data: no ground truth; data residual ||A x - y|| / ||y|| "
        "(and its RMS) on the reconstruction window's sinogram",
        "fbp": {
            "residual": physics.residual(fbp, y),
            "residual_rms": residual_rms(physics, fbp, y),
            "seconds": round(fbp_seconds, 3),
        },
        "tv": {
            **weight_info,
            "n_iter": int(tv_iterations),
            "intensity_scale": scale,
            "residual": physics.residual(tv, y),
            "residual_rms": residual_rms(physics, tv, y),
            "seconds": round(tv_seconds, 3),
        },
        "ct_prior": {"run": False, "reason": prior_reason},
        "device": str(torch_device),
        "total_seconds": round(time.perf_counter() - started, 3),
    }

    def image_stack(tensor: torch.Tensor) -> np.ndarray:
        return (tensor[:, 0].detach().cpu().numpy() / pixel).astype(np.float32)

    return SinogramResult(
        scan=scan,
        centre=centre,
        centre_source=centre_source,
        centre_estimates=estimates,
        window_start=start,
        centre_offset=offset,
        fbp=image_stack(fbp),
        tv=image_stack(tv),
        fbp_centre_at_middle=image_stack(fbp_middle),
        measurement=window,
        metrics=metrics,
        notes=[*notes, f"CT prior {prior_reason}"],
        tv_candidates={
            float(weight): image_stack(x)
            for weight, x in zip(
                weight_info.get("grid", [weight_info["weight"]]), candidates, strict=True
            )
        },
    )


def _window_at_middle(scan: ProjectionData, radius: int) -> tuple[np.ndarray, int, float]:
    """The window of the same size centred on the detector's middle bin."""
    from medldm.physics.ct_centre import axis_centred_window

    window, offset = axis_centred_window(scan.sinograms, scan.n_detectors // 2, radius)
    return window, scan.n_detectors // 2 - radius, offset
