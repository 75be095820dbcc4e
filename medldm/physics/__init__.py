"""Measurement physics: forward operators ``A``, adjoints, pseudo-inverses and noise.

Every operator works on batched torch tensors ``(B, C, *spatial)``, is a
:class:`torch.nn.Module` (so masks, coil maps and system matrices move with ``.to()``)
and derives from :class:`~medldm.physics.base.LinearPhysics`.
"""

from medldm.physics.base import LinearPhysics, conjugate_gradient
from medldm.physics.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise

__all__ = [
    "GaussianNoise",
    "LinearPhysics",
    "NoiseModel",
    "PoissonGaussianNoise",
    "PoissonNoise",
    "conjugate_gradient",
]
