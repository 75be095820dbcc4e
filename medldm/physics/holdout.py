"""k-space hold-out: a quality score for reconstructions of measured k-space with no reference.

As the self-supervised split of SSDU (Yaman et al. 2020, "Self-supervised learning of
physics-guided reconstruction neural networks without fully sampled reference data"), the
measured samples are split in two: a larger *kept* part that a method reconstructs from, and
a *held-out* part it never sees. The estimate's predicted k-space is compared with the
held-out samples::

    e = || M_h A_full(x_kept) - M_h y || / || M_h y ||

where ``M_h`` selects the held-out samples. The held-out part is drawn uniformly at random
*outside* the fully sampled calibration centre (the centre stays in the kept part, so coil
maps and low frequencies are unchanged), one seeded draw per split; several splits give a
mean and a spread. What is drawn follows the acquisition, so that the held-out samples
are missing the way the unsampled ones are: whole phase-encode lines of a Cartesian line
mask (a point on an otherwise kept line would be easier to predict than a missing line),
single locations of a 2D pattern (Poisson disc, variable density). Measurement noise in
the held-out samples sets a floor under ``e``, the same for every method, so it ranks
methods on one scan rather than measuring their error exactly.

``e`` measures how well a method predicts the k-space it did not see
(``tests/test_holdout.py``: it ranks methods as their true error on the unsampled k-space
does). A method can also misfit what it did see, as an over-smoothing regulariser does;
that shows in its data residual ``||A x - y|| / ||y||``, reported beside it, not in ``e``.

Example
-------
>>> import torch
>>> from medldm.physics.mri import SingleCoilMRI, fft2c
>>> from medldm.physics.masks import RandomLineMask
>>> mask = RandomLineMask(4)((64, 64), generator=torch.Generator().manual_seed(0))
>>> line_axis(mask)  # phase-encode lines along the columns: whole lines are held out
1
>>> splits = holdout_splits(mask, n_splits=3, fraction=0.1, keep_centre=(64, 5), seed=0)
>>> [bool((s.kept & s.held).any()) for s in splits]  # disjoint parts
[False, False, False]
>>> bool(all(((s.kept | s.held) == mask).all() for s in splits))  # together: the mask
True
>>> x = torch.rand(1, 1, 64, 64)
>>> y = SingleCoilMRI(mask).A(x)
>>> holdout_error(SingleCoilMRI(mask), x, y, splits[0].held) < 1e-6  # the truth predicts it
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medldm.errors import InvalidInputError


@dataclass(frozen=True)
class HoldoutSplit:
    """One split of a sampling mask: ``kept | held == mask``, ``kept & held`` empty."""

    kept: torch.Tensor
    held: torch.Tensor
    seed: int
    #: unsampled units (lines of a line mask, else locations) per held-out unit
    unsampled_per_held: float

    @property
    def held_fraction(self) -> float:
        """Held-out samples over all sampled locations."""
        total = int(self.kept.sum()) + int(self.held.sum())
        return int(self.held.sum()) / total


def holdout_splits(
    mask: torch.Tensor | np.ndarray,
    *,
    n_splits: int = 5,
    fraction: float = 0.1,
    keep_centre: Sequence[int] = (0, 0),
    seed: int = 0,
) -> list[HoldoutSplit]:
    """``n_splits`` seeded hold-out splits of the sampled locations of a 2D ``mask``.

    ``fraction`` of the sampled lines (a line mask, :func:`line_axis`) or locations (any
    other mask) is held out, drawn uniformly at random from those outside the centred
    ``keep_centre`` block (``(rows, cols)``, e.g. the fully sampled
    calibration region of :func:`medldm.physics.coils.calibration_region`), which always
    stays in the kept part. Split ``i`` uses seed ``seed + i``.
    """
    mask = torch.as_tensor(np.asarray(mask) if isinstance(mask, np.ndarray) else mask).bool()
    if mask.ndim != 2:
        raise InvalidInputError(f"hold-out splits take a 2D mask, got shape {tuple(mask.shape)}")
    if not 0 < fraction < 0.5:
        raise InvalidInputError(
            f"hold-out fraction must be in (0, 0.5), got {fraction}", fix="use e.g. 0.1"
        )
    if n_splits < 1:
        raise InvalidInputError(f"n_splits must be >= 1, got {n_splits}")
    candidates = mask & ~_centre_block(mask.shape, keep_centre)
    axis = line_axis(mask)
    # the units drawn: whole lines of a line mask (what its acquisition left out), else points
    units = candidates.any(dim=0) if axis == 1 else candidates.any(dim=1) if axis == 0 else None
    pool = candidates.flatten() if units is None else units
    indices = torch.nonzero(pool).flatten()
    total = int(mask.sum()) if units is None else int(mask.any(dim=1 - axis).sum())
    n_held = round(fraction * total)
    if n_held < 1 or n_held > len(indices):
        what = "locations" if units is None else "lines"
        raise InvalidInputError(
            f"cannot hold out {n_held} of the {len(indices)} sampled {what} outside the "
            f"calibration centre {tuple(keep_centre)}",
            fix="sample more k-space outside the centre, or lower the fraction",
        )
    splits = []
    for i in range(n_splits):
        generator = torch.Generator().manual_seed(seed + i)
        chosen = indices[torch.randperm(len(indices), generator=generator)[:n_held]]
        picked = torch.zeros(pool.numel(), dtype=torch.bool)
        picked[chosen] = True
        if units is None:
            held = picked.reshape(mask.shape)
        else:
            held = candidates & (picked[None, :] if axis == 1 else picked[:, None])
        unsampled = int((~mask).sum()) if units is None else int((~mask.any(dim=1 - axis)).sum())
        splits.append(HoldoutSplit(mask & ~held, held, seed + i, unsampled / n_held))
    return splits


def line_axis(mask: torch.Tensor) -> int | None:
    """The axis a Cartesian line mask varies along: 1 when every column is either fully
    sampled or empty (phase-encode lines along the columns), 0 for rows, else None (a 2D
    pattern such as a Poisson disc)."""
    columns_whole = bool(((mask.all(dim=0)) | (~mask.any(dim=0))).all())
    rows_whole = bool(((mask.all(dim=1)) | (~mask.any(dim=1))).all())
    if columns_whole and not rows_whole:
        return 1
    if rows_whole and not columns_whole:
        return 0
    return None


def _centre_block(shape: Sequence[int], sides: Sequence[int]) -> torch.Tensor:
    """A centred box of ``sides`` (start ``(n - side + 1) // 2``, the fastMRI centre)."""
    from medldm.physics.coils import _centre_start

    block = torch.zeros(tuple(shape), dtype=torch.bool)
    index = tuple(
        slice(_centre_start(n, side), _centre_start(n, side) + side)
        for n, side in zip(shape, sides, strict=True)
    )
    block[index] = True
    return block


def holdout_error(physics, estimate: torch.Tensor, y: torch.Tensor, held: torch.Tensor) -> float:
    """``|| M_h A(x) - M_h y || / || M_h y ||`` for an MRI operator ``physics`` (any
    :class:`~medldm.physics.mri.SingleCoilMRI` / ``MultiCoilMRI``; its own mask is
    replaced by ``held``), an estimate ``x`` on its grid and the measured k-space ``y``."""
    error, signal = _energies(physics.with_mask(held), estimate, y)
    return math.sqrt(error / max(signal, 1e-30))


def _energies(physics, estimate: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """``||M A x - M y||^2`` and ``||M y||^2`` on the operator's own mask ``M``."""
    with torch.no_grad():
        predicted = physics.A(estimate.to(y.device))
        observed = y * physics.mask.to(y.device, y.real.dtype)
        error = torch.linalg.vector_norm(predicted - observed) ** 2
        signal = torch.linalg.vector_norm(observed) ** 2
    return float(error), float(signal)


def summarize(errors: Sequence[float]) -> dict[str, float | int | list[float]]:
    """Mean, standard deviation, min and max over the splits, with the per-split values."""
    values = np.asarray(errors, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "n_splits": len(values),
        "splits": [float(v) for v in values],
    }
