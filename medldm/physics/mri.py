"""Cartesian MRI: centred orthonormal FFTs, single-coil and multi-coil (SENSE) operators.

The Fourier transform used everywhere in medldm is defined here, once:

``fftnc(x, k) = fftshift(fftn(ifftshift(x), norm="ortho"))`` over the last ``k`` axes,

so the k-space centre (DC) sits at index ``n // 2`` of each axis and Parseval holds,
``||fftnc(x)|| = ||x||``. ``fft2c``/``ifft2c`` are the 2D case, as in fastMRI.

Layout: images are complex ``(B, C, *spatial)`` (real input is promoted); in 2D the readout
runs along H and the phase-encode lines along W (the last axis), as the masks of
:mod:`medldm.physics.masks` assume; in 3D the phase-encode plane is ``(H, W)``. A volume
acquired slice by slice (``kspace_dims=2``, multislice) has a 2D k-space per slice.

Example
-------
>>> import torch
>>> x = torch.randn(2, 1, 8, 8, dtype=torch.complex64)
>>> bool(torch.allclose(ifft2c(fft2c(x)), x, atol=1e-6))
True
>>> bool(torch.isclose(fft2c(x).norm(), x.norm()))  # orthonormal
True
"""

from __future__ import annotations

import copy

import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import LinearPhysics
from medldm.physics.inpainting import as_batched_mask, check_spatial_shape
from medldm.physics.noise import NoiseModel


# --- Fourier transforms ---------------------------------------------------------------
def _as_complex(x: torch.Tensor) -> torch.Tensor:
    if x.is_complex():
        return x
    if x.dtype == torch.float64:
        return x.to(torch.complex128)
    return x.to(torch.complex64)


def fftnc(x: torch.Tensor, spatial_dims: int = 2) -> torch.Tensor:
    """Centred orthonormal FFT over the last ``spatial_dims`` axes (image -> k-space)."""
    dims = tuple(range(-spatial_dims, 0))
    x = torch.fft.ifftshift(_as_complex(x), dim=dims)
    return torch.fft.fftshift(torch.fft.fftn(x, dim=dims, norm="ortho"), dim=dims)


def ifftnc(k: torch.Tensor, spatial_dims: int = 2) -> torch.Tensor:
    """Centred orthonormal inverse FFT over the last ``spatial_dims`` axes (k-space ->
    image); the exact inverse and adjoint of :func:`fftnc`."""
    dims = tuple(range(-spatial_dims, 0))
    k = torch.fft.ifftshift(_as_complex(k), dim=dims)
    return torch.fft.fftshift(torch.fft.ifftn(k, dim=dims, norm="ortho"), dim=dims)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two axes (fastMRI's ``fft2c``)."""
    return fftnc(x, 2)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D inverse FFT over the last two axes (fastMRI's ``ifft2c``)."""
    return ifftnc(k, 2)


def rss(coil_images: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares over the coil axis: ``sqrt(sum_c |x_c|^2)`` (magnitude image)."""
    return torch.sqrt((coil_images.abs() ** 2).sum(dim=dim))


# --- operators ------------------------------------------------------------------------
class _CartesianMRI(LinearPhysics):
    """Shared parts: the sampling mask (buffer), shape checks, noise on sampled points."""

    def __init__(
        self,
        mask: torch.Tensor,
        spatial_dims: int,
        noise_model: NoiseModel | None,
        kspace_dims: int | None = None,
    ):
        if spatial_dims not in (2, 3):
            raise InvalidInputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        kspace_dims = spatial_dims if kspace_dims is None else int(kspace_dims)
        if kspace_dims not in (2, spatial_dims):
            raise InvalidInputError(
                f"kspace_dims must be 2 or spatial_dims ({spatial_dims}), got {kspace_dims}",
                fix="use kspace_dims=2 for a stack of 2D acquisitions (multislice)",
            )
        super().__init__(spatial_dims=spatial_dims, noise_model=noise_model)
        self.kspace_dims = kspace_dims
        self.register_buffer("mask", as_batched_mask(mask, spatial_dims, "undersampling mask"))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape[-self.spatial_dims :])

    @property
    def acceleration(self) -> float:
        """Number of k-space locations over the number sampled."""
        return float(self.mask[0, 0].numel() / (self.mask[0, 0] != 0).sum())

    def _mask_for(self, tensor: torch.Tensor, what: str) -> torch.Tensor:
        check_spatial_shape(tensor, self.spatial_shape, what)
        return self.mask.to(device=tensor.device, dtype=tensor.real.dtype)

    def _fill_unsampled_pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``M^+ y``: divide by the mask weight where it is > 0, zero elsewhere."""
        mask = self._mask_for(y, "k-space")
        return torch.where(mask > 0, y / torch.where(mask > 0, mask, 1), 0)

    def with_mask(self, mask: torch.Tensor) -> _CartesianMRI:
        """The same operator (coil maps, noise model) sampling ``mask`` instead, e.g. one
        part of a k-space hold-out split (:mod:`medldm.physics.holdout`)."""
        clone = copy.copy(self)
        clone._buffers = dict(self._buffers)  # a shallow copy would share the mask buffer
        clone.__dict__.pop("_norm_cache", None)
        clone.mask = as_batched_mask(
            torch.as_tensor(mask).to(self.mask.device), self.spatial_dims, "undersampling mask"
        )
        return clone

    def noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Unsampled k-space locations are not measured: they stay exactly zero.
        return self.noise_model(y, generator) * (self._mask_for(y, "k-space") > 0)


class SingleCoilMRI(_CartesianMRI):
    """Single-coil Cartesian MRI: ``y = M ⊙ F x``.

    ``F`` is the centred orthonormal FFT over the ``kspace_dims`` last axes (:func:`fftnc`)
    and ``M`` the undersampling mask. ``A^H y = F^H (M ⊙ y)``. Because ``F`` is unitary the
    zero-filled inverse ``A^+ y = F^H (M^+ y)`` is the exact pseudo-inverse (for a 0/1 mask,
    ``M^+ = M``).

    Shapes: ``x`` is ``(B, C, *spatial)`` real or complex (real is promoted to complex);
    ``y`` is complex with the same shape, zero off the mask. Noise (e.g.
    ``GaussianNoise(sigma)``: ``sigma`` per real and imaginary part) is added on sampled
    locations only.

    Parameters
    ----------
    mask:
        Sampled k-space locations, ``(*spatial)`` or ``(B, 1, *spatial)``, bool or weights;
        e.g. from :class:`~medldm.physics.masks.RandomLineMask` (2D) or
        :class:`~medldm.physics.masks.VariableDensityMask2D` (3D).
    spatial_dims:
        2 for slices ``(B, C, H, W)``, 3 for volumes ``(B, C, D, H, W)``.
    noise_model:
        Measurement noise, default none.
    kspace_dims:
        The trailing axes ``F`` runs over: ``spatial_dims`` (default: 3D k-space for a
        volume) or 2 for a volume acquired as a stack of 2D slices (multislice: each slice
        ``(H, W)`` its own 2D k-space, the slice axis stays in image space).

    Example
    -------
    >>> import torch
    >>> from medldm.physics.masks import EquispacedLineMask
    >>> mask = EquispacedLineMask(4)((32, 32), generator=torch.Generator().manual_seed(0))
    >>> physics = SingleCoilMRI(mask)
    >>> x = torch.rand(1, 1, 32, 32)
    >>> y = physics.A(x)
    >>> y.dtype, bool((y[..., ~mask] == 0).all())
    (torch.complex64, True)
    >>> bool(torch.allclose(physics.A(physics.A_dagger(y)), y, atol=1e-5))
    True
    """

    def __init__(
        self,
        mask: torch.Tensor,
        spatial_dims: int = 2,
        noise_model: NoiseModel | None = None,
        kspace_dims: int | None = None,
    ):
        super().__init__(mask, spatial_dims, noise_model, kspace_dims)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self._mask_for(x, "image") * fftnc(x, self.kspace_dims)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifftnc(self._mask_for(y, "k-space") * y, self.kspace_dims)

    def A_dagger(self, y: torch.Tensor, **_: object) -> torch.Tensor:
        """Zero-filled reconstruction, the exact pseudo-inverse (``F`` is unitary)."""
        return ifftnc(self._fill_unsampled_pseudo_inverse(y), self.kspace_dims)


class MultiCoilMRI(_CartesianMRI):
    """Multi-coil Cartesian MRI (SENSE): ``y_c = M ⊙ F (S_c x)`` for coils ``c = 1..N_c``.

    ``A^H y = sum_c conj(S_c) F^H (M ⊙ y_c)``. ``A_dagger`` is CG-SENSE: conjugate gradients
    on ``A^H A x = A^H y`` (inherited from :class:`~medldm.physics.base.LinearPhysics`).
    With maps normalised so ``sum_c |S_c|^2 = 1`` (see
    :func:`~medldm.physics.coils.birdcage_sensitivities`) and full sampling, ``A^H A = I``.

    Shapes: ``x`` is ``(B, 1, *spatial)`` (one image, complex or real); ``y`` is complex
    ``(B, N_c, *spatial)`` (coils on the channel axis, as fastMRI stores k-space).

    Parameters
    ----------
    mask:
        Sampled k-space locations, ``(*spatial)`` or ``(B, 1, *spatial)``; shared by coils.
    coil_sensitivities:
        Complex maps ``(N_c, *spatial)`` shared by the batch, or ``(B, N_c, *spatial)``.
    spatial_dims:
        2 or 3.
    noise_model:
        Measurement noise (complex Gaussian per coil), default none.
    kspace_dims:
        As for :class:`SingleCoilMRI`: 2 for a multislice volume, else ``spatial_dims``.

    Example
    -------
    >>> import torch
    >>> from medldm.physics.coils import birdcage_sensitivities
    >>> maps = birdcage_sensitivities(4, (16, 16))
    >>> physics = MultiCoilMRI(torch.ones(16, 16, dtype=torch.bool), maps)
    >>> x = torch.rand(1, 1, 16, 16, dtype=torch.float64)
    >>> y = physics.A(x)
    >>> y.shape
    torch.Size([1, 4, 16, 16])
    >>> bool(torch.allclose(physics.A_dagger(y).real, x, atol=1e-4))
    True
    """

    def __init__(
        self,
        mask: torch.Tensor,
        coil_sensitivities: torch.Tensor,
        spatial_dims: int = 2,
        noise_model: NoiseModel | None = None,
        kspace_dims: int | None = None,
    ):
        super().__init__(mask, spatial_dims, noise_model, kspace_dims)
        maps = _as_complex(torch.as_tensor(coil_sensitivities))
        if maps.ndim == spatial_dims + 1:
            maps = maps.unsqueeze(0)
        if maps.ndim != spatial_dims + 2 or tuple(maps.shape[2:]) != self.spatial_shape:
            raise InvalidInputError(
                f"coil_sensitivities has shape {tuple(coil_sensitivities.shape)}; expected "
                f"(n_coils, {', '.join(map(str, self.spatial_shape))}) to match the mask",
            )
        if not bool(torch.isfinite(maps).all()):
            raise InvalidInputError("coil_sensitivities contain NaN or Inf")
        self.register_buffer("coil_sensitivities", maps)

    @property
    def n_coils(self) -> int:
        return int(self.coil_sensitivities.shape[1])

    def _check_single_channel(self, x: torch.Tensor) -> None:
        if x.ndim >= 2 and x.shape[1] != 1:
            raise InvalidInputError(
                f"multi-coil MRI takes one image channel, got x of shape {tuple(x.shape)}",
                fix="pass x as (B, 1, *spatial)",
            )

    def A(self, x: torch.Tensor) -> torch.Tensor:
        mask = self._mask_for(x, "image")
        self._check_single_channel(x)
        coil_images = self.coil_sensitivities.to(x.device) * _as_complex(x)
        return mask * fftnc(coil_images, self.kspace_dims)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        mask = self._mask_for(y, "k-space")
        coil_images = ifftnc(mask * y, self.kspace_dims)
        maps = self.coil_sensitivities.to(y.device)
        return (torch.conj(maps) * coil_images).sum(dim=1, keepdim=True)
