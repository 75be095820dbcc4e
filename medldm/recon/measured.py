"""Measured MRI k-space in: single- and multi-coil Cartesian raw data, no simulation.

Steps (each disclosed in ``metrics.json`` and ``report.html``):

1. **read** one slice of k-space with :func:`medldm.io.raw_mri.read_raw_kspace` (``.npy``,
   BART ``.cfl``, Siemens twix ``.dat``, ISMRMRD or fastMRI ``.h5``): the pixel spacing
   comes from the file's header, else 1 mm is assumed and said;
2. **sampling mask**: ``mask=`` when given, else the file's own mask (fastMRI), else the
   non-zero locations of the k-space. A *fully sampled* input undersampled on purpose
   (``acceleration=4|8``: the project's fastMRI random-line mask along the file's
   phase-encode axis, seeded; or an explicit ``mask=``) is scored against its own fully
   sampled reconstruction (root sum of squares of the coil images); ``reference=`` gives
   that reference for data that is undersampled already;
3. **coil maps** (several coils): ESPIRiT (:func:`medldm.physics.coils.estimate_sensitivities`)
   on the largest fully sampled centred block of the mask, with the largest kernel
   (6 down to 3) the block supports (at least as many kernel positions as the kernel's size
   along each axis); a block under 5 lines wide, or ESPIRiT maps that leave more than 5 %
   of the object's signal uncovered (``coils.map_coverage``: too few lines for the coils), fall back
   to low-resolution maps (``rss_lowres``), and say so;
4. **intensities**: the preset's ``intensity`` rule (the prior's own training rule, or
   the 0.5-99.5 percentiles) is fitted through the model view
   (:func:`medldm.problems.model_view.fit_intensity`) to the coil-combined zero-filled
   image; the k-space is divided by the fitted range ``high - low`` (k-space is linear in
   the image, so the magnitude's zero stays at 0: the offset ``low`` is reported, not
   subtracted) and every output is multiplied back;
5. **the prior's grid**: the image is laid out in the model view (the picture's top row,
   row 0 of the k-space's image, is taken as anterior: rows are reversed so that they
   grow towards A, as the priors were trained) and mapped onto the preset's grid
   (:class:`~medldm.problems.grid.GridPlan`): resampled by Fourier interpolation (k-space
   cropped or zero-padded, exact for band-limited images) when the spacing differs, then
   zero-padded. The LDM solver runs on that grid through :class:`PriorGridMRI`, the
   measured operator seen from it, so its data term is the measured k-space itself;
6. **solvers**: the preset's LDM solver, and the classical solvers (CG-SENSE, TV, and
   l1-wavelet where installed) on the native grid, all on the *same* scaled k-space, with
   the presets tuned for the closest simulated operator (``mri[_multicoil]_4x|8x``).
   Solvers that reconstruct a real magnitude behind a phase map (the LDM solvers, TV) get
   the phase of the CG-SENSE estimate: their own low-resolution phase (a narrow k-space
   window) cannot follow the coil-combined phase of measured multi-coil images;
7. **scores**: the relative data residual ``||A x - y|| / ||y||`` of every method; PSNR /
   SSIM / NMSE against the reference where there is one (magnitude, the reference's
   units, data range = its max - min); and, by default when there is no reference, the
   **k-space hold-out error** of every method (:mod:`medldm.physics.holdout`: 5 seeded
   splits, each method reconstructed from 90 % of the samples and scored on the held-out
   10 %, mean and spread; ``holdout_splits=``).

Example
-------
>>> import numpy as np, tempfile, pathlib, torch
>>> from medldm.models.testing import tiny_prior
>>> from medldm.physics.mri import fft2c
>>> from medldm.physics.coils import birdcage_sensitivities
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> image = torch.zeros(32, 32); image[8:24, 6:26] = 1
>>> coils = fft2c(birdcage_sensitivities(4, (32, 32)) * image)
>>> np.save(folder / "full.npy", coils.numpy())
>>> result = reconstruct_kspace(folder / "full.npy", "mri_brain_4x", acceleration=4,
...     prior=tiny_prior(), grid={"size": [32, 32], "spacing_mm": 1.0},
...     solver_options={"n_steps": 2, "n_samples": 1}, classical=["cg"])
>>> result.reconstruction.shape, sorted(result.metrics["classical"])
((1, 32, 32), ['cg', 'tv'])
>>> "psnr_db" in result.metrics["ldm"], result.metrics["reference"]["kind"]
(True, 'retrospective')
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.io import MedImage
from medldm.io.raw_mri import RawKSpace, read_raw_kspace, sampling_mask_from_zeros
from medldm.physics.base import LinearPhysics
from medldm.physics.coils import calibration_region
from medldm.physics.mri import fftnc, ifftnc, rss
from medldm.physics.phase import PhaseConstrained
from medldm.problems.grid import GridPlan
from medldm.problems.model_view import fit_intensity, picture_to_model
from medldm.recon.presets import Preset, load_preset
from medldm.recon.prior_setup import intensity_rule, resolve_prior
from medldm.recon.result import ReconResult

#: Where the intensity units of raw k-space come from.
RAW_UNIT = "arbitrary MR units (raw k-space)"
#: ESPIRiT kernel sizes tried, largest first (BART's ecalib uses 6).
ESPIRIT_KERNELS = (6, 5, 4, 3)
#: The fraction of the object's signal (:func:`medldm.physics.coils.map_coverage`) that
#: ESPIRiT's maps must cover; below it the calibration failed (too few lines for the
#: coils) and low-resolution maps are used instead. On the 32-coil phantom at 4x (5 centre
#: lines) ESPIRiT covered 0.60, and SENSE on those maps fell to 6 dB.
ESPIRIT_MIN_COVERAGE = 0.95
#: The final solves on the measured grid when the prior ran on another (``grid_solve=``).
GRID_SOLVES = ("tv", "least_squares", "none")


# --- the picture <-> the model view ----------------------------------------------------
def _centred_resize(k: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop or zero-pad the last two axes of centred k-space to ``shape``, keeping the DC
    sample at index ``n // 2`` (so a crop and the pad back are each other's adjoint)."""
    for axis, target in zip((-2, -1), shape, strict=True):
        n, target = k.shape[axis], int(target)
        if n > target:
            k = k.narrow(axis, n // 2 - target // 2, target)
        elif n < target:
            before = target // 2 - n // 2
            pad = [0, 0, 0, 0]
            index = 0 if axis == -1 else 2
            pad[index], pad[index + 1] = before, target - n - before
            k = torch.nn.functional.pad(k, pad)
    return k


def _fourier_resample(x: torch.Tensor, shape: Sequence[int], gain: float) -> torch.Tensor:
    """``gain * F^H resize(F x)`` over the last two axes (complex result)."""
    return gain * ifftnc(_centred_resize(fftnc(x, 2), shape), 2)


def _crop_or_pad(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre-crop or zero-pad the last two axes (the offsets of
    :func:`medldm.data.slices.crop_or_pad_in_plane`, as the grid plan uses)."""
    for axis, target in zip((-2, -1), shape, strict=True):
        n, target = x.shape[axis], int(target)
        if n > target:
            x = x.narrow(axis, (n - target) // 2, target)
        elif n < target:
            before = (target - n) // 2
            pad = [0, 0, 0, 0]
            index = 0 if axis == -1 else 2
            pad[index], pad[index + 1] = before, target - n - before
            x = torch.nn.functional.pad(x, pad)
    return x


class PriorGridMRI(LinearPhysics):
    """A measured MRI operator seen from the prior's working grid.

    ``A' x = A(P(x))`` with ``P``: cut the working grid's zero padding, Fourier-resample
    to the k-space's matrix (``c F^H R F``, ``R`` a centred k-space crop/zero-pad,
    ``c = sqrt(N_native / N_resampled)`` so that intensities are kept) and turn the model
    view back into the k-space's layout (rows reversed). ``A'^H = P^H A^H`` exactly, so
    solvers see an ordinary linear operator whose measurement is the measured k-space.

    Parameters
    ----------
    physics:
        The operator on the k-space's own grid (single- or multi-coil MRI).
    plan:
        The grid plan (``input_shape`` = the k-space matrix in the model view).

    Example
    -------
    >>> import torch
    >>> from medldm.physics.mri import SingleCoilMRI
    >>> plan = GridPlan.make((1, 20, 16), (1.0, 1.0), size=(16, 16), spacing_mm=2.0)
    >>> op = PriorGridMRI(SingleCoilMRI(torch.ones(20, 16, dtype=torch.bool)), plan)
    >>> x = torch.randn(1, 1, 16, 16, dtype=torch.complex128)
    >>> y = torch.randn(1, 1, 20, 16, dtype=torch.complex128)
    >>> op.adjointness_error(x, y) < 1e-12
    True
    """

    def __init__(self, physics: LinearPhysics, plan: GridPlan):
        super().__init__(physics.spatial_dims, physics.noise_model)
        self.physics = physics
        self.working_shape = tuple(plan.working_shape)
        self.resampled_shape = tuple(plan.resampled_shape)
        self.native_shape = tuple(plan.input_shape)
        self.gain = math.sqrt(math.prod(self.native_shape) / math.prod(self.resampled_shape))

    @property
    def mask(self) -> torch.Tensor:
        return self.physics.mask

    def to_native(self, x: torch.Tensor) -> torch.Tensor:
        """Working grid -> the k-space's image grid and layout (complex)."""
        x = _crop_or_pad(x, self.resampled_shape)
        if self.resampled_shape != self.native_shape:
            x = _fourier_resample(x, self.native_shape, self.gain)
        return torch.flip(x, dims=(-2,))

    def from_native(self, image: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`to_native`."""
        image = torch.flip(image, dims=(-2,))
        if self.resampled_shape != self.native_shape:
            image = _fourier_resample(image, self.resampled_shape, self.gain)
        return _crop_or_pad(image, self.working_shape)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(self.to_native(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.from_native(self.physics.A_adjoint(y))


# --- sampling and calibration -----------------------------------------------------------
def espirit_kernel(region: tuple[int, int], n_coils: int) -> int | None:
    """The largest ESPIRiT kernel of :data:`ESPIRIT_KERNELS` that leaves at least as many
    kernel positions as its own size along both axes of ``region`` (fewer make unreliable
    maps, see :func:`medldm.physics.coils.estimate_sensitivities`); ``None`` when none
    fits. Fewer calibration rows than unknowns (``n_coils * kernel^2``) are fine, as in
    ``bart ecalib``; ``n_coils`` is kept for the callers' record."""
    del n_coils  # the rule depends on the region only
    for kernel in ESPIRIT_KERNELS:
        if min(region) - kernel + 1 >= kernel:
            return kernel
    return None


def coil_maps(kspace: torch.Tensor, mask: np.ndarray) -> tuple[torch.Tensor, str]:
    """Coil sensitivities ``(coils, rows, cols)`` from the fully sampled centre of
    ``kspace`` and how they were made (ESPIRiT where the calibration block allows it)."""
    from medldm.physics.coils import estimate_sensitivities, map_coverage

    region = calibration_region(mask)
    if min(region) < 2:
        raise InvalidInputError(
            f"the k-space has no fully sampled centre (largest centred block {region})",
            fix="coil maps need a calibration region: sample the k-space centre fully",
        )
    kernel = espirit_kernel(region, int(kspace.shape[0]))
    why = (
        f"too small for ESPIRiT (kernel {ESPIRIT_KERNELS[-1]} needs a "
        f"{2 * ESPIRIT_KERNELS[-1] - 1}-wide centre)"
    )
    if kernel is not None:
        maps = estimate_sensitivities(kspace, region, "espirit", kernel_size=kernel)
        coverage = map_coverage(maps, kspace, region)
        if coverage >= ESPIRIT_MIN_COVERAGE:
            return maps, (
                f"ESPIRiT on the fully sampled {region[0]}x{region[1]} centre (kernel {kernel}, "
                "singular threshold 0.02, eigenvalue threshold 0.95)"
            )
        why = (
            f"ESPIRiT (kernel {kernel}) left {100 * (1 - coverage):.0f} % of the object's "
            f"signal without maps, more than {100 * (1 - ESPIRIT_MIN_COVERAGE):.0f} %: too few "
            f"calibration lines for {kspace.shape[0]} coils"
        )
    maps = estimate_sensitivities(kspace, region, "rss_lowres")
    return maps, (
        f"low-resolution maps (rss_lowres) from the fully sampled {region[0]}x{region[1]} "
        f"centre: {why}"
    )


def retrospective_mask(
    shape: tuple[int, int], acceleration: float, phase_encode_axis: int | None, seed: int
) -> np.ndarray:
    """A fastMRI random-line mask (:class:`~medldm.physics.masks.RandomLineMask`, centre
    fraction ``0.32 / acceleration``) of ``shape``, whole lines along the phase-encode axis
    (columns when unknown), drawn from ``torch.Generator().manual_seed(seed)``."""
    from medldm.physics.masks import RandomLineMask

    generator = torch.Generator().manual_seed(int(seed))
    make_mask = RandomLineMask(float(acceleration))
    if phase_encode_axis == 0:  # lines are rows: draw over (cols, rows), transpose
        return make_mask(shape[::-1], generator=generator).numpy().T.copy()
    return make_mask(shape, generator=generator).numpy()


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise InvalidInputError("mask file not found", path=path, fix="give mask=/path/mask.npy")
    try:
        mask = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InvalidInputError(
            f"cannot read the mask: {error}", path=path, fix="save it with numpy.save"
        ) from error
    mask = np.asarray(mask) != 0
    rows, cols = shape
    if mask.shape == (cols,):
        mask = np.broadcast_to(mask[None, :], shape)
    if mask.shape != shape:
        raise InvalidInputError(
            f"mask shape {mask.shape} fits neither ({cols},) nor ({rows}, {cols})",
            path=path,
            fix="give a mask over the k-space matrix (non-zero = sampled)",
        )
    return np.ascontiguousarray(mask)


# --- helpers ------------------------------------------------------------------------------
def root_sum_of_squares(kspace: np.ndarray) -> np.ndarray:
    """Magnitude image ``(rows, cols)``: root sum of squares of the coil images
    ``ifft2c(kspace)`` (one coil: its magnitude), in the k-space's layout and units."""
    return rss(ifftnc(torch.from_numpy(np.asarray(kspace, np.complex64)), 2), dim=0).numpy()


def _reference_image(
    path: Path, shape: tuple[int, int], slice_index: int | None
) -> tuple[np.ndarray, str, np.ndarray | None]:
    """``(image in the k-space's layout, description, its k-space or None)`` of a
    ``reference=`` file: a real ``.npy`` image of the k-space's matrix, or fully sampled
    k-space in any raw format."""
    if path.suffix.lower() == ".npy" and path.is_file():
        array = np.load(path, allow_pickle=False)
        if not np.iscomplexobj(array) and array.ndim == 2:
            if array.shape != shape:
                raise InvalidInputError(
                    f"reference image {array.shape} does not match the k-space {shape}",
                    path=path,
                    fix="give the reference on the k-space's matrix, in its layout",
                )
            return np.abs(array).astype(np.float32), f"the image in {path.name}", None
    raw = read_raw_kspace(path, slice_index)
    if raw.shape != shape:
        raise InvalidInputError(
            f"reference k-space {raw.shape} does not match the k-space {shape}",
            path=path,
            fix="give the fully sampled k-space of the same slice and matrix",
        )
    fraction = float(sampling_mask_from_zeros(raw.kspace).mean())
    if fraction < 1.0:
        raise InvalidInputError(
            f"the reference k-space is not fully sampled ({100 * fraction:.1f} % of it)",
            path=path,
            fix="give fully sampled k-space (or a reference image as a real .npy)",
        )
    return root_sum_of_squares(raw.kspace), f"root sum of squares of {path.name}", raw.kspace


def _operator_name(n_coils: int, acceleration: float) -> str:
    """The simulated operator whose tuned solver presets fit this measurement best."""
    factor = 4 if acceleration < math.sqrt(32) else 8
    return f"mri_{'multicoil_' if n_coils > 1 else ''}{factor}x"


def _classical_names(preset: Preset, classical: Sequence[str] | None) -> list[str]:
    """The preset's baseline first, then CG-SENSE and l1-wavelet (where installed)."""
    if classical is None:
        from medldm.problems.configs import preset_path
        from medldm.solvers.registry import SOLVERS

        classical = ["cg"]
        if "l1_wavelet" in SOLVERS or preset_path("solver", "l1_wavelet") is not None:
            classical.append("l1_wavelet")
    names = [preset.baseline, *classical]
    return list(dict.fromkeys(str(n) for n in names if n))


def _scores(estimate: np.ndarray, truth: np.ndarray | None) -> dict[str, float]:
    if truth is None:
        return {}
    from medldm.metrics import mean_slice_scores

    scores = mean_slice_scores(estimate, truth)
    return {"psnr_db": scores["psnr"], "ssim": scores["ssim"], "nmse": scores["nmse"]}


# --- the public entry points --------------------------------------------------------------
def reconstruct_kspace(
    kspace: str | Path,
    preset: str | Preset = "mri_brain_4x",
    *,
    mask: str | Path | None = None,
    reference: str | Path | None = None,
    acceleration: float | None = None,
    kspace_slice: int | None = None,
    classical: Sequence[str] | None = None,
    coil_maps_from: str = "acs",
    phase: str = "cg",
    holdout_splits: int | None = None,
    grid_solve: str = "tv",
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
    baseline: bool = True,
    progress: bool = False,
    **overrides: Any,
) -> ReconResult:
    """Reconstruct measured k-space (see the module); what ``medldm-recon kspace=`` runs.

    Parameters
    ----------
    kspace:
        The raw-data file (``.npy``, ``.cfl``, twix ``.dat``, ISMRMRD or fastMRI ``.h5``).
    preset:
        A reconstruction preset (its LDM solver, baseline, prior, grid and intensity rule).
    mask:
        A ``.npy`` sampling mask (``(cols,)`` lines or ``(rows, cols)``; non-zero =
        sampled); default: the file's own, else the non-zero k-space locations.
    reference:
        A reference for the scores: fully sampled k-space (its root sum of squares) or a
        real ``.npy`` image on the k-space's matrix. Automatic for a fully sampled input
        that ``acceleration`` or ``mask`` undersamples.
    acceleration:
        Undersample a fully sampled input retrospectively (fastMRI random lines, seeded).
    kspace_slice:
        Which slice of a multi-slice file (default: the central one).
    classical:
        Classical solvers to run besides the preset's baseline (default: CG-SENSE, and
        l1-wavelet where installed); ``baseline=False`` runs none.
    coil_maps_from:
        ``"acs"`` (default): the measured data's fully sampled centre; ``"reference"``:
        ESPIRiT on the fully sampled reference k-space (oracle maps, for retrospective
        experiments whose few centre lines cannot calibrate many coils; reported as such).
    phase:
        ``"cg"`` (default): solvers that reconstruct a real magnitude behind a phase map
        (the LDM solvers, TV: ``phase="lowres"`` in their presets) get the phase of the
        CG-SENSE estimate; ``"lowres"``: their own low-resolution phase estimate.
    holdout_splits:
        k-space hold-out splits (:mod:`medldm.physics.holdout`): every method is also
        reconstructed from 90 % of the samples and scored on the other 10 %, the no-reference
        quality score. Default: 5 when there is no reference, 0 (off) when there is one.
    grid_solve:
        When the prior's grid differs from the measured one, the prior's estimate anchors a
        final solve on the measured grid: ``"tv"`` (default; with the LDM preset's final TV
        weight), ``"least_squares"`` or ``"none"`` (the Fourier-resampled estimate as it
        is; it misfits what the measured grid holds beyond the prior's). Chosen on
        validation slices by ``benchmarks/measured_grid_solve.py``.
    device, precision, seed, progress:
        ``"auto"`` picks the GPU when present; the prior's network precision (``auto``,
        ``fp32``, ``bf16``); the seed of a retrospective mask and of the sampler; progress
        bars.
    overrides:
        Preset fields (``prior=``, ``solver=``, ``grid={...}``, ``solver_options={...}``).
    """
    from medldm.models.prior import resolve_device
    from medldm.solvers import needs_prior

    started = time.perf_counter()
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    preset = preset.with_overrides(**overrides)
    torch_device = resolve_device(device)
    prior = (
        resolve_prior(preset.prior, torch_device, precision) if needs_prior(preset.solver) else None
    )
    return reconstruct_measured(
        kspace,
        mask,
        preset,
        None,
        prior,
        torch_device,
        seed,
        baseline,
        progress,
        started,
        reference=reference,
        acceleration=acceleration,
        kspace_slice=kspace_slice,
        classical=classical,
        coil_maps_from=coil_maps_from,
        phase=phase,
        holdout_splits=holdout_splits,
        grid_solve=grid_solve,
    )


def reconstruct_measured(
    kspace_path: Any,
    mask_path: Any,
    preset: Preset,
    solver: Any,
    prior: Any,
    device: torch.device,
    seed: int,
    baseline: bool,
    progress: bool,
    started: float,
    *,
    reference: Any = None,
    acceleration: float | None = None,
    kspace_slice: int | None = None,
    classical: Sequence[str] | None = None,
    coil_maps_from: str = "acs",
    phase: str = "cg",
    holdout_splits: int | None = None,
    grid_solve: str = "tv",
) -> ReconResult:
    """The measured-data path of :func:`medldm.recon.pipeline.reconstruct` and of
    :func:`reconstruct_kspace` (``solver`` is rebuilt from the preset for the measured
    operator; the argument is kept for the pipeline's call). Stages: read and mask,
    reference, coil maps, intensities, the prior's grid, solve every method, k-space
    hold-out, scores."""
    del solver  # rebuilt below with the presets tuned for the measured operator
    if phase not in ("cg", "lowres"):
        raise InvalidInputError(f"unknown phase {phase!r}", fix="use 'cg' or 'lowres'")
    if coil_maps_from not in ("acs", "reference"):
        raise InvalidInputError(
            f"unknown coil_maps_from {coil_maps_from!r}", fix="use 'acs' or 'reference'"
        )
    if grid_solve not in GRID_SOLVES:
        raise InvalidInputError(
            f"unknown grid_solve {grid_solve!r}", fix=f"use one of {', '.join(GRID_SOLVES)}"
        )
    raw = read_raw_kspace(kspace_path, kspace_slice)
    mask, mask_source = _sampling_mask(raw, mask_path, acceleration, seed)
    truth_picture, reference_info, reference_kspace = _reference_for(
        raw, mask, reference, kspace_slice
    )
    measured = (raw.kspace * mask[None]).astype(np.complex64)
    physics, maps_text, maps_seconds = _measured_physics(
        raw, mask, measured, reference_kspace, coil_maps_from
    )
    zero_filled = root_sum_of_squares(measured)
    normalization = fit_intensity(intensity_rule(prior, preset.intensity), zero_filled, RAW_UNIT)
    scale = normalization.scale
    y = (torch.from_numpy(measured) / scale)[None].to(device)
    physics = physics.to(device)
    plan = GridPlan.make(
        (1, *raw.shape), raw.spacing_mm, size=preset.grid_size, spacing_mm=preset.grid_spacing
    )
    methods = _MeasuredMethods(
        preset=preset,
        prior=prior,
        plan=plan,
        operator=_operator_name(raw.n_coils, 1.0 / float(mask.mean())),
        phase=phase,
        classical=_classical_names(preset, classical) if baseline else [],
        device=device,
        seed=int(seed),
        grid_solve=grid_solve,
    )
    solved = methods.solve(y, physics)
    n_splits = (0 if truth_picture is not None else 5) if holdout_splits is None else holdout_splits
    holdout = _holdout_scores(methods, y, physics, mask, n_splits, progress)

    def to_stack(native: torch.Tensor) -> np.ndarray:
        """A native-grid estimate (1, 1, rows, cols) -> model-view stack in input units."""
        magnitude = native.detach().abs().to("cpu", torch.float32).numpy()[0]
        return picture_to_model(magnitude) * scale

    truth = None if truth_picture is None else picture_to_model(truth_picture)[None]
    images = {name: to_stack(method.estimate) for name, method in solved.items()}
    ldm = solved[methods.ldm_name]
    std = np.zeros_like(images[methods.ldm_name])
    if ldm.reconstruction.std is not None:
        std = ldm.reconstruction.std.detach().abs().to("cpu", torch.float32).numpy()[:, 0]
        std = np.abs(plan.from_working(std)) * scale
    direct = picture_to_model(zero_filled)[None]
    context = {
        "raw": raw,
        "mask": mask,
        "mask_source": mask_source,
        "maps_text": maps_text,
        "maps_seconds": maps_seconds,
        "normalization": normalization,
        "reference_info": reference_info,
        "seed": int(seed),
        "device": device,
        "physics": physics,
        "y": y,
    }
    metrics = _measured_metrics(methods, solved, images, truth, direct, holdout, context)
    metrics["total_seconds"] = round(time.perf_counter() - started, 3)
    estimate = images.pop(methods.ldm_name)
    source = _source_image(raw)
    return ReconResult(
        preset=preset,
        source=source,
        canonical=source,
        slab_start=0,
        truth=truth,
        reconstruction=estimate.astype(np.float32),
        std=np.asarray(std, np.float32),
        direct=direct.astype(np.float32),
        baseline=images.pop(preset.baseline, None) if baseline else None,
        other_baselines=images,
        measurement=measured,
        sampling_mask=mask,
        metrics=metrics,
        grid=plan,
        simulated=False,
        notes=[raw.describe(), *raw.notes, metrics["grid"], maps_text],
    )


# --- stages of the measured path ----------------------------------------------------------
def _sampling_mask(
    raw: RawKSpace, mask_path: Any, acceleration: float | None, seed: int
) -> tuple[np.ndarray, str]:
    """The sampling mask and where it came from (``mask=``, a retrospective
    ``acceleration=``, the file's own mask, or the non-zero k-space locations)."""
    file_mask = sampling_mask_from_zeros(raw.kspace)
    if mask_path is not None:
        mask, source = _read_mask(Path(mask_path), raw.shape), f"mask= ({Path(mask_path).name})"
    elif acceleration is not None:
        if not file_mask.all():
            raise InvalidInputError(
                f"acceleration= undersamples fully sampled k-space, but this file holds "
                f"{100 * file_mask.mean():.1f} % of its k-space",
                path=raw.path,
                fix="drop acceleration= (the file's own sampling is used)",
            )
        mask = retrospective_mask(raw.shape, acceleration, raw.phase_encode_axis, seed)
        axis = {0: "rows", 1: "columns"}.get(raw.phase_encode_axis, "columns (axis unknown)")
        source = (
            f"retrospective fastMRI random lines along the {axis}, {acceleration:g}x, "
            f"centre fraction {0.32 / float(acceleration):.3g}, seed {seed}"
        )
    elif raw.mask is not None:
        mask, source = raw.mask, "the file's own mask"
    else:
        mask, source = file_mask, "the non-zero k-space locations"
    if not mask.any():
        raise InvalidInputError("the sampling mask samples nothing", path=mask_path or raw.path)
    return mask, source


def _reference_for(
    raw: RawKSpace, mask: np.ndarray, reference: Any, kspace_slice: int | None
) -> tuple[np.ndarray | None, dict[str, str] | None, np.ndarray | None]:
    """The reference picture, its description and its k-space: ``reference=``, else the
    fully sampled input itself when the mask undersamples it, else none."""
    if reference is not None:
        picture, text, kspace = _reference_image(Path(reference), raw.shape, kspace_slice)
        return picture, {"kind": "file", "description": text}, kspace
    if sampling_mask_from_zeros(raw.kspace).all() and not mask.all():
        info = {
            "kind": "retrospective",
            "description": "root sum of squares of the fully sampled input's coil images",
        }
        return root_sum_of_squares(raw.kspace), info, raw.kspace
    return None, None, None


def _measured_physics(
    raw: RawKSpace,
    mask: np.ndarray,
    measured: np.ndarray,
    reference_kspace: np.ndarray | None,
    coil_maps_from: str,
) -> tuple[LinearPhysics, str, float]:
    """The operator on the k-space's own grid, how its coil maps were made and their time."""
    from medldm.physics.mri import MultiCoilMRI, SingleCoilMRI

    if raw.n_coils == 1:
        return SingleCoilMRI(torch.from_numpy(mask.copy())), "single coil: no maps", 0.0
    start = time.perf_counter()
    if coil_maps_from == "reference":
        if reference_kspace is None:
            raise InvalidInputError(
                "coil_maps_from=reference needs fully sampled reference k-space",
                path=raw.path,
                fix="undersample a fully sampled file (acceleration=) or give "
                "reference=<fully sampled k-space>; else use coil_maps_from=acs",
            )
        full = np.ones(raw.shape, bool)
        maps, text = coil_maps(torch.from_numpy(reference_kspace), full)
        text = "ORACLE maps from the fully sampled reference: " + text
    else:
        maps, text = coil_maps(torch.from_numpy(measured), mask)
    physics = MultiCoilMRI(torch.from_numpy(mask.copy()), maps)
    return physics, text, time.perf_counter() - start


@dataclass
class _Solved:
    """One method's estimate on the k-space's own grid and how it was made."""

    estimate: torch.Tensor
    reconstruction: Any
    seconds: float
    source: str
    magnitude: bool
    solver: Any = None


@dataclass
class _MeasuredMethods:
    """The LDM solver and the classical solvers of a measured run, solvable on any mask
    (the whole measurement, or the kept part of a hold-out split)."""

    preset: Preset
    prior: Any
    plan: GridPlan
    operator: str
    phase: str
    classical: list[str]
    device: torch.device
    seed: int
    grid_solve: str = "tv"

    @property
    def ldm_name(self) -> str:
        return str(self.preset.solver)

    def build(self, name: str, options: dict[str, Any] | None = None) -> tuple[Any, str, bool]:
        """The solver preset tuned for the operator; a magnitude solver (``phase="lowres"``)
        is rebuilt without its own phase estimate, as it gets the CG-SENSE phase."""
        from medldm.problems.configs import solver_for_operator

        solver, source = solver_for_operator(name, self.operator, options)
        magnitude = self.phase == "cg" and getattr(solver, "phase", None) == "lowres"
        if magnitude:
            solver, source = solver_for_operator(
                name, self.operator, {**(options or {}), "phase": None}
            )
        return solver, source, magnitude

    def solve(self, y: torch.Tensor, physics: LinearPhysics) -> dict[str, _Solved]:
        """Every method on ``y``: the LDM (on the prior's grid) first, then the classical
        ones (CG-SENSE always runs: it gives the magnitude solvers their phase)."""
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        cg = self._timed("cg", None, y, physics, None, generator)
        phase_native = _unit_phase(cg.estimate)
        working = PriorGridMRI(physics, self.plan).to(self.device)
        with torch.no_grad():
            phase_working = _unit_phase(working.from_native(cg.estimate))
        solved = {}
        ldm = self._timed(
            self.ldm_name, self.preset.solver_options, y, working, phase_working, generator
        )
        with torch.no_grad():
            ldm.estimate = working.to_native(ldm.estimate)
        if self.plan.resampled and self.grid_solve != "none":
            start = time.perf_counter()
            ldm.estimate = self.on_measured_grid(y, physics, ldm, phase_native)
            ldm.seconds += time.perf_counter() - start
        solved[self.ldm_name] = ldm
        for name in self.classical:
            if name == "cg":
                solved[name] = cg
            else:
                solved[name] = self._timed(name, None, y, physics, phase_native, generator)
        return solved

    def on_measured_grid(
        self, y: torch.Tensor, physics: LinearPhysics, ldm: _Solved, phase: torch.Tensor
    ) -> torch.Tensor:
        """The prior's estimate, Fourier-resampled from the prior's grid, anchors a final
        data-consistent solve on the measured grid, so that the output holds what the
        measured k-space holds beyond the prior's grid: ``grid_solve="tv"``,
        ``argmin 1/2||A x - y||^2 + lam/2||x - anchor||^2 + tv TV(x)`` with the LDM
        preset's ``final_tv_weight`` (:func:`~medldm.solvers.anchored_tv.anchored_tv`), or
        ``"least_squares"``, the same without TV (CG; what the data leaves open stays at
        the anchor); ``lam = final_dc_weight * ||A^H A||``."""
        from medldm.solvers.anchored_tv import anchored_tv

        weight = float(getattr(ldm.solver, "final_dc_weight", 0.01))
        tv_weight = float(getattr(ldm.solver, "final_tv_weight", 0.0))
        with torch.no_grad():
            if ldm.magnitude:  # a real magnitude behind the CG-SENSE phase
                solver_physics = PhaseConstrained(physics, phase)
                anchor = (ldm.estimate * torch.conj(phase)).real.clamp_min(0).to(torch.float32)
            else:
                solver_physics, anchor = physics, ldm.estimate
            lam = weight * max(solver_physics.norm(anchor) ** 2, 1e-12)
            if self.grid_solve == "tv" and ldm.magnitude:
                estimate = anchored_tv(y, solver_physics, anchor, weight, tv_weight)
            else:
                estimate = solver_physics.prox_l2(anchor, y, lam, n_iter=50)
            if ldm.magnitude:
                return estimate.clamp_min(0).to(phase.dtype) * phase
        return estimate

    def _timed(
        self,
        name: str,
        options: dict[str, Any] | None,
        y: torch.Tensor,
        physics: LinearPhysics,
        phase: torch.Tensor | None,
        generator: torch.Generator,
    ) -> _Solved:
        """Solve with one method; a magnitude solver sees ``physics`` behind ``phase``."""
        solver, source, magnitude = self.build(name, options)
        magnitude = magnitude and phase is not None
        prior = self.prior if name == self.ldm_name else None
        start = time.perf_counter()
        solver_physics = PhaseConstrained(physics, phase) if magnitude else physics
        rec = solver.solve(y, solver_physics, prior, generator=generator)
        estimate = rec.estimate.to(phase.dtype) * phase if magnitude else rec.estimate
        return _Solved(estimate, rec, time.perf_counter() - start, source, magnitude, solver)


def _holdout_scores(
    methods: _MeasuredMethods,
    y: torch.Tensor,
    physics: LinearPhysics,
    mask: np.ndarray,
    n_splits: int,
    progress: bool,
) -> dict[str, Any] | None:
    """k-space hold-out (:mod:`medldm.physics.holdout`): every method reconstructs from 90 %
    of the samples, ``n_splits`` seeded splits, and is scored on the other 10 %."""
    from tqdm import tqdm

    from medldm.physics.holdout import holdout_error, holdout_splits, line_axis, summarize

    if n_splits <= 0:
        return None
    centre = calibration_region(mask)
    splits = holdout_splits(
        mask, n_splits=n_splits, fraction=0.1, keep_centre=centre, seed=methods.seed
    )
    errors: dict[str, list[float]] = {}
    for split in tqdm(splits, desc="k-space hold-out", disable=not progress):
        kept = split.kept.to(y.device)
        solved = methods.solve(y * kept, physics.with_mask(kept))
        for name, method in solved.items():
            error = holdout_error(physics, method.estimate, y, split.held.to(y.device))
            errors.setdefault(name, []).append(error)
    unit = "locations" if line_axis(torch.as_tensor(mask)) is None else "whole lines"
    result = {
        "description": f"each method reconstructed from the kept part of {n_splits} seeded "
        f"splits that hold out {100 * splits[0].held_fraction:.1f} % of the sampled {unit} "
        f"(drawn uniformly outside the {centre[0]}x{centre[1]} calibration centre), scored "
        "by ||held-out k-space - prediction|| / ||held-out k-space|| (lower is better)",
        "methods": {name: summarize(values) for name, values in errors.items()},
    }
    classical = [name for name in errors if name != methods.ldm_name]
    if classical:  # paired over the same splits: the split-to-split spread cancels
        best = min(classical, key=lambda name: float(np.mean(errors[name])))
        ldm = np.asarray(errors[methods.ldm_name])
        result["best_classical"] = best
        result["ldm_minus_best_classical"] = summarize(ldm - np.asarray(errors[best]))
    return result


def _measured_metrics(
    methods: _MeasuredMethods,
    solved: dict[str, _Solved],
    images: dict[str, np.ndarray],
    truth: np.ndarray | None,
    direct: np.ndarray,
    holdout: dict[str, Any] | None,
    context: dict[str, Any],
) -> dict[str, Any]:
    """``metrics.json`` of a measured run (see the module docstring for the fields)."""
    raw, normalization = context["raw"], context["normalization"]
    reference_info = context["reference_info"]
    ldm = solved[methods.ldm_name]
    accel = 1.0 / float(context["mask"].mean())
    n_coils = raw.n_coils
    holdout_methods = (holdout or {}).get("methods", {})
    metrics: dict[str, Any] = {
        "preset": methods.preset.name,
        "solver": methods.ldm_name,
        "solver_preset": ldm.source,
        "prior": getattr(methods.prior, "name", None),
        "baseline_solver": methods.preset.baseline if methods.classical else None,
        "physics": (
            f"measured {n_coils}-coil Cartesian k-space"
            + (" (SENSE)" if n_coils > 1 else "")
            + f", {accel:.2f}x ({100 / accel:.1f} % sampled)"
        ),
        "input": raw.describe(),
        "reading": raw.notes,
        "sampling_mask": context["mask_source"],
        "acceleration": round(accel, 3),
        "coil_maps": context["maps_text"],
        "coil_maps_seconds": round(context["maps_seconds"], 3),
        "tuned_for": methods.operator,
        "slices": 1,
        "volume_mode": False,
        "grid": _grid_text(methods.plan) + _grid_solve_text(methods),
        "orientation": "the k-space's image is taken with row 0 at the top (anterior); "
        "rows are reversed into the model view (rows towards A) and back for the outputs",
        "intensity": f"{methods.preset.intensity}: {normalization.method or 'rule'} fitted to "
        f"the zero-filled root-sum-of-squares image: low {normalization.low:.6g}, high "
        f"{normalization.high:.6g} ({RAW_UNIT}); k-space divided by high - low = "
        f"{normalization.scale:.6g} (the offset low is not subtracted: k-space is linear), "
        "outputs multiplied back",
        "convention": "measured data: relative data residual ||A x - y|| / ||y|| on the "
        "measured k-space for every method"
        + (
            "; PSNR/SSIM/NMSE of magnitudes against the reference ("
            + reference_info["description"]
            + "), data range = its max - min, whole image"
            if reference_info
            else "; no reference, so no PSNR/SSIM"
        ),
        "reference": reference_info,
        "seed": context["seed"],
        "device": str(context["device"]),
        "ldm": {
            "nfe": ldm.reconstruction.nfe,
            "seconds": round(ldm.seconds, 3),
            "residual": context["physics"].residual(ldm.estimate, context["y"]),
            "residual_on_prior_grid": ldm.reconstruction.residual,
            "residual_over_noise": ldm.reconstruction.residual_over_noise,
            "n_samples": ldm.reconstruction.info.get("n_samples"),
            **_scores(images[methods.ldm_name], truth),
            **_holdout_entry(holdout_methods.get(methods.ldm_name)),
        },
        "direct": {
            "image": "root sum of squares of the zero-filled coil images",
            **_scores(direct, truth),
        },
        "classical": {
            name: {
                "seconds": round(solved[name].seconds, 3),
                "residual": solved[name].reconstruction.residual,
                "preset": solved[name].source,
                **_scores(images[name], truth),
                **_holdout_entry(holdout_methods.get(name)),
            }
            for name in methods.classical
        },
        "kspace_holdout": holdout,
    }
    magnitude = [name for name, method in solved.items() if method.magnitude]
    metrics["phase"] = (
        f"{', '.join(magnitude)}: a real magnitude behind the phase of the CG-SENSE "
        f"estimate ({solved['cg'].source if 'cg' in solved else 'cg'}) instead of their own "
        "low-resolution phase (a Gaussian k-space window of 4 % of the matrix, too coarse "
        "for the coil-combined phase of measured multi-coil data)"
        if magnitude
        else "every solver estimates a complex image (or its own phase)"
    )
    _add_comparisons(metrics, methods.preset.baseline, truth is not None)
    return metrics


def _grid_solve_text(methods: _MeasuredMethods) -> str:
    """What was done on the measured grid after the prior's estimate, for the record."""
    if not methods.plan.resampled:
        return ""
    if methods.grid_solve == "none":
        return "; the prior's estimate was Fourier-resampled to the measured grid as it is"
    what = "least-squares" if methods.grid_solve == "least_squares" else "TV-regularised"
    return (
        f"; the prior's estimate, Fourier-resampled to the measured grid, anchored a final "
        f"{what} data-consistent solve there (grid_solve={methods.grid_solve}, weight: the "
        "LDM preset's final_dc_weight), so the output keeps the measured grid's detail"
    )


def _holdout_entry(summary: dict[str, Any] | None) -> dict[str, float]:
    """The hold-out mean and spread of one method, for its row in ``metrics.json``."""
    if summary is None:
        return {}
    return {"holdout_error": summary["mean"], "holdout_error_std": summary["std"]}


def _add_comparisons(metrics: dict[str, Any], baseline: str | None, scored: bool) -> None:
    """The baseline's row, the best classical method and the LDM's lead over both."""
    classical = metrics["classical"]
    if baseline in classical:
        metrics["baseline"] = classical[baseline]
    if not (scored and classical):
        return
    best = max(classical, key=lambda n: classical[n]["psnr_db"])
    metrics["best_classical"] = best
    metrics["ldm_minus_best_classical_psnr_db"] = (
        metrics["ldm"]["psnr_db"] - classical[best]["psnr_db"]
    )
    if "baseline" in metrics:
        metrics["ldm_minus_baseline_psnr_db"] = (
            metrics["ldm"]["psnr_db"] - metrics["baseline"]["psnr_db"]
        )


def _unit_phase(image: torch.Tensor) -> torch.Tensor:
    """``exp(i angle(image))`` (complex), 1 where the image is (numerically) zero."""
    image = image.detach()
    if not image.is_complex():
        image = image.to(torch.complex64)
    magnitude = image.abs()
    floor = 1e-6 * float(magnitude.max()) or 1e-30
    return torch.where(magnitude > floor, image / magnitude.clamp_min(floor), 1.0 + 0.0j).to(
        image.dtype
    )


def _grid_text(plan: GridPlan) -> str:
    """The grid plan in words, with the resampling this path does (Fourier, not linear)."""
    return plan.describe().replace(
        "RESAMPLED (linear)", "RESAMPLED (Fourier: k-space cropped / zero-padded)"
    )


def _source_image(raw: RawKSpace) -> MedImage:
    """A geometry-only stand-in for the input: ``[x, y, 1]`` with the pixel spacing (x =
    columns, y = rows of the model view) and the slice thickness when the file has one."""
    rows, cols = raw.shape
    thickness = float(raw.metadata.get("slice_thickness_mm") or 1.0)
    affine = np.diag([raw.spacing_mm[1], raw.spacing_mm[0], thickness, 1.0])
    metadata = {
        "format": "measured-kspace",
        "kspace_format": raw.format,
        "source_path": str(raw.path),
        "pixel_spacing_from_file": raw.spacing_from_file,
    }
    return MedImage(
        np.zeros((cols, rows, 1), np.float32),
        affine,
        axes=("x", "y", "z"),
        modality="MR",
        unit=RAW_UNIT,
        metadata=metadata,
    )
