"""The stages of measured MRI k-space (:class:`MeasuredKSpace`), in the order of
:func:`medldm.recon.stages.run_stages`; :mod:`medldm.recon.measured` says what each does.
Made by :func:`~medldm.recon.stages.run_stages` from the entry point's options, the object
first sets itself up: the preset with its overrides, the device and the options, checked.
Then:

1. ``read``: :func:`~medldm.recon.kspace_input.read_kspace` (k-space, mask, reference);
2. ``model_view``: the preset's variant for the data's resolution
   (:meth:`~medldm.recon.presets.Preset.for_resolution` of the pixel spacing the file
   states; a file that states none, e.g. a bare ``.npy``, is taken to be at the scanner's
   resolution) and its prior, the intensity rule fitted to the zero-filled image, the
   prior's grid, the reference in the model view;
3. ``measure``: coil maps and the operator on the k-space's own grid
   (:func:`~medldm.recon.kspace_operator.measured_physics`), the k-space divided by the
   fitted range;
4. ``solve``: the LDM and the classical solvers
   (:class:`~medldm.recon.kspace_methods.MeasuredMethods`);
5. ``to_input_grid``: magnitudes on the k-space's grid, in the model view and the input's
   units;
6. ``score``: the k-space hold-out where it runs, then
   :func:`~medldm.recon.kspace_metrics.measured_metrics`;
7. ``result``: a :class:`~medldm.recon.result.ReconResult` (``simulated=False``).

Example
-------
>>> KSpaceOptions(phase="sharp")
Traceback (most recent call last):
...
medldm.errors.InvalidInputError: unknown phase 'sharp'. Fix: use 'cg' or 'lowres'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.problems.grid import GridPlan
from medldm.problems.model_view import fit_intensity, picture_to_model
from medldm.recon.kspace_input import (
    RAW_UNIT,
    KSpaceInput,
    read_kspace,
    root_sum_of_squares,
    source_image,
)
from medldm.recon.kspace_methods import (
    GRID_SOLVES,
    KSpaceSolved,
    MeasuredMethods,
    classical_names,
    holdout_scores,
    measured_operator,
)
from medldm.recon.kspace_metrics import measured_metrics
from medldm.recon.kspace_operator import measured_physics
from medldm.recon.kspace_records import KSpaceImages, KSpaceMeasurement, KSpaceView
from medldm.recon.kspace_weights import check_factors, search_weights
from medldm.recon.presets import Preset, resolve_preset
from medldm.recon.prior_setup import intensity_rule, resolve_prior
from medldm.recon.result import ReconResult
from medldm.solvers import needs_prior


@dataclass(frozen=True)
class KSpaceOptions:
    """The options of a measured run (those of
    :func:`medldm.recon.measured.reconstruct_kspace`, in its order), checked when made."""

    reference: Any = None
    acceleration: float | None = None
    kspace_slice: int | None = None
    classical: Sequence[str] | None = None
    coil_maps_from: str = "acs"
    phase: str = "cg"
    holdout_splits: int | None = None
    grid_solve: str = "tv"
    weight_search: Sequence[float] | float | None = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight_search", check_factors(self.weight_search))
        if self.phase not in ("cg", "lowres"):
            raise InvalidInputError(f"unknown phase {self.phase!r}", fix="use 'cg' or 'lowres'")
        if self.coil_maps_from not in ("acs", "reference"):
            raise InvalidInputError(
                f"unknown coil_maps_from {self.coil_maps_from!r}", fix="use 'acs' or 'reference'"
            )
        if self.grid_solve not in GRID_SOLVES:
            raise InvalidInputError(
                f"unknown grid_solve {self.grid_solve!r}",
                fix=f"use one of {', '.join(GRID_SOLVES)}",
            )


@dataclass
class MeasuredKSpace:
    """The stages of one slice of measured k-space (see the module text)."""

    kspace_path: Any
    mask_path: Any
    # a name (``configs/preset``) or a Preset; once made, the Preset with ``overrides``
    # (its native variant where it has one)
    preset: str | Preset
    device: str | torch.device  # "auto" (the GPU when present), ...; once made, resolved
    seed: int  # of a retrospective mask, the sampler and the hold-out splits
    baseline: bool  # run the classical solvers too
    progress: bool
    # those of :func:`medldm.recon.measured.reconstruct_kspace`; once made, checked
    options: KSpaceOptions | Mapping[str, Any] = field(default_factory=KSpaceOptions)
    overrides: dict[str, Any] = field(default_factory=dict)  # preset fields
    precision: str = "auto"  # of the prior's network calls

    def __post_init__(self) -> None:
        """The preset, the device, the prior and the options (see the module text)."""
        from medldm.models.prior import resolve_device

        self.preset = resolve_preset(self.preset, **self.overrides)
        self.device = resolve_device(self.device)
        if not isinstance(self.options, KSpaceOptions):
            self.options = KSpaceOptions(**self.options)

    def read(self) -> KSpaceInput:
        return read_kspace(
            self.kspace_path,
            self.mask_path,
            reference=self.options.reference,
            acceleration=self.options.acceleration,
            kspace_slice=self.options.kspace_slice,
            seed=self.seed,
        )

    def model_view(self, read: KSpaceInput) -> KSpaceView:
        """The preset's variant for the data's resolution (the pixel spacing the file
        states; a file without one is taken to be at the scanner's resolution), its prior,
        the intensity rule fitted to the zero-filled image and the prior's grid."""
        stated = min(read.raw.spacing_mm) if read.raw.spacing_from_file else None
        preset = self.preset.for_resolution(stated)
        prior = None
        if needs_prior(preset.solver):
            prior = resolve_prior(preset.prior, self.device, self.precision)
        zero_filled = root_sum_of_squares(read.measured)
        normalization = fit_intensity(
            intensity_rule(prior, preset.intensity), zero_filled, RAW_UNIT
        )
        plan = GridPlan.make(
            (1, *read.raw.shape),
            read.raw.spacing_mm,
            size=preset.grid_size,
            spacing_mm=preset.grid_spacing,
        )
        picture = read.reference_picture
        truth = None if picture is None else picture_to_model(picture)[None]
        return KSpaceView(zero_filled, normalization, plan, truth, preset, prior)

    def measure(self, read: KSpaceInput, view: KSpaceView) -> KSpaceMeasurement:
        physics, maps_text, maps_seconds = measured_physics(read, self.options.coil_maps_from)
        y = (torch.from_numpy(read.measured) / view.normalization.scale)[None].to(self.device)
        return KSpaceMeasurement(physics.to(self.device), y, maps_text, maps_seconds)

    def solve(
        self, read: KSpaceInput, view: KSpaceView, measurement: KSpaceMeasurement
    ) -> KSpaceSolved:
        methods = MeasuredMethods(
            preset=view.preset,
            prior=view.prior,
            plan=view.plan,
            operator=measured_operator(read.raw.n_coils, read.mask),
            phase=self.options.phase,
            classical=classical_names(view.preset, self.options.classical) if self.baseline else [],
            device=self.device,
            seed=int(self.seed),
            grid_solve=self.options.grid_solve,
        )
        search = None
        if self.options.weight_search:
            search = search_weights(
                methods,
                measurement.y,
                measurement.physics,
                read.mask,
                self.options.weight_search,
                self.progress,
            )
        solved = methods.solve(measurement.y, measurement.physics)
        return KSpaceSolved(methods, solved, search)

    def to_input_grid(
        self,
        read: KSpaceInput,
        view: KSpaceView,
        measurement: KSpaceMeasurement,
        solved: KSpaceSolved,
    ) -> KSpaceImages:
        """Magnitudes in the model view, multiplied back by the fitted range."""
        scale = view.normalization.scale

        def to_stack(native: torch.Tensor) -> np.ndarray:
            """A native-grid estimate (1, 1, rows, cols) -> model-view stack in input units."""
            magnitude = native.detach().abs().to("cpu", torch.float32).numpy()[0]
            return picture_to_model(magnitude) * scale

        images = {name: to_stack(method.estimate) for name, method in solved.solved.items()}
        ldm = solved.solved[solved.methods.ldm_name].reconstruction
        std = np.zeros_like(images[solved.methods.ldm_name])
        if ldm.std is not None:
            std = ldm.std.detach().abs().to("cpu", torch.float32).numpy()[:, 0]
            std = np.abs(view.plan.from_working(std)) * scale
        return KSpaceImages(images, std, picture_to_model(view.zero_filled)[None])

    def score(
        self,
        read: KSpaceInput,
        view: KSpaceView,
        measurement: KSpaceMeasurement,
        solved: KSpaceSolved,
        images: KSpaceImages,
    ) -> dict[str, Any]:
        """The k-space hold-out (by default only without a reference), then the record."""
        n_splits = self.options.holdout_splits
        if n_splits is None:
            n_splits = 0 if read.reference_picture is not None else 5
        holdout = holdout_scores(
            solved.methods, measurement.y, measurement.physics, read.mask, n_splits, self.progress
        )
        return measured_metrics(read, view, measurement, solved, images, holdout)

    def result(
        self,
        read: KSpaceInput,
        view: KSpaceView,
        measurement: KSpaceMeasurement,
        solved: KSpaceSolved,
        images: KSpaceImages,
        metrics: dict[str, Any],
    ) -> ReconResult:
        others = dict(images.images)
        estimate = others.pop(solved.methods.ldm_name)
        source = source_image(read.raw)
        return ReconResult(
            preset=view.preset,
            source=source,
            canonical=source,
            slab_start=0,
            truth=view.truth,
            reconstruction=estimate.astype(np.float32),
            std=np.asarray(images.std, np.float32),
            direct=images.direct.astype(np.float32),
            baseline=others.pop(view.preset.baseline, None) if self.baseline else None,
            other_baselines=others,
            measurement=read.measured,
            sampling_mask=read.mask,
            metrics=metrics,
            grid=view.plan,
            simulated=False,
            notes=[read.raw.describe(), *read.raw.notes, metrics["grid"], measurement.maps_text],
        )
