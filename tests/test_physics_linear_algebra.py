"""What every operator inherits from LinearPhysics (the normal operator A^H A, a cached
norm, prox_l2, the direct reconstruction x_init) and the capabilities each class declares
instead of being probed for."""

from __future__ import annotations

import inspect

import pytest
import torch

import medldm.physics as physics_package
from medldm.physics import (
    CAPABILITIES,
    CONVOLUTION,
    FILTERED_BACKPROJECTION,
    OBSERVED_MASK,
    AnchoredPhysics,
    Blur,
    Inpainting,
    LinearPhysics,
    ParallelBeamCT,
    SingleCoilMRI,
    gaussian_psf,
    sparse_view_angles,
)
from medldm.physics.masks import RandomPixelMask


def _random_mask(shape=(16, 16)) -> torch.Tensor:
    return RandomPixelMask(0.5)(shape, torch.Generator().manual_seed(0))


class CountingScale(LinearPhysics):
    """``A = 3 I``, counting its applications."""

    calls = 0

    def A(self, x):
        self.calls += 1
        return 3 * x

    def A_adjoint(self, y):
        return 3 * y


def test_norm_is_the_largest_singular_value_and_is_cached():
    like = torch.zeros(1, 1, 8, 8)
    physics = CountingScale()
    assert physics.norm(like) == pytest.approx(3.0)
    calls = physics.calls
    assert physics.norm(like) == pytest.approx(3.0) and physics.calls == calls
    assert Inpainting(_random_mask()).norm(torch.zeros(1, 1, 16, 16)) == pytest.approx(1.0)
    mri = SingleCoilMRI(_random_mask())
    assert mri.norm(torch.zeros(1, 1, 16, 16, dtype=torch.complex64)) == pytest.approx(1.0)
    psf = gaussian_psf((5, 5), 1.0)
    blur = Blur(psf)
    peak = float(torch.fft.fft2(psf, s=(16, 16)).abs().max())
    assert blur.norm(torch.zeros(1, 1, 16, 16), n_iter=500, tol=1e-9) == pytest.approx(
        peak, rel=1e-3
    )


def test_the_normal_operator_is_a_adjoint_of_a():
    physics = ParallelBeamCT(16, sparse_view_angles(8))
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(physics.A_adjoint_A(x), physics.A_adjoint(physics.A(x)))
    assert not hasattr(physics, "A_AH")


def test_prox_l2_of_inpainting_has_the_closed_form():
    mask = _random_mask().float()
    physics = Inpainting(mask)
    y, z = physics.A(torch.rand(1, 1, 16, 16)), torch.rand(1, 1, 16, 16)
    weight = 0.25
    prox = physics.prox_l2(z, y, weight, n_iter=20, tol=1e-10)
    assert torch.allclose(prox, (mask * y + weight * z) / (mask + weight), atol=1e-5)


def test_prox_l2_with_a_real_anchor_stays_real_and_adds_a_quadratic_penalty():
    physics = SingleCoilMRI(_random_mask())
    y = physics.A(torch.rand(1, 1, 16, 16).to(torch.complex64))
    z = torch.rand(1, 1, 16, 16)
    assert not physics.prox_l2(z, y, 0.1, n_iter=5).is_complex()
    inpainting = Inpainting(torch.ones(16, 16))
    penalised = inpainting.prox_l2(z, z, 1.0, penalty=lambda x: 2.0 * x, tol=1e-10)
    assert torch.allclose(penalised, z / 2, atol=1e-5)  # (1 + 1 + 2) x = z + z


def test_x_init_is_fbp_for_ct_the_adjoint_otherwise_and_the_anchor_for_an_anchor():
    ct = ParallelBeamCT(16, sparse_view_angles(30))
    sinogram = ct.A(torch.rand(1, 1, 16, 16))
    assert torch.equal(ct.x_init(sinogram), ct.fbp(sinogram))
    mri = SingleCoilMRI(_random_mask())
    k = mri.A(torch.rand(1, 1, 16, 16).to(torch.complex64))
    assert torch.equal(mri.x_init(k), mri.A_adjoint(k))
    anchor = torch.rand(1, 1, 16, 16)
    anchored = AnchoredPhysics(ct, 0.5, anchor, tuple(sinogram.shape))
    assert torch.equal(anchored.x_init(anchored.measurement(sinogram)), anchor)


def _physics_classes() -> list[type]:
    return [
        obj
        for obj in vars(physics_package).values()
        if inspect.isclass(obj) and issubclass(obj, LinearPhysics) and obj is not LinearPhysics
    ]


def test_every_physics_class_declares_known_capabilities():
    declared = {cls.__name__: cls.capabilities for cls in _physics_classes()}
    assert all(capabilities <= CAPABILITIES for capabilities in declared.values())
    assert declared["Inpainting"] == {OBSERVED_MASK}
    assert declared["ParallelBeamCT"] == {FILTERED_BACKPROJECTION}
    assert declared["Blur"] == {CONVOLUTION}
    assert declared["SingleCoilMRI"] == declared["MultiCoilMRI"] == frozenset()
    # What a capability promises is there.
    assert isinstance(Inpainting(_random_mask()).mask, torch.Tensor)
    assert callable(ParallelBeamCT.fbp)
