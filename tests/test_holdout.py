"""k-space hold-out: the splits, the error, and that it ranks methods as the true error does."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medldm.errors import InvalidInputError
from medldm.metrics import nmse
from medldm.physics.coils import birdcage_sensitivities, calibration_region
from medldm.physics.holdout import (
    holdout_error,
    holdout_splits,
    line_axis,
)
from medldm.physics.masks import RandomLineMask
from medldm.physics.mri import MultiCoilMRI, SingleCoilMRI
from medldm.physics.noise import GaussianNoise
from medldm.solvers.tv import TotalVariation


def _line_mask(shape=(96, 96), acceleration=4, seed=0) -> torch.Tensor:
    return RandomLineMask(acceleration)(shape, generator=torch.Generator().manual_seed(seed))


def test_splits_partition_the_mask_and_keep_the_calibration_centre():
    mask = _line_mask()
    centre = calibration_region(mask.numpy())
    splits = holdout_splits(mask, n_splits=4, fraction=0.1, keep_centre=centre, seed=7)
    rows, cols = centre
    r0, c0 = (96 - rows + 1) // 2, (96 - cols + 1) // 2
    for split in splits:
        assert not (split.kept & split.held).any()
        assert torch.equal(split.kept | split.held, mask)
        assert not split.held[r0 : r0 + rows, c0 : c0 + cols].any()
        assert split.held_fraction == pytest.approx(0.1, abs=0.5 / int(mask.any(0).sum()))
        held_lines = split.held.any(dim=0)
        assert torch.equal(split.held[:, held_lines], mask[:, held_lines])  # whole lines
    assert len({tuple(torch.nonzero(s.held).flatten().tolist()) for s in splits}) == 4
    again = holdout_splits(mask, n_splits=4, fraction=0.1, keep_centre=centre, seed=7)
    assert all(torch.equal(a.held, b.held) for a, b in zip(splits, again, strict=True))


def test_a_2d_sampling_pattern_is_held_out_point_by_point():
    mask = torch.rand(64, 64, generator=torch.Generator().manual_seed(0)) < 0.25
    mask[28:36, 28:36] = True
    assert line_axis(mask) is None and line_axis(_line_mask()) == 1
    assert line_axis(_line_mask().T) == 0
    (split,) = holdout_splits(mask, n_splits=1, keep_centre=(8, 8))
    assert split.held_fraction == pytest.approx(0.1, abs=1 / int(mask.sum()))
    assert not split.held[28:36, 28:36].any() and torch.equal(split.kept | split.held, mask)


def test_bad_splits_are_refused_with_the_fix():
    mask = _line_mask()
    with pytest.raises(InvalidInputError, match="fraction"):
        holdout_splits(mask, fraction=0.6)
    with pytest.raises(InvalidInputError, match="2D mask"):
        holdout_splits(mask[None])
    with pytest.raises(InvalidInputError, match="outside the calibration centre"):
        holdout_splits(mask, keep_centre=mask.shape)  # nothing left to hold out


def test_with_mask_leaves_the_original_operator_alone():
    maps = birdcage_sensitivities(4, (32, 32))
    full = torch.ones(32, 32, dtype=torch.bool)
    physics = MultiCoilMRI(full, maps)
    half = full.clone()
    half[:, ::2] = False
    other = physics.with_mask(half)
    assert float(physics.mask.mean()) == 1.0 and float(other.mask.mean()) == 0.5
    assert other.coil_sensitivities is physics.coil_sensitivities


def _phantom(size: int = 96) -> torch.Tensor:
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    return torch.from_numpy(image.astype(np.float32))[None, None]


@functools.cache
def _ranked(coils: int) -> list[dict[str, float]]:
    """Zero-filled and TV at weights from far too weak to far too strong on a Shepp-Logan
    phantom at 4x (random lines, noise): their true errors and their hold-out scores."""
    x = _phantom()
    mask = _line_mask()
    noise = GaussianNoise(0.002)
    if coils == 1:
        physics = SingleCoilMRI(mask, noise_model=noise)
    else:
        maps = birdcage_sensitivities(4, tuple(mask.shape))
        physics = MultiCoilMRI(mask, maps, noise_model=noise)
    y = physics(x, generator=torch.Generator().manual_seed(1))
    splits = holdout_splits(mask, n_splits=3, keep_centre=calibration_region(mask.numpy()))
    truth_k = physics.with_mask(~mask).A(x)
    rows = []
    for solver in [None, *(TotalVariation(w, 150) for w in (1e-4, 1e-3, 3e-3, 0.1))]:
        estimate = _solve(solver, y, physics)
        kept = [_solve(solver, y * s.kept, physics.with_mask(s.kept)) for s in splits]
        unsampled = physics.with_mask(~mask).A(estimate) - truth_k
        rows.append(
            {
                "nmse": nmse(estimate.abs()[0, 0].numpy(), x[0, 0].numpy()),
                "unsampled": float(unsampled.norm() / truth_k.norm()),
                "holdout": np.mean(
                    [
                        holdout_error(physics, k, y, s.held)
                        for k, s in zip(kept, splits, strict=True)
                    ]
                ),
                "residual": float((physics.A(estimate) - y).norm() / y.norm()),
            }
        )
    return rows


def _order(rows, key):
    return np.argsort([row[key] for row in rows]).tolist()


@pytest.mark.parametrize("coils", [1, 4])
def test_holdout_error_ranks_methods_as_their_error_on_unsampled_kspace(coils):
    rows = _ranked(coils)
    assert _order(rows, "holdout") == _order(rows, "unsampled")


def test_an_over_smoothing_method_shows_in_the_data_residual_not_the_holdout():
    """TV at 0.1 predicts the missing lines better than TV at 1e-4 (hold-out error), but
    misfits the measured ones, which its data residual shows; its image NMSE is worse
    (single coil; with four coils the weak TV is far better in both)."""
    weak, strong = _ranked(1)[1], _ranked(1)[4]
    assert strong["holdout"] < weak["holdout"] and strong["nmse"] > weak["nmse"]
    assert strong["residual"] > 5 * weak["residual"]


def _solve(solver, y, physics):
    if solver is None:
        return physics.A_adjoint(y)  # zero-filled (SENSE-combined for several coils)
    return solver.solve(y, physics, None, generator=torch.Generator().manual_seed(0)).estimate
