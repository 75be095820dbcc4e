"""Smooth simulated phase, to turn magnitude images into realistic complex MR images.

Real MR images are complex with a slowly varying phase (B0 inhomogeneity, coil and
receiver phase). Simulating undersampled k-space from a real magnitude image would give
k-space with Hermitian symmetry that real scans lack, so magnitude images are given a
random smooth phase first: a polynomial of degree <= ``degree`` in the coordinates scaled to
[-1, 1], with random coefficients, rescaled so that its largest absolute value is
``max_radians``.

Example
-------
>>> import torch
>>> phase = smooth_phase((32, 32), torch.Generator().manual_seed(0), max_radians=1.0)
>>> phase.shape, round(float(phase.abs().max()), 4)
(torch.Size([32, 32]), 1.0)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import LinearPhysics


def smooth_phase(
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    max_radians: float = math.pi / 2,
    *,
    degree: int = 2,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random smooth phase map in radians, of spatial ``shape`` (2D or 3D).

    ``phase(r) = s * sum_{|a| <= degree} c_a r^a`` with ``r`` the pixel coordinates scaled to
    [-1, 1] per axis, ``c_a ~ N(0, 1)`` drawn from ``generator``, and ``s`` chosen so that
    ``max |phase| = max_radians``. The constant term is included (a global phase offset).
    Drawn on the generator's device (CPU without a generator).
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise InvalidInputError(f"phase shape {shape} must have positive sizes")
    if not max_radians >= 0:
        raise InvalidInputError(f"max_radians must be >= 0, got {max_radians}")
    if degree < 0:
        raise InvalidInputError(f"degree must be >= 0, got {degree}")
    device = generator.device if generator is not None else torch.device("cpu")
    axes = [torch.linspace(-1, 1, n, dtype=torch.float64, device=device) for n in shape]
    coordinates = torch.meshgrid(*axes, indexing="ij")
    exponents = [
        powers
        for powers in itertools.product(range(degree + 1), repeat=len(shape))
        if sum(powers) <= degree
    ]
    coefficients = torch.randn(
        len(exponents), generator=generator, dtype=torch.float64, device=device
    )
    phase = torch.zeros(shape, dtype=torch.float64, device=device)
    for coefficient, powers in zip(coefficients, exponents, strict=True):
        term = torch.ones(shape, dtype=torch.float64, device=device)
        for coordinate, power in zip(coordinates, powers, strict=True):
            term = term * coordinate**power
        phase = phase + coefficient * term
    peak = phase.abs().max().clamp_min(1e-12)
    return (phase * (max_radians / peak)).to(dtype)


def with_smooth_phase(
    magnitude: torch.Tensor,
    generator: torch.Generator | None = None,
    max_radians: float = math.pi / 2,
    *,
    spatial_dims: int = 2,
    degree: int = 2,
) -> torch.Tensor:
    """``magnitude * exp(i phase)`` with an independent smooth phase per image.

    ``magnitude`` is real ``(B, C, *spatial)``; the result is complex of the same shape
    (``complex64`` for float32 input, ``complex128`` for float64). Phases are drawn in batch
    order, so a seed fixes them all.

    Example
    -------
    >>> import torch
    >>> image = torch.rand(2, 1, 16, 16)
    >>> complex_image = with_smooth_phase(image, torch.Generator().manual_seed(0), 1.0)
    >>> complex_image.dtype, bool(torch.allclose(complex_image.abs(), image, atol=1e-6))
    (torch.complex64, True)
    """
    if magnitude.is_complex():
        raise InvalidInputError("with_smooth_phase takes a real magnitude image")
    if magnitude.ndim < spatial_dims + 1:
        raise InvalidInputError(
            f"image of shape {tuple(magnitude.shape)} has fewer than {spatial_dims} spatial "
            f"axes plus a batch axis"
        )
    spatial = tuple(magnitude.shape[-spatial_dims:])
    leading = tuple(magnitude.shape[:-spatial_dims])
    dtype = torch.float64 if magnitude.dtype == torch.float64 else torch.float32
    phases = torch.stack(
        [
            smooth_phase(spatial, generator, max_radians, degree=degree, dtype=dtype)
            for _ in range(math.prod(leading))
        ]
    ).reshape(magnitude.shape)
    return torch.polar(magnitude.to(dtype), phases.to(magnitude.device))


def lowres_phase(
    y: torch.Tensor, physics: LinearPhysics, width_fraction: float = 0.04
) -> torch.Tensor:
    """Phase map ``exp(i phi)`` of a low-resolution image from the measured k-space centre.

    The measurement is weighted by a Gaussian window of standard deviation
    ``width_fraction`` x the matrix size on every k-space axis (so only the fully
    sampled centre contributes), brought back with ``A^H`` (coil-combined for SENSE), and
    its phase kept. Used to constrain a reconstruction to ``m exp(i phi)`` with a real,
    non-negative magnitude ``m`` (phase-constrained / partial-Fourier style).
    """
    kspace_dims = getattr(physics, "kspace_dims", physics.spatial_dims)  # multislice: 2
    window = torch.ones((), device=y.device)
    for axis in range(kspace_dims):
        size = y.shape[-kspace_dims + axis]
        k = torch.arange(size, device=y.device) - size // 2
        weights = torch.exp(-0.5 * (k / max(width_fraction * size, 1.0)) ** 2)
        shape = [1] * kspace_dims
        shape[axis] = size
        window = window * weights.reshape(shape)
    low = physics.A_adjoint(y * window)
    magnitude = low.abs()
    floor = 1e-6 * magnitude.amax(dim=tuple(range(1, low.ndim)), keepdim=True).clamp_min(1e-30)
    return torch.where(magnitude > floor, low / magnitude.clamp_min(1e-30), torch.ones_like(low))


class PhaseConstrained(LinearPhysics):
    """``A'(m) = A(m exp(i phi))`` for a real image ``m``: a complex operator seen through
    a fixed phase map. Its adjoint is ``Re(exp(-i phi) A^H y)``, exact for the real inner
    product, so any real-valued solver (TV with a non-negativity constraint) can run on it.

    Example
    -------
    >>> import torch
    >>> from medldm.physics.mri import SingleCoilMRI
    >>> op = PhaseConstrained(SingleCoilMRI(torch.ones(8, 8, dtype=torch.bool)),
    ...                       torch.ones(1, 1, 8, 8, dtype=torch.complex64))
    >>> m = torch.rand(1, 1, 8, 8)
    >>> bool(torch.allclose(op.A_adjoint(op.A(m)), m, atol=1e-5))
    True
    """

    def __init__(self, physics: LinearPhysics, phase: torch.Tensor):
        super().__init__(physics.spatial_dims, physics.noise_model)
        self.physics = physics
        self.kspace_dims = getattr(physics, "kspace_dims", physics.spatial_dims)  # multislice
        self.register_buffer("phase", phase)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(x.to(self.phase.dtype) * self.phase)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (torch.conj(self.phase) * self.physics.A_adjoint(y)).real
