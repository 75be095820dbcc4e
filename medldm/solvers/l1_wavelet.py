"""l1-wavelet regularised reconstruction by FISTA (compressed-sensing MRI, sparse-view CT).

Solves

    min_x  1/2 ||A x - y||^2 + lambda ||W x||_1   [+ x real / x >= 0],

with ``W`` an orthonormal discrete wavelet transform over the spatial axes (2D, or 3D for
volumes): Daubechies filters with orthogonalised boundary wavelets (``ptwt``'s matrix
transform, Haar-like at the image border instead of padding), so ``W^T W = I`` and, for
sizes divisible by ``2**levels``, ``W W^T = I``. (Other sizes: each odd approximation band is
zero-padded by one sample, so ``W`` is an isometry onto a slightly larger coefficient space,
a tight frame; the shrinkage below is then the usual frame-thresholding step.) The coarsest
approximation band is not penalised unless ``threshold_coarse`` is set (its coefficients
carry the image's mean intensity, not its edges). For complex ``x`` (MRI), ``W`` acts on
the real and imaginary parts and ``|.|`` is the complex modulus of each coefficient, so the
shrinkage keeps the phase (complex soft-thresholding).

FISTA (Beck & Teboulle 2009, constant step ``1 / L``, ``L = ||A||^2``)::

    v     <- z - A^H (A z - y) / L                 gradient step on the data term
    x'    <- W^T S_{lambda/L}(W v)                 prox of lambda ||W .||_1 (/ L)
    x'    <- project_C(x')                         optional: real part, clipped at 0
    t'    <- (1 + sqrt(1 + 4 t^2)) / 2
    z     <- x' + (t - 1) / t' (x' - x) ;  x <- x', t <- t'

with the complex soft-threshold ``S_tau(c) = c max(0, 1 - tau / |c|)``. ``||A||`` comes from
the physics (``physics.norm``: power iteration, cached), times a 2 % margin because power
iteration approaches it from below. The start is ``physics.x_init(y)`` (zero-filled for
MRI, FBP for CT).

``random_shift=True`` draws, at every iteration, a circular shift of the image by up to
``2**levels - 1`` pixels per axis before the transform (and undoes it after): the wavelet
grid moves, as BART's ``pics -R W`` does by default, which removes the blocky artefacts of a
fixed dyadic grid. The iteration is then a stochastic proximal-gradient method (no
monotone objective); the shifts come from ``generator`` (a fixed seed when none is given),
so a run is reproducible. With a non-negativity constraint the projection follows the
shrinkage (the prox of the sum is not available in closed form; exact for ``"real"``).

``phase="lowres"`` (complex MRI data) solves, as :class:`~medldm.solvers.tv.TotalVariation`
does, for a real magnitude ``m`` behind a smooth phase map ``phi`` estimated from the
measured k-space centre, ``A'(m) = A(m exp(i phi))``; the estimate is ``m exp(i phi)``.

Units: ``weight`` (lambda) is in units of ``y^2`` per unit of ``|W x|`` (intensity x
pixels, since ``W`` is orthonormal), like TV's weight; the tuned presets in
``configs/solver/l1_wavelet_<operator>.yaml`` assume images normalised to [0, 1] as the
data cards do. ``seconds`` in the result is the wall time.

References
----------
A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse
problems", SIAM J. Imaging Sciences 2(1), 183-202 (2009). M. Lustig, D. Donoho, J. M. Pauly,
"Sparse MRI: the application of compressed sensing for rapid MR imaging", MRM 58(6),
1182-1195 (2007). I. Daubechies, M. Defrise, C. De Mol, "An iterative thresholding algorithm
for linear inverse problems with a sparsity constraint", CPAM 57 (2004). M. Uecker et al.,
BART (cycle spinning in ``pics``). M. Wolter et al., "ptwt - The PyTorch Wavelet Toolbox",
JMLR 25 (2024) (orthogonal boundary wavelets).

Example
-------
>>> import torch
>>> from medldm.physics.base import LinearPhysics
>>> class Identity(LinearPhysics):
...     def A(self, x): return x
...     def A_adjoint(self, y): return y
>>> blocks = torch.zeros(1, 1, 32, 32); blocks[..., 8:24, 8:24] = 1.0
>>> noise = 0.1 * torch.randn(blocks.shape, generator=torch.Generator().manual_seed(0))
>>> rec = L1Wavelet(weight=0.1, n_iter=50, wavelet="haar").solve(blocks + noise, Identity())
>>> bool((rec.estimate - blocks).norm() < 0.5 * noise.norm())
True
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, ClassVar

import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.physics.base import LinearPhysics
from medldm.solvers.base import Callback, Reconstruction
from medldm.solvers.common import ensure_finite, finish, progress_over
from medldm.solvers.tv import CONSTRAINTS, project_onto_constraint

#: Safety factor on ||A||^2: power iteration approaches the norm from below.
LIPSCHITZ_MARGIN = 1.02


class OrthonormalWavelet:
    """An orthonormal 2D or 3D DWT over the last ``spatial_dims`` axes, real or complex.

    ``forward(x)`` returns the coefficient bands as a list of tensors (the coarsest
    approximation first, then the detail bands from coarse to fine), each shaped
    ``(2, *leading, *band)`` where axis 0 holds the real and imaginary parts;
    ``inverse(bands, like)`` returns an image shaped and typed like ``like``. The number of
    levels is capped at what the image size allows for the filter length (PyWavelets'
    ``dwt_max_level``).
    """

    def __init__(self, wavelet: str, levels: int, spatial_dims: int, spatial_shape: tuple):
        import ptwt
        import pywt

        if spatial_dims not in (2, 3):
            raise InvalidInputError(f"wavelets need 2 or 3 spatial axes, got {spatial_dims}")
        self.filter_length = pywt.Wavelet(wavelet).dec_len
        self.levels = max(1, min(levels, pywt.dwt_max_level(min(spatial_shape), wavelet)))
        if spatial_dims == 2:
            self._analysis = ptwt.MatrixWavedec2(wavelet, self.levels)
            self._synthesis = ptwt.MatrixWaverec2(wavelet)
        else:
            self._analysis = ptwt.MatrixWavedec3(wavelet, self.levels)
            self._synthesis = ptwt.MatrixWaverec3(wavelet)
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        parts = torch.stack((x.real, x.imag)) if x.is_complex() else x.unsqueeze(0)
        with warnings.catch_warnings():  # ptwt builds sparse matrices: torch's beta warnings
            warnings.simplefilter("ignore", UserWarning)
            coefficients = self._analysis(parts)
        bands = [coefficients[0]]
        # per level: the detail bands' names (3D, a dict) or their count (2D, a tuple)
        self._layout: list[Any] = []
        for level in coefficients[1:]:
            if isinstance(level, dict):
                self._layout.append(list(level))
                bands.extend(level.values())
            else:
                self._layout.append(len(level))
                bands.extend(level)
        return bands

    def inverse(self, bands: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """The image of ``bands`` (laid out as the last ``forward`` returned them)."""
        coefficients: list[Any] = [bands[0]]
        start = 1
        for level in self._layout:
            count = len(level) if isinstance(level, list) else level
            details = bands[start : start + count]
            start += count
            coefficients.append(
                dict(zip(level, details, strict=True))
                if isinstance(level, list)
                else tuple(details)
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            parts = self._synthesis(tuple(coefficients))
        parts = parts[(..., *(slice(0, n) for n in like.shape[-self.spatial_dims :]))]
        if like.is_complex():
            return torch.complex(parts[0], parts[1]).to(like.dtype)
        return parts[0].to(like.dtype)


def soft_threshold(bands: list[torch.Tensor], tau: float, skip_first: bool) -> list[torch.Tensor]:
    """Complex soft-thresholding ``c max(0, 1 - tau / |c|)`` of every band (axis 0 holds
    the real and imaginary parts, so ``|c|`` is the complex modulus)."""
    out = []
    for index, band in enumerate(bands):
        if index == 0 and skip_first:
            out.append(band)
            continue
        modulus = torch.linalg.vector_norm(band, dim=0, keepdim=True)
        out.append(band * (1 - tau / modulus.clamp_min(1e-30)).clamp_min(0.0))
    return out


def wavelet_l1_norm(bands: list[torch.Tensor], skip_first: bool) -> float:
    """``sum |c|`` over the penalised bands (complex modulus)."""
    penalised = bands[1:] if skip_first else bands
    return float(sum(torch.linalg.vector_norm(b, dim=0).sum() for b in penalised))


class L1Wavelet:
    """l1-wavelet regularised least squares by FISTA.

    Parameters
    ----------
    weight:
        The l1 weight ``lambda >= 0`` (see the module docstring for its units).
    n_iter:
        Maximum number of FISTA iterations.
    wavelet:
        A discrete orthogonal wavelet of PyWavelets' list (``"db4"``, ``"haar"``, ``"sym4"``).
    levels:
        Decomposition levels (capped at what the image size allows).
    random_shift:
        Move the wavelet grid by a random circular shift at every iteration (cycle
        spinning, as BART does).
    threshold_coarse:
        Also shrink the coarsest approximation band.
    constraint:
        ``None``, ``"real"`` or ``"nonnegative"`` (implies real).
    phase:
        ``None``, or ``"lowres"`` for complex (MRI) data: solve for a real, non-negative
        magnitude behind a low-resolution phase map from the measured k-space centre.
    tol:
        Stop early when ``||x_k+1 - x_k|| / ||x_k+1||`` falls below ``tol`` (0: never).
    progress:
        Show a tqdm progress bar.
    """

    name = "l1_wavelet"
    requires: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        weight: float = 0.002,
        n_iter: int = 100,
        *,
        wavelet: str = "db4",
        levels: int = 4,
        random_shift: bool = True,
        threshold_coarse: bool = False,
        constraint: str | None = None,
        phase: str | None = None,
        tol: float = 0.0,
        progress: bool = False,
    ):
        import pywt

        if not weight >= 0:
            raise InvalidInputError(f"the l1-wavelet weight must be >= 0, got {weight}")
        if int(n_iter) < 1 or int(levels) < 1:
            raise InvalidInputError(f"n_iter and levels must be >= 1, got {n_iter}, {levels}")
        if wavelet not in pywt.wavelist(kind="discrete") or not pywt.Wavelet(wavelet).orthogonal:
            raise InvalidInputError(
                f"{wavelet!r} is not an orthogonal discrete wavelet",
                fix="use e.g. 'haar', 'db2', 'db4', 'sym4' (pywt.wavelist(kind='discrete'))",
            )
        if constraint not in CONSTRAINTS:
            raise InvalidInputError(
                f"unknown constraint {constraint!r}", fix=f"use one of {CONSTRAINTS}"
            )
        if phase not in (None, "lowres"):
            raise InvalidInputError(f"unknown phase option {phase!r}", fix="use None or 'lowres'")
        self.weight = float(weight)
        self.n_iter = int(n_iter)
        self.wavelet = wavelet
        self.levels = int(levels)
        self.random_shift = bool(random_shift)
        self.threshold_coarse = bool(threshold_coarse)
        self.constraint = constraint
        self.phase = phase
        self.tol = float(tol)
        self.progress = bool(progress)

    def _options(self, **changes: Any) -> dict[str, Any]:
        options = {
            "weight": self.weight,
            "n_iter": self.n_iter,
            "wavelet": self.wavelet,
            "levels": self.levels,
            "random_shift": self.random_shift,
            "threshold_coarse": self.threshold_coarse,
            "constraint": self.constraint,
            "phase": self.phase,
            "tol": self.tol,
            "progress": self.progress,
        }
        return {**options, **changes}

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
        if self.phase == "lowres" and y.is_complex():
            from medldm.physics.phase import PhaseConstrained, lowres_phase

            phase_map = lowres_phase(y, physics)
            magnitude_solver = L1Wavelet(**self._options(phase=None, constraint="nonnegative"))
            inner = magnitude_solver.solve(
                y, PhaseConstrained(physics, phase_map), generator=generator, callback=callback
            )
            estimate = inner.estimate.to(phase_map.dtype) * phase_map
            info = {**inner.info, "phase": "lowres"}
            return finish(
                estimate, y, physics, iterations=inner.iterations, started=started, info=info
            )

        x = project_onto_constraint(physics.x_init(y), self.constraint)
        spatial_dims = x.ndim - 2
        transform = OrthonormalWavelet(self.wavelet, self.levels, spatial_dims, x.shape[2:])
        lipschitz = LIPSCHITZ_MARGIN * physics.norm(x) ** 2
        if lipschitz <= 0:
            raise InvalidInputError("the operator is zero (||A|| = 0)", fix="check the physics")
        tau = self.weight / lipschitz
        axes = tuple(range(-spatial_dims, 0))
        period = 2**transform.levels
        if generator is None:
            generator = torch.Generator().manual_seed(0)

        def shrink(v: torch.Tensor) -> torch.Tensor:
            if not self.random_shift:
                bands = soft_threshold(transform.forward(v), tau, not self.threshold_coarse)
                return transform.inverse(bands, v)
            shift = torch.randint(
                0, period, (spatial_dims,), generator=generator, device=generator.device
            ).tolist()
            shifted = torch.roll(v, shift, axes)
            bands = soft_threshold(transform.forward(shifted), tau, not self.threshold_coarse)
            return torch.roll(transform.inverse(bands, v), [-s for s in shift], axes)

        z, t = x, 1.0
        change, done = float("inf"), 0
        for k in progress_over(range(self.n_iter), self.progress, "l1-wavelet (FISTA)"):
            v = z - physics.A_adjoint(physics.A(z) - y) / lipschitz
            x_new = project_onto_constraint(shrink(v), self.constraint)
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            change = float(
                torch.linalg.vector_norm(x_new - x)
                / torch.linalg.vector_norm(x_new).clamp_min(1e-30)
            )
            x, t = ensure_finite(x_new, "estimate", self.name), t_new
            done = k + 1
            if callback is not None:
                callback(k, x)
            if change < self.tol:
                break

        data_misfit = 0.5 * float(torch.linalg.vector_norm(physics.A(x) - y)) ** 2
        penalty = wavelet_l1_norm(transform.forward(x), not self.threshold_coarse)
        info = {
            "weight": self.weight,
            "wavelet": self.wavelet,
            "levels": transform.levels,
            "random_shift": self.random_shift,
            "constraint": self.constraint,
            "lipschitz": lipschitz,
            "relative_change": change,
            "objective": data_misfit + self.weight * penalty,
        }
        return finish(x, y, physics, iterations=done, started=started, info=info)
