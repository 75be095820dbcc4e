"""A picture of the measurement, in image space, for the report's figures.

* CT (physics with ``fbp``): the filtered back-projection of the sinogram;
* measurements that already are real images of the ground truth's shape (a masked image,
  a blurred image): the measurement itself;
* anything else (k-space, coil data, observed-pixel vectors): the magnitude of ``A^H y``
  (zero-filled for MRI, the masked image for inpainting).

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Half(LinearPhysics):
...     def A(self, x): return x[..., ::2]
...     def A_adjoint(self, y):
...         x = torch.zeros(*y.shape[:-1], 2 * y.shape[-1]); x[..., ::2] = y; return x
>>> view = measurement_view(torch.ones(1, 1, 4, 2), Half(), (4, 4))
>>> view.shape, view.tolist()[0]
((4, 4), [1.0, 0.0, 1.0, 0.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from medldm.physics.base import FILTERED_BACKPROJECTION


def to_image_array(tensor: torch.Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitude of a ``(1, 1, *shape)`` (or ``(*shape)``) tensor as a float32 array."""
    magnitude = tensor.detach().abs() if tensor.is_complex() else tensor.detach()
    return magnitude.reshape(shape).to("cpu", torch.float32).numpy()


@torch.no_grad()
def measurement_view(y: torch.Tensor, physics: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The measurement shown in image space (see module docstring), float32 ``shape``."""
    if FILTERED_BACKPROJECTION in getattr(physics, "capabilities", ()):
        return to_image_array(physics.x_init(y), shape)  # FBP
    if (
        not y.is_complex()
        and y.numel() == int(np.prod(shape))
        and tuple(y.shape[-2:]) == tuple(shape[-2:])
    ):
        return to_image_array(y, shape)
    return to_image_array(physics.A_adjoint(y), shape)
