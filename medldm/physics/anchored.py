"""A forward model with a data-consistency anchor stacked under it.

``A' x = [A x ; sqrt(lam) x]`` and ``y' = [y ; sqrt(lam) anchor]``, so that any solver of
``1/2 ||A' x - y'||^2 + R(x)`` minimises

    ``1/2 ||A x - y||^2 + lam/2 ||x - anchor||^2 + R(x)``.

The latent solvers use it to run TV (PDHG) or l1-wavelet (FISTA) as a data-consistency
step around the posterior mean. Its direct reconstruction (:meth:`AnchoredPhysics.x_init`)
is the anchor itself, which already fits the data (a plain ``A'^H y'`` would be badly
scaled for CT).

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> physics = Inpainting(torch.ones(1, 1, 4, 4))
>>> y, anchor = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
>>> anchored = AnchoredPhysics(physics, 0.25, anchor, tuple(y.shape))
>>> stacked = anchored.measurement(y)
>>> tuple(stacked.shape), bool(torch.equal(anchored.x_init(stacked), anchor))
((1, 32), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from medldm.physics.base import LinearPhysics


class AnchoredPhysics(LinearPhysics):
    """``x -> [A x ; sqrt(lam) x]``, outputs flattened per batch item (complex when ``A``
    is). Noiseless: ``residual_over_noise`` is ``None``.

    Parameters
    ----------
    physics:
        The operator ``A`` (real inputs).
    weight:
        ``lam >= 0``, the weight of the anchor term.
    anchor:
        The image ``x`` is pulled towards, ``(B, C, *spatial)``; also :meth:`x_init`.
    measurement_shape:
        Shape of the measurements ``y`` of ``A`` (batch included).
    """

    def __init__(
        self,
        physics: LinearPhysics,
        weight: float,
        anchor: torch.Tensor,
        measurement_shape: Sequence[int],
    ):
        super().__init__(physics.spatial_dims)
        self.physics = physics
        self.root = float(weight) ** 0.5
        self.register_buffer("anchor", anchor)
        self.measurement_shape = tuple(int(s) for s in measurement_shape)

    @classmethod
    def relative(
        cls,
        physics: LinearPhysics,
        weight: float,
        anchor: torch.Tensor,
        measurement_shape: Sequence[int],
        normal_scale: float | None = None,
    ) -> AnchoredPhysics:
        """The stacked operator with ``lam = weight * ||A^H A||``, so that one ``weight``
        suits operators of any scale; ``normal_scale`` is ``||A^H A||`` when the caller
        knows it, else it is computed by power iteration."""
        if normal_scale is None:
            normal_scale = max(physics.norm(anchor) ** 2, 1e-12)
        return cls(physics, float(weight) * float(normal_scale), anchor, measurement_shape)

    def measurement(self, y: torch.Tensor) -> torch.Tensor:
        """The stacked measurement ``[y ; sqrt(lam) anchor]`` for the measurement ``y``."""
        block = (self.root * self.anchor).reshape(self.anchor.shape[0], -1)
        return torch.cat([y.reshape(y.shape[0], -1), block.to(y.dtype)], dim=1)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        ax = self.physics.A(x)
        block = (self.root * x).reshape(x.shape[0], -1)
        return torch.cat([ax.reshape(ax.shape[0], -1), block.to(ax.dtype)], dim=1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        m = math.prod(self.measurement_shape[1:])
        measured = y[:, :m].reshape((y.shape[0], *self.measurement_shape[1:]))
        image = self.physics.A_adjoint(measured)
        block = y[:, m:].reshape(image.shape)
        block = block.real if block.is_complex() else block
        return image + self.root * block

    def x_init(self, y: torch.Tensor) -> torch.Tensor:
        """The anchor (a copy): the start of an iterative solver."""
        return self.anchor.clone()
