"""Richardson-Lucy deconvolution for blur with Poisson noise (microscopy).

The multiplicative EM update for ``y ~ Poisson(A x)`` with a non-negative ``A``:

    x_{k+1} = x_k * A^H( y / (A x_k) ) / A^H 1,

which keeps ``x >= 0`` and maximises the Poisson likelihood. Dividing by ``A^H 1`` makes
the update correct for PSFs that do not sum to one and for non-circular boundaries;
``normalize=False`` drops it (scikit-image's ``richardson_lucy`` does, assuming
``A^H 1 = 1``). Iterations regularise by early stopping: ``n_iter`` is the only knob.
``A x_k`` is clipped at 0 before ``eps`` is added (FFT convolutions leave tiny negative
values) and negative measurements (Gaussian read noise) are clipped to 0. Pure torch, so
it runs wherever the physics runs (CPU or GPU).

References
----------
W. H. Richardson, JOSA 62 (1972); L. B. Lucy, AJ 79 (1974).

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Average(LinearPhysics):  # circular 3-pixel box blur along x
...     def A(self, x): return (x + x.roll(1, -1) + x.roll(-1, -1)) / 3
...     def A_adjoint(self, y): return self.A(y)
>>> x = torch.zeros(1, 1, 1, 9); x[..., 4] = 3.0
>>> rec = RichardsonLucy(n_iter=200).solve(Average().A(x), Average())
>>> round(float(rec.estimate[..., 4]), 1), bool(rec.estimate.min() >= 0)
(3.0, True)
"""

from __future__ import annotations

import time
from typing import ClassVar

import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import CONVOLUTION, LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import finish, progress_over


class RichardsonLucy:
    """Richardson-Lucy iterations from a flat start (the mean of ``y``).

    Parameters
    ----------
    n_iter:
        Number of iterations (more = sharper and noisier).
    eps:
        Added to ``A x`` before dividing (same role as scikit-image's 1e-12).
    normalize:
        Divide by ``A^H 1`` (see the module docstring).
    progress:
        Show a tqdm progress bar.
    """

    name = "richardson_lucy"
    #: Made for deconvolution (Poisson noise on a blurred image).
    requires: ClassVar[frozenset[str]] = frozenset({CONVOLUTION})

    def __init__(
        self, n_iter: int = 30, eps: float = 1e-12, normalize: bool = True, progress: bool = False
    ):
        self.n_iter = int(n_iter)
        self.eps = float(eps)
        self.normalize = bool(normalize)
        self.progress = bool(progress)

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
        if y.is_complex():
            raise InvalidInputError(
                "Richardson-Lucy needs real, non-negative measurements; got a complex y",
                fix="use cg or tv for complex (MRI) physics",
            )
        counts = y.clamp_min(0.0)
        back_projected_ones = physics.A_adjoint(torch.ones_like(y))
        if self.normalize:
            back_projected_ones = back_projected_ones.clamp_min(self.eps)
        # Any flat start gives the same iterates (the update is scale invariant); the mean
        # of y keeps intermediate values in the data's range.
        x = torch.full_like(back_projected_ones, float(counts.mean().clamp_min(self.eps)))
        for k in progress_over(range(self.n_iter), self.progress, "Richardson-Lucy"):
            ratio = counts / (physics.A(x).clamp_min(0.0) + self.eps)
            correction = physics.A_adjoint(ratio)
            if self.normalize:
                correction = correction / back_projected_ones
            x = (x * correction).clamp_min(0.0)
            if callback is not None:
                callback(k, x)
        info = {"n_iter": self.n_iter, "normalize": self.normalize}
        return finish(x, y, physics, iterations=self.n_iter, started=started, info=info)
