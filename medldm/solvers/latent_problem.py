"""The problem seen from the prior's side: what every latent-diffusion solver works on.

A :class:`LatentProblem` binds a measurement ``y``, its physics and a trained
:class:`~medldm.models.prior.Prior`, and hides three conversions the solvers' main loops
should not have to spell out:

* **complex MRI data**: the prior models real magnitude images, so for complex ``y`` a
  smooth phase map is estimated from the fully sampled k-space centre
  (:func:`~medldm.physics.phase.lowres_phase`) and the solver sees the real operator
  ``m -> A(m exp(i phi))`` (:class:`~medldm.physics.phase.PhaseConstrained`), exactly as the
  TV baseline does;
* **intensities**: ``normalization="none"`` (default) assumes ``y`` was measured from an
  image already in the prior's ``[0, 1]`` range (the benchmark and ``medldm-recon`` do
  this); ``"fit"`` fits the prior's own normaliser to the initial estimate (raw scanner
  data) by the apps' one rule (:func:`medldm.data.normalize.fit_to_image`: signed values,
  magnitude when complex);
* **shapes**: images are padded to a multiple of the autoencoder's downsampling factor, and
  a volume solved with a 2D prior is cut into slices along ``slice_axis`` that the prior
  sees as a batch (the data term stays 3D).

It also holds the two image-space tools the solvers use: the data-fit loss (for gradients
through the decoder) and :meth:`LatentProblem.data_consistency`, the proximal step
``argmin_x ||A x - y||^2 + lam ||x - x_anchor||^2 (+ mu ||D_slice x||^2)`` solved by
conjugate gradients (:meth:`~medldm.physics.base.LinearPhysics.prox_l2`).

The solvers' shared loop (:class:`~medldm.solvers.latent_base.LatentSolverBase`) and the
DDIM step on the prior's schedule (:func:`~medldm.solvers.ddim.ddim_update`) live beside
this module.

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> mask = torch.ones(1, 1, 8, 8, dtype=torch.bool); mask[..., 2:5, 2:5] = False
>>> physics = Inpainting(mask)
>>> x = torch.rand(1, 1, 8, 8)
>>> problem = LatentProblem(physics(x), physics, downsampling_factor=4)
>>> fixed = problem.data_consistency(torch.zeros(1, 1, 8, 8), weight=1e-6)
>>> bool(torch.allclose(fixed[mask], x[mask], atol=1e-4)), bool(fixed[~mask].abs().max() < 1e-3)
(True, True)
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Reconstruction
from medldm.solvers.common import ensure_finite
from medldm.solvers.finite_differences import forward_difference, forward_difference_adjoint
from medldm.solvers.slice_tv import slice_tv_consistency

#: Power iterations for ``||A^H A||``, the scale of the data-consistency weights (a fixed,
#: small count: the weights in the solver presets were tuned with it).
NORMAL_SCALE_ITERATIONS = 12


class LatentProblem:
    """The measurement, the physics and the prior's view of the unknown image.

    Parameters
    ----------
    y:
        The measurement (batch of one or more cases).
    physics:
        A :class:`~medldm.physics.base.LinearPhysics`.
    prior:
        The trained :class:`~medldm.models.prior.Prior` (``None`` for image-space use only;
        then ``downsampling_factor`` (image sizes are padded to a multiple of it) and
        ``prior_spatial_dims`` say how to pad and slice).
    normalization:
        ``"none"``: image values already in the prior's range; ``"fit"``: fit the prior's
        normaliser on the initial estimate's magnitude.
    phase:
        ``"lowres"`` (default) or ``None``: how complex data is made real (see the module).
    slice_axis:
        For a volume with a 2D prior: the spatial axis (0, 1 or 2) cut into slices; ``-1``
        (default) is the last spatial axis.
    """

    def __init__(
        self,
        y: torch.Tensor,
        physics: LinearPhysics,
        prior: LatentPrior | None = None,
        *,
        normalization: str = "none",
        phase: str | None = "lowres",
        slice_axis: int = -1,
        downsampling_factor: int | None = None,
        prior_spatial_dims: int | None = None,
    ):
        if normalization not in ("none", "fit"):
            raise InvalidInputError(
                f"unknown normalization {normalization!r}", fix="use 'none' or 'fit'"
            )
        self.y = y
        self.original_physics = physics
        self.prior = prior
        self.phase_map: torch.Tensor | None = None
        if y.is_complex() and phase == "lowres":
            from medldm.physics.phase import PhaseConstrained, lowres_phase

            self.phase_map = lowres_phase(y, physics)
            physics = PhaseConstrained(physics, self.phase_map)
        self.physics = physics
        self._repeated: dict[int, LinearPhysics] = {}
        self.x_init = physics.x_init(y)
        if self.x_init.is_complex():
            self.x_init = self.x_init.abs()
        self.spatial_dims = self.x_init.ndim - 2
        self.factor = int(downsampling_factor or (prior.size_multiple if prior else 1))
        self.prior_dims = int(prior_spatial_dims or (prior.spatial_dims if prior else 2))
        if self.prior_dims > self.spatial_dims:
            raise InvalidInputError(
                f"a {self.prior_dims}D prior cannot reconstruct a {self.spatial_dims}D image",
                fix="use a 2D prior for 2D images",
            )
        self.slice_axis = slice_axis % self.spatial_dims if self.spatial_dims == 3 else None
        self.low, self.span = 0.0, 1.0
        if normalization == "fit":
            from medldm.data.normalize import PercentileNormalizer, fit_to_image

            own = prior.normalizer if prior is not None else None
            norm = fit_to_image(own or PercentileNormalizer(0.5, 99.5), self.x_init)
            self.low, self.span = float(norm.low), float(norm.high - norm.low) or 1.0
        norm = self.physics.norm(self.x_init, n_iter=NORMAL_SCALE_ITERATIONS, tol=0.0)
        self.normal_scale = max(norm**2, 1e-12)

    # --- intensities and shapes ---------------------------------------------------------
    def to_image(self, u: torch.Tensor) -> torch.Tensor:
        """Prior range -> physical units of the (real) unknown."""
        return self.low + self.span * u

    def to_model(self, x: torch.Tensor) -> torch.Tensor:
        """Physical units -> prior range."""
        return (x - self.low) / self.span

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_init.shape)

    def _padding(self) -> list[int]:
        """F.pad amounts (last axis first) bringing the in-plane axes to a multiple of f."""
        shape = self.image_shape[2:]
        axes = list(range(self.spatial_dims))
        if self.slice_axis is not None and self.prior_dims == 2:
            axes.remove(self.slice_axis)
        pads: list[int] = []
        for axis in reversed(range(self.spatial_dims)):
            extra = (-shape[axis]) % self.factor if axis in axes else 0
            pads += [extra // 2, extra - extra // 2]
        return pads

    def to_prior_batch(self, u: torch.Tensor) -> torch.Tensor:
        """Image ``(B, 1, *spatial)`` in the prior range -> what the prior encodes: padded,
        and for a 2D prior on a volume, slices stacked on the batch axis ``(B*S, 1, H, W)``."""
        u = F.pad(u, self._padding(), mode="replicate") if any(self._padding()) else u
        if self.slice_axis is not None and self.prior_dims == 2:
            axis = 2 + self.slice_axis
            u = u.movedim(axis, 2)  # (B, 1, S, H, W)
            b, c, s, h, w = u.shape
            u = u.permute(0, 2, 1, 3, 4).reshape(b * s, c, h, w)
        return u

    def from_prior_batch(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_prior_batch` (slices back into the volume, padding cut)."""
        if self.slice_axis is not None and self.prior_dims == 2:
            n_slices = self.image_shape[2 + self.slice_axis]
            bs, c, h, w = v.shape
            v = v.reshape(bs // n_slices, n_slices, c, h, w).permute(0, 2, 1, 3, 4)
            v = v.movedim(2, 2 + self.slice_axis)
        pads = self._padding()
        if any(pads):
            slices = [slice(None), slice(None)]
            for axis in range(self.spatial_dims):
                before, after = pads[
                    2 * (self.spatial_dims - 1 - axis) : 2 * (self.spatial_dims - axis)
                ]
                slices.append(slice(before, v.shape[2 + axis] - after))
            v = v[tuple(slices)]
        return v

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Physical image -> scaled latent (through the padding / slicing)."""
        return self.prior.encode(self.to_prior_batch(self.to_model(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> physical image (differentiable)."""
        return self.to_image(self.from_prior_batch(self.prior.decode(z)))

    def latent_shape(self, n: int = 1) -> tuple[int, ...]:
        """Shape of the latent batch for ``n`` copies of the problem."""
        probe = self.to_prior_batch(torch.zeros(self.image_shape, device=self.x_init.device))
        spatial = probe.shape[2:]
        return (n * probe.shape[0], *self.prior.latent_shape(tuple(spatial)))

    # --- data terms ---------------------------------------------------------------------
    def physics_for(self, n: int) -> LinearPhysics:
        """The (real) operator applied to ``n`` stacked copies of the batch: a per-case
        phase map is repeated ``n`` times; everything else broadcasts."""
        if n == 1 or self.phase_map is None or self.phase_map.shape[0] == 1:
            return self.physics
        if n not in self._repeated:
            from medldm.physics.phase import PhaseConstrained

            self._repeated[n] = PhaseConstrained(
                self.original_physics, self.repeat(self.phase_map, n)
            )
        return self._repeated[n]

    def repeat(self, tensor: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` copies of a per-case tensor along the batch axis (sample-major)."""
        return tensor.repeat(n, *([1] * (tensor.ndim - 1))) if n > 1 else tensor

    def data_loss(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """``sum ||A x_k - y||^2`` over the ``n`` copies (real scalar, differentiable)."""
        diff = self.physics_for(n).A(x) - self.repeat(self.y, n)
        return (diff.abs() ** 2).sum() if diff.is_complex() else (diff**2).sum()

    def data_norm(self, x: torch.Tensor, n: int = 1) -> torch.Tensor:
        """``||A x_k - y||`` per copy, shape ``(n * B,)``."""
        diff = self.physics_for(n).A(x) - self.repeat(self.y, n)
        return torch.linalg.vector_norm(diff.reshape(diff.shape[0], -1), dim=1)

    @property
    def _slice_dim(self) -> int:
        """The tensor axis of the slices of a volume ``(B, 1, *spatial)``."""
        return 2 + (self.slice_axis if self.slice_axis is not None else self.spatial_dims - 1)

    def _slice_difference_normal(self, x: torch.Tensor) -> torch.Tensor:
        """``D^T D x`` for the first difference ``D`` along the slice axis."""
        return forward_difference_adjoint(forward_difference(x, self._slice_dim), self._slice_dim)

    @torch.no_grad()
    def data_consistency(
        self,
        x_anchor: torch.Tensor,
        weight: float,
        *,
        n_iter: int = 10,
        n: int = 1,
        slice_weight: float = 0.0,
        slice_tv_weight: float = 0.0,
    ) -> torch.Tensor:
        """``argmin_x ||A x - y||^2 + lam ||x - x_anchor||^2 + mu ||D_slice x||^2`` by CG
        from ``x_anchor``, with ``lam = weight`` and ``mu = slice_weight`` both relative to
        ``||A^H A||`` (so the same weights fit MRI, CT and inpainting). A small ``weight``
        trusts the data; a large one the anchor. ``slice_weight`` couples the slices of a
        volume (only meaningful for 3D images). ``slice_tv_weight > 0`` couples them by
        total variation along the slice axis instead (``tau ||D_slice x||_1``, ADMM with
        ``n_iter`` CG iterations per x-update: :mod:`medldm.solvers.slice_tv`)."""
        lam = float(weight) * self.normal_scale
        mu = float(slice_weight) * self.normal_scale if self.spatial_dims == 3 else 0.0
        if slice_tv_weight > 0 and self.spatial_dims == 3:
            return slice_tv_consistency(
                self.repeat(self.y, n),
                self.physics_for(n),
                x_anchor,
                lam=lam,  # the 1/2-scaled objective there has the same minimiser
                tau=float(slice_tv_weight) * self.normal_scale / 2,
                axis=self._slice_dim,
                n_cg=n_iter,
            )

        def slice_coupling(x: torch.Tensor) -> torch.Tensor:
            return mu * self._slice_difference_normal(x)

        return self.physics_for(n).prox_l2(
            x_anchor,
            self.repeat(self.y, n),
            lam,
            n_iter=n_iter,
            tol=1e-7,
            penalty=slice_coupling if mu else None,
        )

    @torch.no_grad()
    def tv_data_consistency(
        self, x_anchor: torch.Tensor, weight: float, tv_weight: float, *, n_iter: int = 200
    ) -> torch.Tensor:
        """``argmin_{x >= 0} 1/2 ||A x - y||^2 + lam/2 ||x - x_anchor||^2 + tv TV(x)`` by
        PDHG (:class:`~medldm.solvers.tv.TotalVariation` on the operator ``[A; sqrt(lam) I]``),
        with ``lam = weight * ||A^H A||`` and ``tv = tv_weight`` (as in ``tv_<operator>``
        presets). The anchor (the LDM posterior mean) carries the prior; TV removes the
        noise-like residue the CG step leaves in unmeasured components."""
        from medldm.solvers.anchored_tv import anchored_tv

        n = x_anchor.shape[0] // self.image_shape[0]
        y = self.repeat(self.y, n)
        return anchored_tv(
            y,
            self.physics_for(n),
            x_anchor,
            weight,
            tv_weight,
            n_iter=n_iter,
            normal_scale=self.normal_scale,
        )

    @torch.no_grad()
    def wavelet_data_consistency(
        self, x_anchor: torch.Tensor, weight: float, wavelet_weight: float
    ) -> torch.Tensor:
        """As :meth:`tv_data_consistency` with wavelet sparsity for TV
        (:func:`~medldm.solvers.anchored_wavelet.anchored_l1_wavelet`): it takes the haze
        of aliasing residue in the air around an object to zero."""
        from medldm.solvers.anchored_wavelet import anchored_l1_wavelet

        n = x_anchor.shape[0] // self.image_shape[0]
        return anchored_l1_wavelet(
            self.repeat(self.y, n),
            self.physics_for(n),
            x_anchor,
            weight,
            wavelet_weight,
            normal_scale=self.normal_scale,
        )

    @torch.no_grad()
    def tv_reconstruction(self, tv_weight: float, *, n_iter: int = 300) -> torch.Tensor:
        """The TV reconstruction ``argmin_{x >= 0} 1/2 ||A x - y||^2 + tv TV(x)`` of the
        measurement (PDHG, ``tv = tv_weight`` as in the ``tv_<operator>`` presets), real,
        in image space: a start for the sampler that is closer to the truth than the
        direct reconstruction."""
        from medldm.solvers.tv import TotalVariation

        solver = TotalVariation(tv_weight, n_iter, constraint="nonnegative")
        return solver.solve(self.y, self.physics).estimate

    # --- the result ---------------------------------------------------------------------
    def reconstruction(
        self,
        samples: torch.Tensor,
        *,
        solver: str,
        started: float,
        nfe: int,
        iterations: int,
        final_dc: bool,
        final_dc_weight: float,
        final_dc_iter: int = 30,
        final_tv_weight: float = 0.0,
        final_wavelet_weight: float = 0.0,
        info: dict[str, Any] | None = None,
    ) -> Reconstruction:
        """Pack ``n`` samples ``(n * B, 1, *spatial)`` (physical units, real) into a
        :class:`Reconstruction`: optional final data-consistency step on each sample, then
        mean (through an anchored TV or wavelet solve when its weight is > 0), pixel-wise
        std and residuals; complex data gets its phase back."""
        n = samples.shape[0] // self.image_shape[0]
        ensure_finite(samples, "estimate", solver)
        if final_dc:
            samples = self.data_consistency(samples, final_dc_weight, n_iter=final_dc_iter, n=n)
            ensure_finite(samples, "data-consistent estimate", solver)
        stacked = samples.reshape(n, *self.image_shape)
        mean = stacked.mean(dim=0)
        std = stacked.std(dim=0, unbiased=True) if n > 1 else torch.zeros_like(mean)
        if final_tv_weight > 0:
            mean = ensure_finite(
                self.tv_data_consistency(mean, final_dc_weight, final_tv_weight),
                "TV data-consistent estimate",
                solver,
            )
        elif final_wavelet_weight > 0:
            mean = ensure_finite(
                self.wavelet_data_consistency(mean, final_dc_weight, final_wavelet_weight),
                "wavelet data-consistent estimate",
                solver,
            )
        if self.phase_map is not None:
            stacked = stacked.to(self.phase_map.dtype) * self.phase_map[None]
            mean = mean.to(self.phase_map.dtype) * self.phase_map
        physics = self.original_physics
        return Reconstruction(
            estimate=mean.detach(),
            residual=physics.residual(mean, self.y),
            residual_over_noise=physics.residual_over_noise(mean, self.y),
            samples=stacked.detach(),
            std=std.detach(),
            iterations=int(iterations),
            nfe=int(nfe),
            seconds=time.perf_counter() - started,
            info={
                "n_samples": n,
                "final_dc": final_dc,
                "final_tv_weight": final_tv_weight,
                "final_wavelet_weight": final_wavelet_weight,
                **(info or {}),
            },
        )
