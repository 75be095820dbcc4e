"""Total variation along the slice axis inside data consistency (medldm.solvers.slice_tv)."""

from __future__ import annotations

import torch

from medldm.physics.inpainting import Inpainting
from medldm.solvers.finite_differences import forward_difference
from medldm.solvers.slice_tv import slice_tv_consistency


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.zeros(1, 1, 8, 6, 6)
    truth[:, :, 4:] = 1.0
    mask = torch.rand(1, 1, 8, 6, 6, generator=g) > 0.5
    physics = Inpainting(mask, spatial_dims=3)
    anchor = truth + 0.2 * torch.randn(truth.shape, generator=g)
    return truth, physics, physics.A(truth), anchor


def _objective(x, y, physics, anchor, lam, tau):
    data = 0.5 * ((physics.A(x) - y) ** 2).sum()
    return data + 0.5 * lam * ((x - anchor) ** 2).sum() + tau * forward_difference(x, 2).abs().sum()


def test_admm_reaches_the_minimiser():
    _, physics, y, anchor = _problem()
    lam, tau = 0.5, 0.1
    x = slice_tv_consistency(y, physics, anchor, lam=lam, tau=tau, axis=2, n_outer=200, n_cg=20)
    best = _objective(x, y, physics, anchor, lam, tau)
    g = torch.Generator().manual_seed(1)
    for _ in range(20):  # no nearby point is better (the objective is convex)
        step = 1e-3 * torch.randn(x.shape, generator=g)
        assert _objective(x + step, y, physics, anchor, lam, tau) >= best - 1e-6
    assert best < _objective(anchor, y, physics, anchor, lam, tau)


def test_zero_weight_is_the_plain_proximal_step():
    _, physics, y, anchor = _problem()
    x = slice_tv_consistency(y, physics, anchor, lam=0.5, tau=0.0, axis=2, n_outer=50, n_cg=30)
    plain = physics.prox_l2(anchor, y, 0.5, n_iter=90, tol=1e-9)
    assert torch.allclose(x, plain, atol=1e-4)


def test_top_slice_is_not_tied_to_the_bottom_one():
    """No wrap-around (the reference codes use torch.roll): for a two-block volume (slices
    0-2 at 0, 3-5 at 1), fully measured, the fused-lasso solution moves each block by
    tau / (3 (lam + 1)) towards the other, one jump shrinking; a cyclic difference would
    see a second jump (slice 5 to slice 0) and move the blocks twice as far."""
    volume = torch.zeros(1, 1, 6, 4, 4)
    volume[:, :, 3:] = 1.0
    physics = Inpainting(torch.ones(1, 1, 6, 4, 4, dtype=torch.bool), spatial_dims=3)
    lam, tau = 1.0, 0.3
    x = slice_tv_consistency(
        physics.A(volume), physics, volume, lam=lam, tau=tau, axis=2, n_outer=300, n_cg=20
    )
    shift = tau / (3 * (lam + 1))
    assert torch.allclose(x[:, :, :3], torch.full((1, 1, 3, 4, 4), shift), atol=1e-3)
    assert torch.allclose(x[:, :, 3:], torch.full((1, 1, 3, 4, 4), 1 - shift), atol=1e-3)


def test_edges_along_slices_stay_sharper_than_with_quadratic_coupling():
    truth, physics, y, anchor = _problem(3)
    tv = slice_tv_consistency(y, physics, anchor, lam=0.5, tau=0.15, axis=2, n_outer=30, n_cg=10)

    def penalty(x):
        d = forward_difference(x, 2)
        from medldm.solvers.finite_differences import forward_difference_adjoint

        return 0.3 * forward_difference_adjoint(d, 2)

    quadratic = physics.prox_l2(anchor, y, 0.5, n_iter=200, tol=1e-9, penalty=penalty)
    jump = lambda x: float((x[:, :, 4] - x[:, :, 3]).mean())  # noqa: E731
    assert abs(jump(tv) - 1.0) < abs(jump(quadratic) - 1.0)
    assert (tv - truth).abs().mean() < (anchor - truth).abs().mean()
