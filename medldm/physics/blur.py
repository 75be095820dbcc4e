"""Microscopy blur: convolution with a 2D/3D point spread function (PSF), and PSF sources.

PSFs come from a measured file (:func:`load_psf`), a bead image (:func:`psf_from_beads`),
or theory (:func:`gaussian_psf`, :func:`airy_psf`). Every PSF is a tensor of spatial shape
``(h, w)`` or ``(d, h, w)`` (torch axis order: z, y, x), non-negative, with unit sum, and
its centre at index ``n // 2`` of each axis.

About the measured PSF shipped with the shared data: ``microscopy/psf.tif`` is NaN in every
voxel (922,500 of 922,500), so :func:`load_psf` refuses it. :func:`psf_with_fallback` then
fits a 3D Gaussian to the brightest bead of ``Bead_Image1_crop.tif`` (next to it), or
returns a documented Gaussian when no bead image is available either.

Example
-------
>>> import torch
>>> psf = gaussian_psf((9, 9), sigma_px=1.5)
>>> round(float(psf.sum()), 6), tuple(int(i) for i in divmod(int(psf.argmax()), 9))
(1.0, (4, 4))
>>> blur = Blur(psf)
>>> round(blur.A(torch.ones(1, 1, 16, 16)).mean().item(), 6)  # unit sum: flat stays flat
1.0
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, optimize, special

from medldm.errors import InvalidInputError, MedLDMError
from medldm.io.finite import check_nan_policy
from medldm.physics.base import CONVOLUTION, LinearPhysics
from medldm.physics.noise import NoiseModel

logger = logging.getLogger(__name__)

BOUNDARIES = ("circular", "zero")

#: Fallback when neither a usable measured PSF nor a bead image is available: a Gaussian
#: with this standard deviation in pixels, per axis (z, y, x). The values are those
#: :func:`psf_from_beads` fits to the brightest bead of ``Bead_Image1_crop.tif``, rounded.
FALLBACK_PSF_SIGMA_PX = (2.0, 4.2, 3.2)
FALLBACK_PSF_SHAPE = (17, 35, 27)


# --- PSF checks -----------------------------------------------------------------------
def normalise_psf(
    psf: torch.Tensor | np.ndarray, *, path: str | Path | None = None, what: str = "PSF"
) -> torch.Tensor:
    """Check a PSF (finite, some positive mass) and scale it to unit sum.

    Negative values (left by background subtraction of measured PSFs) are set to 0 first:
    a PSF is an intensity and a negative lobe would make the blur add negative light.
    """
    psf = torch.as_tensor(np.asarray(psf) if isinstance(psf, np.ndarray) else psf)
    if psf.is_complex():
        raise InvalidInputError(f"{what} must be real, got {psf.dtype}", path=path)
    psf = psf.to(torch.float64)
    if psf.numel() == 0:
        raise InvalidInputError(f"{what} is empty", path=path)
    finite = torch.isfinite(psf)
    if not bool(finite.all()):
        raise InvalidInputError(
            f"{what} has {int((~finite).sum())} NaN/Inf values of {psf.numel()}",
            path=path,
            fix="replace them (e.g. load_psf(..., nan_policy='zero')) or use a theoretical PSF",
        )
    psf = psf.clamp_min(0)
    total = float(psf.sum())
    if not total > 0:
        raise InvalidInputError(
            f"{what} sums to zero (no positive values)",
            path=path,
            fix="use a measured PSF with signal, psf_from_beads() or gaussian_psf()/airy_psf()",
        )
    return (psf / total).to(torch.float32)


# --- theoretical PSFs -----------------------------------------------------------------
def _centred_axes(shape: Sequence[int]) -> list[torch.Tensor]:
    return [torch.arange(n, dtype=torch.float64) - n // 2 for n in shape]


def gaussian_psf(shape: Sequence[int], sigma_px: float | Sequence[float]) -> torch.Tensor:
    """Sampled Gaussian PSF of ``shape`` (2D or 3D), centred at ``n // 2``, unit sum.

    ``psf[i] ∝ exp(-sum_k i_k^2 / (2 sigma_k^2))`` with ``i`` the offset from the centre in
    pixels and ``sigma_px`` one value or one per axis (z, y, x order). Odd sizes of
    ``2 * ceil(4 sigma) + 1`` reproduce ``scipy.ndimage.gaussian_filter`` (its default
    ``truncate=4``).

    >>> gaussian_psf((5, 5), 1.0).shape
    torch.Size([5, 5])
    """
    shape = tuple(int(n) for n in shape)
    sigmas = (
        (float(sigma_px),) * len(shape)
        if isinstance(sigma_px, int | float)
        else tuple(float(s) for s in sigma_px)
    )
    if len(sigmas) != len(shape) or min(sigmas) <= 0 or min(shape) < 1:
        raise InvalidInputError(
            f"gaussian_psf needs positive sizes and one positive sigma per axis, got "
            f"shape {shape} and sigma_px {sigma_px}"
        )
    grids = torch.meshgrid(*_centred_axes(shape), indexing="ij")
    exponent = sum(g**2 / (2 * s**2) for g, s in zip(grids, sigmas, strict=True))
    return normalise_psf(torch.exp(-exponent))


def airy_psf(
    shape: Sequence[int],
    numerical_aperture: float,
    wavelength_um: float,
    pixel_size_um: float,
    *,
    z_spacing_um: float | None = None,
    refractive_index: float = 1.0,
) -> torch.Tensor:
    """Widefield diffraction-limited PSF (intensity), 2D Airy pattern or its 3D extension.

    2D: ``I(r) = [2 J1(v) / v]^2`` with ``v = 2 pi NA r / lambda`` (``r`` the distance from
    the centre in µm), first zero at ``0.61 lambda / NA``. 3D ``(d, h, w)``: a separable
    approximation, the in-focus Airy pattern times a Gaussian along z whose FWHM is the
    widefield axial resolution ``0.88 lambda / (n - sqrt(n^2 - NA^2))`` (``n`` the
    immersion refractive index). It ignores the defocus rings of a real widefield PSF (the
    Born & Wolf model); use a measured or bead-fitted PSF when they matter.

    Parameters
    ----------
    shape:
        ``(h, w)`` or ``(d, h, w)`` in pixels.
    numerical_aperture, wavelength_um:
        Objective NA and emission wavelength (µm).
    pixel_size_um:
        Lateral pixel size (µm) in the sample.
    z_spacing_um:
        Slice spacing (µm), 3D only.
    refractive_index:
        Immersion medium (1.0 air, 1.33 water, 1.515 oil); at least the NA.

    Examples
    --------
    >>> psf = airy_psf((33, 33), numerical_aperture=1.4, wavelength_um=0.52,
    ...                pixel_size_um=0.05, refractive_index=1.515)
    >>> psf.shape, round(float(psf.sum()), 6)
    (torch.Size([33, 33]), 1.0)
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3):
        raise InvalidInputError(f"airy_psf shape {shape} must be (h, w) or (d, h, w)")
    if not 0 < numerical_aperture <= refractive_index:
        raise InvalidInputError(
            f"numerical_aperture must be in (0, refractive_index={refractive_index}], "
            f"got {numerical_aperture}"
        )
    if not (wavelength_um > 0 and pixel_size_um > 0):
        raise InvalidInputError("wavelength_um and pixel_size_um must be > 0")
    axes = _centred_axes(shape)
    y, x = torch.meshgrid(axes[-2], axes[-1], indexing="ij")
    radius_um = torch.sqrt(x**2 + y**2).numpy() * pixel_size_um
    v = 2 * math.pi * numerical_aperture * radius_um / wavelength_um
    with np.errstate(invalid="ignore", divide="ignore"):
        amplitude = np.where(v > 0, 2 * special.j1(v) / v, 1.0)
    lateral = torch.from_numpy(amplitude**2)
    if len(shape) == 2:
        return normalise_psf(lateral)
    if not (z_spacing_um and z_spacing_um > 0):
        raise InvalidInputError("a 3D airy_psf needs z_spacing_um > 0")
    n = refractive_index
    fwhm_z_um = 0.88 * wavelength_um / (n - math.sqrt(n**2 - numerical_aperture**2))
    sigma_z_px = fwhm_z_um / (2 * math.sqrt(2 * math.log(2))) / z_spacing_um
    axial = torch.exp(-(axes[0] ** 2) / (2 * sigma_z_px**2))
    return normalise_psf(axial[:, None, None] * lateral[None])


# --- measured PSFs --------------------------------------------------------------------
def load_psf(path: str | Path, nan_policy: str = "raise") -> torch.Tensor:
    """Read a measured PSF (TIFF, NIfTI or DICOM via :func:`medldm.io.load`), unit sum.

    Parameters
    ----------
    path:
        The PSF file. Returned in torch axis order ``(z, y, x)`` / ``(y, x)``.
    nan_policy:
        What to do with NaN/Inf voxels: ``"raise"`` (default) or ``"zero"`` (set to 0).
        A PSF that is NaN/Inf *everywhere* always raises, naming the file: there is nothing
        to repair.

    Raises
    ------
    InvalidInputError
        NaN/Inf values (with ``"raise"``), an all-NaN file, no positive values, or a file
        with channel/time axes.
    """
    from medldm.io import load  # here: io imports heavy readers physics does not need

    path = Path(path)
    check_nan_policy(nan_policy)
    if nan_policy == "ignore":
        raise InvalidInputError("a PSF cannot keep NaN values", fix="use 'raise' or 'zero'")
    image = load(path, nan_policy="ignore")
    if any(axis not in ("x", "y", "z") for axis in image.axes):
        raise InvalidInputError(f"PSF has axes {image.axes}; expected spatial axes only", path=path)
    # MedImage arrays are (x, y[, z]); torch tensors here are (z, y, x).
    array = np.ascontiguousarray(np.asarray(image.array, dtype=np.float64).transpose())
    finite = np.isfinite(array)
    if not finite.any():
        raise InvalidInputError(
            f"PSF is NaN/Inf in every voxel ({array.size} of {array.size}); it holds no "
            f"measurement",
            path=path,
            fix="use psf_from_beads() on a bead image, or gaussian_psf()/airy_psf()",
        )
    if not finite.all():
        if nan_policy == "raise":
            raise InvalidInputError(
                f"PSF has {int((~finite).sum())} NaN/Inf voxels of {array.size}",
                path=path,
                fix="pass nan_policy='zero' to set them to 0",
            )
        array = np.where(finite, array, 0.0)
    return normalise_psf(torch.from_numpy(array), path=path)


def psf_from_beads(
    image: torch.Tensor | np.ndarray,
    *,
    half_window: int = 10,
    shape: Sequence[int] | None = None,
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Fit a Gaussian PSF to the brightest bead of a bead image; returns ``(psf, sigma_px)``.

    The brightest bead is the maximum of the image smoothed by a 1-pixel Gaussian (robust
    to single hot pixels). A Gaussian with free amplitude, centre, one sigma per axis and
    a constant background is fitted by least squares (``scipy.optimize.curve_fit``) to the
    ``2 half_window + 1`` pixel window around it. Beads are assumed sub-resolution, so the
    fitted sigmas are the PSF's. The PSF is :func:`gaussian_psf` with those sigmas and
    ``shape`` (default ``2 ceil(4 sigma) + 1`` per axis, at most the image size).

    On ``microscopy/Bead_Image1_crop.tif`` the four brightest beads give sigma
    (z, y, x) = (1.95-2.0, 4.2-4.3, 3.1-3.2) pixels.

    Parameters
    ----------
    image:
        Bead image ``(d, h, w)`` or ``(h, w)`` (torch axis order), any real dtype.
    half_window:
        Half side of the fitting window, in pixels.
    shape:
        Shape of the returned PSF.
    """
    array = np.asarray(image.cpu() if isinstance(image, torch.Tensor) else image, np.float64)
    if array.ndim not in (2, 3) or not np.isfinite(array).all():
        raise InvalidInputError(
            f"bead image must be finite, 2D or 3D; got shape {array.shape}",
            fix="pass a (d, h, w) or (h, w) array without NaN",
        )
    peak = np.unravel_index(np.argmax(ndimage.gaussian_filter(array, 1.0)), array.shape)
    window = tuple(
        slice(max(0, c - half_window), min(n, c + half_window + 1))
        for c, n in zip(peak, array.shape, strict=True)
    )
    data = array[window]
    coordinates = np.stack(
        [
            g.ravel()
            for g in np.meshgrid(*[np.arange(w.start, w.stop) for w in window], indexing="ij")
        ]
    ).astype(np.float64)
    n_axes = array.ndim
    background = float(np.median(array))
    initial = [data.max() - background, *map(float, peak), *([2.0] * n_axes), background]
    try:
        fitted, _ = optimize.curve_fit(
            _gaussian_with_background, coordinates, data.ravel(), p0=initial, maxfev=5000
        )
    except (RuntimeError, ValueError) as error:
        raise InvalidInputError(
            f"Gaussian fit to the brightest bead failed ({error})",
            fix="check the image shows isolated beads, or use gaussian_psf() directly",
        ) from error
    sigmas = tuple(abs(float(s)) for s in fitted[1 + n_axes : 1 + 2 * n_axes])
    if not (fitted[0] > 0 and all(0.3 < s < half_window for s in sigmas)):
        raise InvalidInputError(
            f"the brightest-bead fit is implausible (amplitude {fitted[0]:.3g}, sigma_px "
            f"{tuple(round(s, 2) for s in sigmas)})",
            fix="increase half_window, check the bead image, or use gaussian_psf() directly",
        )
    if shape is None:
        shape = [min(2 * math.ceil(4 * s) + 1, n) for s, n in zip(sigmas, array.shape, strict=True)]
    return gaussian_psf(shape, sigmas), sigmas


def _gaussian_with_background(coordinates: np.ndarray, *parameters: float) -> np.ndarray:
    """``a exp(-sum_k (u_k - c_k)^2 / (2 s_k^2)) + b``; parameters ``a, c..., s..., b``."""
    n_axes = coordinates.shape[0]
    amplitude, background = parameters[0], parameters[-1]
    centres = np.asarray(parameters[1 : 1 + n_axes])[:, None]
    sigmas = np.asarray(parameters[1 + n_axes : 1 + 2 * n_axes])[:, None]
    exponent = ((coordinates - centres) ** 2 / (2 * sigmas**2)).sum(axis=0)
    return amplitude * np.exp(-exponent) + background


def psf_with_fallback(
    psf_path: str | Path | None, beads_path: str | Path | None = None
) -> tuple[torch.Tensor, str]:
    """The measured PSF if it is usable, else a bead fit, else :data:`FALLBACK_PSF_SIGMA_PX`.

    Returns ``(psf, source)`` where ``source`` says which one was used and why (for reports
    and provenance); every fallback is logged as a warning.
    """
    from medldm.io import load

    if psf_path is not None:
        try:
            return load_psf(psf_path), f"measured PSF {psf_path}"
        except MedLDMError as error:
            logger.warning("measured PSF unusable, falling back: %s", error)
            reason = str(error)
    else:
        reason = "no measured PSF given"
    if beads_path is not None:
        try:
            beads = np.asarray(load(beads_path).array, dtype=np.float64).transpose()
            psf, sigmas = psf_from_beads(beads)
            sigma_text = ", ".join(f"{s:.2f}" for s in sigmas)
            return psf, f"Gaussian fitted to {beads_path} (sigma_px {sigma_text}); {reason}"
        except MedLDMError as error:
            logger.warning("bead fit failed, using the default Gaussian PSF: %s", error)
            reason = f"{reason}; {error}"
    psf = gaussian_psf(FALLBACK_PSF_SHAPE, FALLBACK_PSF_SIGMA_PX)
    return psf, f"default Gaussian PSF sigma_px {FALLBACK_PSF_SIGMA_PX}; {reason}"


# --- operator -------------------------------------------------------------------------
class Blur(LinearPhysics):
    """Convolution with a PSF, ``y = h * x``, via FFT (2D or 3D).

    ``A x = F^{-1}(H ⊙ F x)`` with ``H`` the transfer function of the PSF ``h`` (centre at
    index ``n // 2`` moved to the origin); ``A^H y = F^{-1}(conj(H) ⊙ F y)`` is correlation
    with ``h``. ``y`` has the shape of ``x``. Boundaries:

    * ``"circular"`` (default): periodic convolution, as ``scipy.ndimage`` ``mode="wrap"``;
      the PSF must not be larger than the image.
    * ``"zero"``: linear convolution of the zero-extended image, cropped back to the
      image size (``mode="constant"``); computed on an image padded by the PSF size, so no
      wrap-around, and its adjoint pads, correlates and crops.

    ``A_dagger`` is the inherited CG least squares; its early stop (50 iterations) acts as
    regularisation, as the exact inverse of a blur amplifies noise without bound.

    Parameters
    ----------
    psf:
        ``(h, w)`` / ``(d, h, w)`` kernel, e.g. :func:`gaussian_psf` or :func:`load_psf`.
        Registered as a buffer.
    spatial_dims:
        2 (``x`` ``(B, C, H, W)``) or 3 (``(B, C, D, H, W)``).
    boundary:
        ``"circular"`` or ``"zero"``.
    normalise:
        Scale the PSF to unit sum (default), so the blur keeps the total intensity.
    noise_model:
        Typically :class:`~medldm.physics.noise.PoissonGaussianNoise`.

    Example
    -------
    >>> import torch
    >>> blur = Blur(gaussian_psf((5, 9, 9), (1.0, 2.0, 2.0)), spatial_dims=3)
    >>> x = torch.zeros(1, 1, 8, 16, 16); x[0, 0, 4, 8, 8] = 1
    >>> y = blur.A(x)
    >>> y.shape, round(float(y.sum()), 5)
    (torch.Size([1, 1, 8, 16, 16]), 1.0)
    """

    capabilities = frozenset({CONVOLUTION})

    def __init__(
        self,
        psf: torch.Tensor,
        spatial_dims: int = 2,
        *,
        boundary: str = "circular",
        normalise: bool = True,
        noise_model: NoiseModel | None = None,
    ):
        if spatial_dims not in (2, 3):
            raise InvalidInputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if boundary not in BOUNDARIES:
            raise InvalidInputError(f"unknown boundary {boundary!r}", fix=f"use {BOUNDARIES}")
        super().__init__(spatial_dims=spatial_dims, noise_model=noise_model)
        psf = torch.as_tensor(psf)
        while psf.ndim > spatial_dims and psf.shape[0] == 1:
            psf = psf[0]
        if psf.ndim != spatial_dims:
            raise InvalidInputError(
                f"PSF of shape {tuple(psf.shape)} does not have {spatial_dims} spatial axes"
            )
        if normalise:
            psf = normalise_psf(psf)
        elif not bool(torch.isfinite(psf).all()):
            raise InvalidInputError("PSF contains NaN or Inf")
        self.boundary = boundary
        self.register_buffer("psf", psf.float() if not psf.is_floating_point() else psf)

    @property
    def kernel_shape(self) -> tuple[int, ...]:
        return tuple(self.psf.shape)

    def _transfer_function(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """FFT of the PSF placed in zeros of ``shape`` with its centre at the origin."""
        psf = self.psf.to(device=like.device, dtype=like.real.dtype)
        if any(k > n for k, n in zip(self.kernel_shape, shape, strict=True)):
            raise InvalidInputError(
                f"PSF {self.kernel_shape} is larger than the image {shape} with circular "
                f"boundaries",
                fix="crop the PSF or use boundary='zero'",
            )
        pads: list[int] = []
        for k, n in zip(reversed(self.kernel_shape), reversed(shape), strict=True):
            pads += [0, n - k]
        placed = F.pad(psf, pads)
        dims = tuple(range(self.spatial_dims))
        placed = torch.roll(placed, shifts=[-(k // 2) for k in self.kernel_shape], dims=dims)
        return torch.fft.fftn(placed, dim=dims)

    def _filter(self, data: torch.Tensor, adjoint: bool) -> torch.Tensor:
        if data.ndim != self.spatial_dims + 2:
            raise InvalidInputError(
                f"blur input of shape {tuple(data.shape)}; expected (B, C, *spatial) with "
                f"{self.spatial_dims} spatial axes"
            )
        spatial = tuple(data.shape[-self.spatial_dims :])
        if self.boundary == "zero":
            pads: list[int] = []
            for k in reversed(self.kernel_shape):
                pads += [k // 2, k - k // 2]
            data = F.pad(data, pads)
        dims = tuple(range(-self.spatial_dims, 0))
        transfer = self._transfer_function(tuple(data.shape[-self.spatial_dims :]), data)
        if adjoint:
            transfer = torch.conj(transfer)
        result = torch.fft.ifftn(torch.fft.fftn(data, dim=dims) * transfer, dim=dims)
        result = result if data.is_complex() else result.real
        if self.boundary == "zero":
            crop = tuple(
                slice(k // 2, k // 2 + n) for k, n in zip(self.kernel_shape, spatial, strict=True)
            )
            result = result[(..., *crop)]
        return result.contiguous()

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self._filter(x, adjoint=False)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._filter(y, adjoint=True)
