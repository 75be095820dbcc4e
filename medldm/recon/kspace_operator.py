"""The measured MRI operator (the ``measure`` stage of measured k-space): coil maps from the
k-space's centre (:func:`coil_maps`) and the operator on the k-space's own grid
(:func:`measured_physics`). The solvers see it from the prior's working grid through
:class:`~medldm.recon.kspace_prior_grid.PriorGridMRI`.

Coil maps (several coils): ESPIRiT (:func:`medldm.physics.coils.estimate_sensitivities`)
on the largest fully sampled centred block of the mask, with the largest kernel (6 down to
3) the block supports (at least as many kernel positions as the kernel's size along each
axis); a block under 5 lines wide, or ESPIRiT maps that leave more than 5 % of the
object's signal uncovered (``coils.map_coverage``: too few lines for the coils), fall back
to low-resolution maps (``rss_lowres``), and say so.

Example
-------
>>> espirit_kernel((24, 24), n_coils=8), espirit_kernel((9, 32), n_coils=8)
(6, 5)
>>> espirit_kernel((4, 32), n_coils=8) is None  # too narrow: low-resolution maps
True
"""

from __future__ import annotations

import time

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import LinearPhysics
from medldm.physics.coils import calibration_region
from medldm.recon.kspace_input import KSpaceInput

#: ESPIRiT kernel sizes tried, largest first (BART's ecalib uses 6).
ESPIRIT_KERNELS = (6, 5, 4, 3)
#: The fraction of the object's signal (:func:`medldm.physics.coils.map_coverage`) that
#: ESPIRiT's maps must cover; below it the calibration failed (too few lines for the
#: coils) and low-resolution maps are used instead. On the 32-coil phantom at 4x (5 centre
#: lines) ESPIRiT covered 0.60, and SENSE on those maps fell to 6 dB.
ESPIRIT_MIN_COVERAGE = 0.95


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


def measured_physics(read: KSpaceInput, coil_maps_from: str) -> tuple[LinearPhysics, str, float]:
    """The operator on the k-space's own grid, how its coil maps were made (from the
    measured data's centre, ``"acs"``, or the fully sampled reference) and their time."""
    from medldm.physics.mri import MultiCoilMRI, SingleCoilMRI

    raw, mask = read.raw, read.mask
    if raw.n_coils == 1:
        return SingleCoilMRI(torch.from_numpy(mask.copy())), "single coil: no maps", 0.0
    start = time.perf_counter()
    if coil_maps_from == "reference":
        if read.reference_kspace is None:
            raise InvalidInputError(
                "coil_maps_from=reference needs fully sampled reference k-space",
                path=raw.path,
                fix="undersample a fully sampled file (acceleration=) or give "
                "reference=<fully sampled k-space>; else use coil_maps_from=acs",
            )
        full = np.ones(raw.shape, bool)
        maps, text = coil_maps(torch.from_numpy(read.reference_kspace), full)
        text = "ORACLE maps from the fully sampled reference: " + text
    else:
        maps, text = coil_maps(torch.from_numpy(read.measured), mask)
    physics = MultiCoilMRI(torch.from_numpy(mask.copy()), maps)
    return physics, text, time.perf_counter() - start
