"""What every latent-diffusion solver shares: the problem seen from the prior's side.

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
  data);
* **shapes**: images are padded to a multiple of the autoencoder's downsampling factor, and
  a volume solved with a 2D prior is cut into slices along ``slice_axis`` that the prior
  sees as a batch (the data term stays 3D).

It also holds the two image-space tools the solvers use: the data-fit loss (for gradients
through the decoder) and :meth:`LatentProblem.data_consistency`, the proximal step
``argmin_x ||A x - y||^2 + lam ||x - x_anchor||^2 (+ mu ||D_slice x||^2)`` solved by
conjugate gradients.

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
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from medldm.errors import InvalidInputError, MedLDMError
from medldm.physics.base import conjugate_gradient
from medldm.solvers.base import Reconstruction
from medldm.solvers.common import initial_estimate


def ensure_finite(tensor: torch.Tensor, what: str, solver: str) -> torch.Tensor:
    """``tensor`` unchanged, or a :class:`MedLDMError` when it holds NaN/Inf (a diverged
    solver must stop instead of writing garbage)."""
    if not bool(torch.isfinite(tensor).all()):
        raise MedLDMError(
            f"{solver}: the {what} became NaN/Inf (the solver diverged)",
            fix="lower the step size / guidance weight in the solver preset, or use fewer "
            "data-consistency iterations",
        )
    return tensor


def power_norm(normal_op: Any, like: torch.Tensor, n_iter: int = 12) -> float:
    """Largest eigenvalue of the Hermitian operator ``normal_op`` (power iteration), used
    to make data-consistency weights independent of the operator's scale."""
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(like.shape, generator=generator).to(like)
    value = 1.0
    for _ in range(n_iter):
        w = normal_op(v)
        value = float(torch.linalg.vector_norm(w) / torch.linalg.vector_norm(v).clamp_min(1e-30))
        v = w / torch.linalg.vector_norm(w).clamp_min(1e-30)
    return max(value, 1e-12)


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
        physics: Any,
        prior: Any = None,
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
        self._repeated: dict[int, Any] = {}
        self.x_init = initial_estimate(y, physics)
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
            from medldm.data.normalize import PercentileNormalizer

            rule = getattr(prior, "normalizer", None) or PercentileNormalizer(0.5, 99.5)
            norm = rule.fit(self.x_init.detach().abs().cpu().numpy())
            self.low, self.span = float(norm.low), float(norm.high - norm.low) or 1.0
        self.normal_scale = power_norm(self.physics.A_AH, self.x_init)

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
    def physics_for(self, n: int) -> Any:
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

    def _slice_difference_normal(self, x: torch.Tensor) -> torch.Tensor:
        """``D^T D x`` for the first difference ``D`` along the slice axis."""
        axis = 2 + (self.slice_axis if self.slice_axis is not None else self.spatial_dims - 1)
        d = torch.diff(x, dim=axis)
        zero = torch.zeros_like(x.narrow(axis, 0, 1))
        return torch.cat([zero, d], dim=axis) - torch.cat([d, zero], dim=axis)

    @torch.no_grad()
    def data_consistency(
        self,
        x_anchor: torch.Tensor,
        weight: float,
        *,
        n_iter: int = 10,
        n: int = 1,
        slice_weight: float = 0.0,
    ) -> torch.Tensor:
        """``argmin_x ||A x - y||^2 + lam ||x - x_anchor||^2 + mu ||D_slice x||^2`` by CG
        from ``x_anchor``, with ``lam = weight`` and ``mu = slice_weight`` both relative to
        ``||A^H A||`` (so the same weights fit MRI, CT and inpainting). A small ``weight``
        trusts the data; a large one the anchor. ``slice_weight`` couples the slices of a
        volume (only meaningful for 3D images)."""
        lam = float(weight) * self.normal_scale
        mu = float(slice_weight) * self.normal_scale if self.spatial_dims == 3 else 0.0

        physics = self.physics_for(n)

        def normal(x: torch.Tensor) -> torch.Tensor:
            out = physics.A_AH(x) + lam * x
            return out + mu * self._slice_difference_normal(x) if mu else out

        rhs = physics.A_adjoint(self.repeat(self.y, n)) + lam * x_anchor
        if rhs.is_complex():
            rhs = rhs.real
        x, _ = conjugate_gradient(normal, rhs, x_anchor, n_iter=n_iter, tol=1e-7)
        return x

    @torch.no_grad()
    def tv_data_consistency(
        self, x_anchor: torch.Tensor, weight: float, tv_weight: float, *, n_iter: int = 200
    ) -> torch.Tensor:
        """``argmin_{x >= 0} 1/2 ||A x - y||^2 + lam/2 ||x - x_anchor||^2 + tv TV(x)`` by
        PDHG (:class:`~medldm.solvers.tv.TotalVariation` on the operator ``[A; sqrt(lam) I]``),
        with ``lam = weight * ||A^H A||`` and ``tv = tv_weight`` (as in ``tv_<operator>``
        presets). The anchor (the LDM posterior mean) carries the prior; TV removes the
        noise-like residue the CG step leaves in unmeasured components."""
        from medldm.solvers.tv import TotalVariation

        lam = float(weight) * self.normal_scale
        anchored = AnchoredPhysics(self.physics_for(x_anchor.shape[0] // self.image_shape[0]), lam)
        n = x_anchor.shape[0] // self.image_shape[0]
        y = anchored.measurement(self.repeat(self.y, n), x_anchor)
        solver = TotalVariation(
            tv_weight, n_iter, constraint="nonnegative", preconditioning="scalar"
        )
        return solver.solve(y, anchored).estimate

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
        info: dict[str, Any] | None = None,
    ) -> Reconstruction:
        """Pack ``n`` samples ``(n * B, 1, *spatial)`` (physical units, real) into a
        :class:`Reconstruction`: optional final data-consistency step on each sample, then
        mean, pixel-wise std and residuals; complex data gets its phase back."""
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
                **(info or {}),
            },
        )


class AnchoredPhysics:
    """``x -> [A x ; sqrt(lam) x]``: a real operator with an identity block, so that a
    solver of ``1/2 ||A' x - y'||^2 + R(x)`` minimises
    ``1/2 ||A x - y||^2 + lam/2 ||x - anchor||^2 + R(x)`` for ``y' = [y ; sqrt(lam) anchor]``.
    Outputs are flattened per batch item (complex when ``A`` is)."""

    def __init__(self, physics: Any, lam: float):
        self.physics, self.root = physics, float(lam) ** 0.5
        self.spatial_dims = physics.spatial_dims
        self._measured_shape: tuple[int, ...] | None = None

    def measurement(self, y: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
        self._measured_shape = tuple(y.shape)
        self._anchor = anchor
        block = (self.root * anchor).reshape(anchor.shape[0], -1)
        return torch.cat([y.reshape(y.shape[0], -1), block.to(y.dtype)], dim=1)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        ax = self.physics.A(x)
        block = (self.root * x).reshape(x.shape[0], -1)
        return torch.cat([ax.reshape(ax.shape[0], -1), block.to(ax.dtype)], dim=1)

    def A_adjoint(self, r: torch.Tensor) -> torch.Tensor:
        m = 1
        for size in (self._measured_shape or ())[1:]:
            m *= size
        measured = r[:, :m].reshape((r.shape[0], *self._measured_shape[1:]))
        image = self.physics.A_adjoint(measured)
        block = r[:, m:].reshape(image.shape)
        block = block.real if block.is_complex() else block
        return image + self.root * block

    def A_AH(self, x: torch.Tensor) -> torch.Tensor:
        return self.A_adjoint(self.A(x))

    def fbp(self, y: torch.Tensor) -> torch.Tensor:
        """The direct reconstruction solvers start from (``initial_estimate``): the anchor,
        which already fits the data (a plain ``A'^H y'`` would be badly scaled for CT)."""
        return self._anchor.clone()

    def residual(self, x: torch.Tensor, y: torch.Tensor) -> float:
        diff = self.A(x) - y
        return float(torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(y).clamp_min(1e-30))

    def residual_over_noise(self, x: torch.Tensor, y: torch.Tensor) -> None:
        return None


class LatentSolverBase:
    """What every LDM solver shares around its paper-specific main loop: the common options,
    :meth:`begin` (checks, the problem, the starting noise) and :meth:`end` (final data
    consistency, samples, std, residuals, NFE and time in a Reconstruction)."""

    name = "latent"

    def _set_common(
        self,
        *,
        n_samples: int,
        final_dc: bool,
        final_dc_weight: float,
        final_dc_iter: int,
        normalization: str,
        phase: str | None,
        slice_axis: int,
        progress: bool,
        final_tv_weight: float = 0.0,
    ) -> None:
        self.n_samples = int(n_samples)
        self.final_dc = bool(final_dc)
        self.final_dc_weight = float(final_dc_weight)
        self.final_dc_iter = int(final_dc_iter)
        self.final_tv_weight = float(final_tv_weight)
        self.normalization = normalization
        self.phase = phase
        self.slice_axis = int(slice_axis)
        self.progress = bool(progress)

    def begin(
        self, y: torch.Tensor, physics: Any, prior: Any, generator: torch.Generator | None
    ) -> tuple[LatentProblem, torch.Tensor, tuple[float, int]]:
        """``(problem, z_T noise for n_samples copies, clock)`` after checking the prior."""
        check_prior(prior, self.name)
        clock = (time.perf_counter(), prior.nfe)
        problem = LatentProblem(
            y,
            physics,
            prior,
            normalization=self.normalization,
            phase=self.phase,
            slice_axis=self.slice_axis,
        )
        shape = problem.latent_shape(self.n_samples)
        noise = gaussian_like(torch.empty(shape, device=prior.device), generator)
        return problem, noise, clock

    def end(
        self,
        problem: LatentProblem,
        x: torch.Tensor,
        clock: tuple[float, int],
        *,
        iterations: int,
        info: dict[str, Any],
    ) -> Reconstruction:
        started, nfe_before = clock
        return problem.reconstruction(
            x,
            solver=self.name,
            started=started,
            nfe=problem.prior.nfe - nfe_before,
            iterations=iterations,
            final_dc=self.final_dc,
            final_dc_weight=self.final_dc_weight,
            final_dc_iter=self.final_dc_iter,
            final_tv_weight=self.final_tv_weight,
            info=info,
        )


def check_prior(prior: Any, solver: str) -> None:
    """A clear error when an LDM solver runs without a trained prior."""
    if prior is None or not hasattr(prior, "predict_eps"):
        raise InvalidInputError(
            f"the {solver} solver needs a trained LDM prior",
            fix="pass prior=<name or checkpoint folder> (e.g. prior=brain_t1_2d), see "
            "medldm.models.load_prior",
        )
    if getattr(prior, "unet", True) is None:
        raise InvalidInputError(
            f"the prior at {getattr(prior, 'path', '?')} has no diffusion model",
            fix="train the diffusion stage (medldm-train-diffusion) or use a shipped prior",
        )


def ddim_update(
    prior: Any,
    z_t: torch.Tensor,
    z0: torch.Tensor,
    t: int,
    t_prev: int | None,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step from ``z_t`` to ``z_{t_prev}`` given the clean estimate ``z0`` (the
    noise is re-derived from ``z0``, so a corrected ``z0`` moves the trajectory);
    ``t_prev=None`` returns ``z0``. ``eta=0`` is deterministic, ``eta=1`` DDPM-like."""
    if t_prev is None:
        return z0
    a_t = prior.alpha_bar(t)
    a_prev = prior.alpha_bar(t_prev)
    eps = (z_t - a_t.sqrt() * z0) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
    z = a_prev.sqrt() * z0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
    if eta > 0:
        z = z + sigma * gaussian_like(z, generator)
    return z


def gaussian_like(tensor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``tensor``, drawn from ``generator``'s device."""
    device = generator.device if generator is not None else tensor.device
    return torch.randn(tensor.shape, generator=generator, device=device).to(tensor)


def timestep_pairs(steps: Sequence[int]) -> list[tuple[int, int | None]]:
    """``[(t_0, t_1), ..., (t_last, None)]`` from a descending list of timesteps."""
    return [(t, steps[i + 1] if i + 1 < len(steps) else None) for i, t in enumerate(steps)]


def progress_over(items: Sequence[Any], progress: bool, description: str) -> Any:
    """``items``, wrapped in a tqdm progress bar when ``progress`` is true."""
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, leave=False)
