"""The stages of measured CT projections (:class:`MeasuredSinogram`, made by
:func:`medldm.recon.stages.run_stages`, which resolves its device), in the order of
:func:`~medldm.recon.stages.run_stages`; :mod:`medldm.recon.sinogram` says what each does.

1. ``read``: the Data Exchange file (:func:`medldm.io.raw_ct.read_data_exchange`);
2. ``model_view``: the rotation centre and the axis-centred detector window
   (:mod:`medldm.recon.sinogram_geometry`);
3. ``measure``: :class:`~medldm.physics.ct.ParallelBeamCT` of the window (with the
   centre's sub-pixel ``centre_offset``) and the window's sinograms;
4. ``solve``: FBP, TV (:mod:`medldm.recon.sinogram_tv`), and the FBP with the axis at the
   detector's middle (what centre finding fixes, shown in the report);
5. ``to_input_grid``: the images per mm (per detector pixel without a pixel size);
6. ``score``: data residuals, the TV weight and why, the CT prior's verdict;
7. ``result``: a :class:`~medldm.recon.result.SinogramResult`.

Example
-------
>>> SinogramView(17.0, "given", {}, np.zeros((1, 9, 4)), 13, 0.0, {"image_side": 9}, []).side
9
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io.raw_ct import ProjectionData, read_data_exchange
from medldm.recon.result import SinogramResult
from medldm.recon.sinogram_geometry import (
    choose_centre,
    estimate_centres,
    prior_suitability,
    reconstruction_window,
    window_at_middle,
)
from medldm.recon.sinogram_tv import noise_rms, residual_rms, tv_by_discrepancy, tv_with_weight


@dataclass
class SinogramInput:
    """``read``: the scan and what reading it did."""

    scan: ProjectionData
    notes: list[str]


@dataclass
class SinogramView:
    """``model_view``: the rotation centre and the detector window around it."""

    centre: float
    centre_source: str
    estimates: dict[str, dict[str, Any]]  # both estimates of every row
    window: np.ndarray  # (n_rows, side, n_views) line integrals
    start: int  # first detector bin of the window
    offset: float  # the axis' offset from the window's middle bin
    info: dict[str, Any]  # the window's record (shadow, bins, side, what lies outside)
    notes: list[str]  # warnings about the centre and the window

    @property
    def side(self) -> int:
        return int(self.info["image_side"])


@dataclass
class SinogramMeasurement:
    """``measure``: the window's projector and its sinograms ``(n_rows, 1, side, n_views)``."""

    physics: Any
    y: torch.Tensor


@dataclass
class SinogramSolved:
    """``solve``: the reconstructions, ``(n_rows, 1, side, side)`` tensors."""

    fbp: torch.Tensor
    fbp_seconds: float
    scale: float  # the FBP's 99.5th percentile: the sinograms are divided by it for TV
    tv: torch.Tensor
    candidates: torch.Tensor  # the TV image of every weight tried
    weight_info: dict[str, Any]
    tv_seconds: float
    fbp_middle: torch.Tensor  # FBP with the axis at the detector's middle bin


@dataclass
class SinogramImages:
    """``to_input_grid``: ``(n_rows, side, side)`` images per mm (or per detector pixel)."""

    fbp: np.ndarray
    tv: np.ndarray
    fbp_centre_at_middle: np.ndarray
    tv_candidates: dict[float, np.ndarray]  # by TV weight


@dataclass
class MeasuredSinogram:
    """The stages of one Data Exchange scan (see the module text)."""

    path: str | Path
    rotation_centre: float | None  # ``None``: found from the data
    tv_weight: float | None  # ``None``: the discrepancy principle
    tv_iterations: int
    device: str | torch.device  # "cpu", "cuda" or "auto"; once made, resolved

    def __post_init__(self) -> None:
        from medldm.models.prior import resolve_device

        self.device = resolve_device(self.device)

    def read(self) -> SinogramInput:
        scan = read_data_exchange(self.path)
        notes = [scan.pixel_size_note]
        if scan.floored_fraction > 0:
            notes.append(
                f"{scan.floored_fraction:.3%} of the transmissions were below "
                f"{scan.transmission_floor:g} and raised to it before -log"
            )
        return SinogramInput(scan, notes)

    def model_view(self, read: SinogramInput) -> SinogramView:
        scan = read.scan
        estimates = estimate_centres(scan, sharpness=self.rotation_centre is None)
        centre, source, notes = choose_centre(estimates, self.rotation_centre, scan)
        window, start, offset, info = reconstruction_window(scan, centre)
        if info["outside_max_line_integral"] > 0.1 * info["inside_max_line_integral"]:
            notes.append(
                "warning: the detector outside the reconstruction window holds line integrals "
                f"up to {info['outside_max_line_integral']:.3g}: the object may reach "
                "beyond it"
            )
        return SinogramView(centre, source, estimates, window, start, offset, info, notes)

    def measure(self, read: SinogramInput, view: SinogramView) -> SinogramMeasurement:
        from medldm.physics.ct import ParallelBeamCT

        physics = ParallelBeamCT(
            view.side,
            read.scan.angles_deg,
            n_detectors=view.side,
            circle=True,
            centre_offset=view.offset,
        ).to(self.device)
        y = torch.from_numpy(view.window[:, None]).to(self.device)
        return SinogramMeasurement(physics, y)

    def solve(
        self, read: SinogramInput, view: SinogramView, measurement: SinogramMeasurement
    ) -> SinogramSolved:
        """FBP, then TV on the sinograms scaled by the FBP's 99.5th percentile."""
        physics, y = measurement.physics, measurement.y
        started = time.perf_counter()
        with torch.no_grad():
            fbp = physics.fbp(y)
        fbp_seconds = time.perf_counter() - started
        scale = float(np.percentile(fbp.cpu().numpy(), 99.5))
        if not scale > 0:
            raise InvalidInputError("the FBP image is empty (no attenuation)", path=read.scan.path)
        started = time.perf_counter()
        if self.tv_weight is None:
            noise = noise_rms(read.scan, view.window, view.info["object_shadow_bins"])
            tv = tv_by_discrepancy(y, physics, scale, noise, self.tv_iterations)
        else:
            tv = tv_with_weight(y, physics, scale, self.tv_weight, self.tv_iterations)
        tv_seconds = time.perf_counter() - started
        middle = _fbp_axis_at_middle(read.scan, view.side)
        return SinogramSolved(fbp, fbp_seconds, scale, *tv, tv_seconds, middle)

    def to_input_grid(
        self,
        read: SinogramInput,
        view: SinogramView,
        measurement: SinogramMeasurement,
        solved: SinogramSolved,
    ) -> SinogramImages:
        pixel = read.scan.pixel_size_mm or 1.0

        def image_stack(tensor: torch.Tensor) -> np.ndarray:
            return (tensor[:, 0].detach().cpu().numpy() / pixel).astype(np.float32)

        info = solved.weight_info
        weights = info.get("grid", [info["weight"]])
        return SinogramImages(
            fbp=image_stack(solved.fbp),
            tv=image_stack(solved.tv),
            fbp_centre_at_middle=image_stack(solved.fbp_middle),
            tv_candidates={
                float(weight): image_stack(x)
                for weight, x in zip(weights, solved.candidates, strict=True)
            },
        )

    def score(
        self,
        read: SinogramInput,
        view: SinogramView,
        measurement: SinogramMeasurement,
        solved: SinogramSolved,
        images: SinogramImages,
    ) -> dict[str, Any]:
        """The scan, the centre and window, the data residuals and the CT prior's verdict."""
        suits, prior_reason = prior_suitability(read.scan, view.side)
        if suits:
            prior_reason += (
                "; the prior path for measured sinograms is not implemented yet, so it was not run"
            )
        return {
            **_scan_record(read.scan),
            **_geometry_record(read.scan, view),
            **self._residual_rows(measurement, solved),
            "ct_prior": {"run": False, "reason": prior_reason},
            "device": str(self.device),
        }

    def _residual_rows(
        self, measurement: SinogramMeasurement, solved: SinogramSolved
    ) -> dict[str, Any]:
        """The FBP's and TV's rows: data residuals (no ground truth) and timings."""
        physics, y = measurement.physics, measurement.y
        return {
            "convention": "measured data: no ground truth; data residual ||A x - y|| / ||y|| "
            "(and its RMS) on the reconstruction window's sinogram",
            "fbp": {
                "residual": physics.residual(solved.fbp, y),
                "residual_rms": residual_rms(physics, solved.fbp, y),
                "seconds": round(solved.fbp_seconds, 3),
            },
            "tv": {
                **solved.weight_info,
                "n_iter": int(self.tv_iterations),
                "intensity_scale": solved.scale,
                "residual": physics.residual(solved.tv, y),
                "residual_rms": residual_rms(physics, solved.tv, y),
                "seconds": round(solved.tv_seconds, 3),
            },
        }

    def result(
        self,
        read: SinogramInput,
        view: SinogramView,
        measurement: SinogramMeasurement,
        solved: SinogramSolved,
        images: SinogramImages,
        metrics: dict[str, Any],
    ) -> SinogramResult:
        return SinogramResult(
            scan=read.scan,
            centre=view.centre,
            centre_source=view.centre_source,
            centre_estimates=view.estimates,
            window_start=view.start,
            centre_offset=view.offset,
            fbp=images.fbp,
            tv=images.tv,
            fbp_centre_at_middle=images.fbp_centre_at_middle,
            measurement=view.window,
            metrics=metrics,
            notes=[*read.notes, *view.notes, f"CT prior {metrics['ct_prior']['reason']}"],
            tv_candidates=images.tv_candidates,
        )


def _fbp_axis_at_middle(scan: ProjectionData, side: int) -> torch.Tensor:
    """The same data reconstructed as if the axis sat at the detector's middle bin: what
    centre finding fixes (shown in the report). FBP only: no projector built."""
    from medldm.physics.ct import filtered_backprojection

    middle_window, _, _ = window_at_middle(scan, side // 2)
    with torch.no_grad():
        return filtered_backprojection(
            torch.from_numpy(middle_window[:, None]), scan.angles_deg, (side, side)
        )


def _scan_record(scan: ProjectionData) -> dict[str, Any]:
    """What the file holds and how it was read."""
    return {
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
    }


def _geometry_record(scan: ProjectionData, view: SinogramView) -> dict[str, Any]:
    """The rotation centre, the window and the images' unit."""
    return {
        "rotation_centre": {
            "used": view.centre,
            "source": view.centre_source,
            "detector_middle_bin": scan.n_detectors // 2,
            "offset_from_middle": view.centre - scan.n_detectors // 2,
            "convention": "detector position in bins, 0-based, pixel centres at integers",
            "estimates": view.estimates,
        },
        "window": {**view.info, "centre_offset_in_window": view.offset},
        "intensity_unit": "attenuation per detector pixel"
        if scan.pixel_size_mm is None
        else "attenuation per mm",
    }
