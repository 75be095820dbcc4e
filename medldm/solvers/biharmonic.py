"""Biharmonic inpainting (scikit-image) of the pixels an inpainting mask did not observe.

For every batch item and channel, ``skimage.restoration.inpaint_biharmonic`` fills the
unobserved pixels with the solution of the biharmonic equation ``Δ²x = 0`` whose boundary
values are the observed pixels, which are kept exactly (so ``A x = y`` for noiseless
data). 2D images and 3D volumes alike. Only for physics that declare an observed-pixel
mask (:data:`~medldm.physics.base.OBSERVED_MASK`: a ``mask`` attribute, 1 = observed,
broadcastable to the image shape); complex images are filled per real and imaginary part.

References
----------
S. B. Damelin, N. S. Hoang, "On surface completion and image inpainting by biharmonic
functions: numerical aspects", Int. J. Math. Math. Sci. (2018).

Example
-------
>>> import torch
>>> from medldm.physics.base import OBSERVED_MASK, LinearPhysics
>>> class Holes(LinearPhysics):
...     capabilities = frozenset({OBSERVED_MASK})
...     def __init__(self, mask): super().__init__(); self.mask = mask
...     def A(self, x): return self.mask * x
...     def A_adjoint(self, y): return self.mask * y
>>> ramp = torch.arange(8.0).repeat(8, 1)[None, None]  # x grows along columns
>>> mask = torch.ones_like(ramp); mask[..., 3:5, 3:5] = 0
>>> rec = Biharmonic().solve(Holes(mask).A(ramp), Holes(mask))
>>> torch.allclose(rec.estimate, ramp, atol=1e-4)
True
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import OBSERVED_MASK, LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish


def _inpaint(image: np.ndarray, missing: np.ndarray) -> np.ndarray:
    from skimage.restoration import inpaint_biharmonic

    if not missing.any():
        return image
    if missing.all():
        raise InvalidInputError(
            "the inpainting mask observes no pixel of an image", fix="check the mask"
        )
    return inpaint_biharmonic(image, missing)


class Biharmonic:
    """Biharmonic inpainting; needs ``physics.mask`` (1 = observed)."""

    name = "biharmonic"
    requires: ClassVar[frozenset[str]] = frozenset({OBSERVED_MASK})

    @torch.no_grad()
    def solve(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        prior: LatentPrior | None = None,
        *,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Reconstruction:
        started = time.perf_counter()
        if OBSERVED_MASK not in physics.capabilities:
            raise InvalidInputError(
                f"biharmonic inpainting needs an inpainting physics (observed-pixel mask); "
                f"got {type(physics).__name__}",
                fix="use zero_filled, cg or tv for this operator",
            )
        mask = physics.mask
        observed_image = physics.A_adjoint(y)
        missing = ~torch.broadcast_to(mask.bool(), observed_image.shape)
        image = observed_image.detach().cpu().numpy()
        missing_np = missing.cpu().numpy()
        filled = np.empty_like(image)
        for b in range(image.shape[0]):
            for c in range(image.shape[1]):
                hole = missing_np[b, c]
                if np.iscomplexobj(image):
                    filled[b, c] = _inpaint(image[b, c].real, hole) + 1j * _inpaint(
                        image[b, c].imag, hole
                    )
                else:
                    filled[b, c] = _inpaint(image[b, c], hole)
        x = torch.from_numpy(filled).to(device=observed_image.device, dtype=observed_image.dtype)
        if callback is not None:
            callback(0, x)
        info = {"missing_fraction": float(missing.float().mean())}
        return finish(x, y, physics, iterations=0, started=started, info=info)
