"""Physics *factories*: the measurement setups that presets name, built per image shape and seed.

A physics preset (``configs/physics/mri_4x.yaml``) cannot hold the operator itself: the
sampling mask, coil maps and CT geometry depend on the image shape, and the random parts
(mask lines, missing pixels) on a seed. A factory holds the setup and builds the operator:

* ``factory.build(image_shape, generator, device) -> LinearPhysics`` draws every random
  choice from ``generator`` (a CPU ``torch.Generator``, so a seed gives the same operator on
  every device) and returns the operator on ``device``;
* ``factory.prepare_object(x, generator)`` turns the ground truth ``(B, C, *spatial)`` into
  the object actually measured (MRI: a complex image with a smooth random phase; the
  others: ``x`` unchanged); call it after ``build`` with the same generator;
* ``factory.name``: a short description for logs and reports.

Images are assumed normalised to [0, 1], which fixes the meaning of the noise levels below.

Example
-------
>>> import torch
>>> factory = MRIPhysicsFactory(acceleration=4, center_fraction=0.08)
>>> generator = torch.Generator().manual_seed(0)
>>> physics = factory.build((32, 32), generator, "cpu")
>>> x = factory.prepare_object(torch.rand(1, 1, 32, 32), generator)
>>> y = physics(x, generator)
>>> type(physics).__name__, y.dtype, round(physics.acceleration) in (3, 4, 5)
('SingleCoilMRI', torch.complex64, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import LinearPhysics
from medldm.physics.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise

Shape = Sequence[int]


def _spatial(image_shape: Shape) -> tuple[int, ...]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise InvalidInputError(
            f"image shape {shape} must be (H, W) or (D, H, W)",
            fix="pass the spatial shape of one image, without batch and channel axes",
        )
    return shape


class PhysicsFactory:
    """Base class: ``build`` the operator for a shape and seed; ``prepare_object`` is the
    identity unless the measured object differs from the image (MRI phase)."""

    name: str = "physics"

    def build(
        self, image_shape: Shape, generator: torch.Generator, device: str | torch.device = "cpu"
    ) -> LinearPhysics:
        raise NotImplementedError

    def prepare_object(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The object measured for the ground truth ``x`` (here: ``x`` itself)."""
        return x

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


# --- MRI ------------------------------------------------------------------------------
class MRIPhysicsFactory(PhysicsFactory):
    """Cartesian MRI, single-coil or multi-coil (SENSE), with fastMRI undersampling masks.

    Parameters
    ----------
    acceleration:
        Undersampling factor (4 or 8 in fastMRI).
    center_fraction:
        Fraction of fully sampled central phase-encode lines; fastMRI uses 0.08 at 4x and
        0.04 at 8x. Lines are along the last axis (columns).
    n_coils:
        1 for single-coil; more for multi-coil with simulated birdcage sensitivities
        (:func:`~medldm.physics.coils.birdcage_sensitivities`, ``sum_c |S_c|^2 = 1``).
    mask:
        ``"random"`` (fastMRI ``RandomMaskFunc``), ``"equispaced"``
        (``EquispacedMaskFractionFunc``) or ``"variable_density"`` (2D variable density
        over the last two axes, for 3D volumes).
    noise_sigma:
        Standard deviation of the real and of the imaginary part of the complex Gaussian
        noise on every sampled k-space value (per coil). Units: the normalised image
        intensity. Because the FFT is orthonormal (Parseval), k-space has the image's
        scale: ``noise_sigma = 0.005`` is the per-pixel noise of a fully sampled
        single-coil image, 0.5 % of the [0, 1] range per real/imaginary part.
    phase_max_radians:
        The magnitude ground truth is given a smooth random phase (a degree-2 polynomial,
        :func:`~medldm.physics.phase.with_smooth_phase`) with at most this many radians
        before it is measured, as real MR images are complex; 0 keeps it real. Metrics
        compare magnitudes.
    multislice:
        For a volume: acquired as a stack of 2D slices (each axial slice its own 2D
        k-space, the same phase-encode lines in every slice, as a 2D multislice scan
        samples) instead of one 3D k-space. Ignored for 2D images.

    Example
    -------
    >>> import torch
    >>> factory = MRIPhysicsFactory(acceleration=8, center_fraction=0.04, n_coils=8)
    >>> physics = factory.build((64, 64), torch.Generator().manual_seed(1), "cpu")
    >>> type(physics).__name__, physics.n_coils
    ('MultiCoilMRI', 8)
    """

    MASKS = ("random", "equispaced", "variable_density")
    #: How each mask samples, in words (the operator's name).
    PATTERNS: ClassVar[dict[str, str]] = {
        "random": "random lines",
        "equispaced": "equispaced lines",
        "variable_density": "2D variable density",
    }

    def __init__(
        self,
        acceleration: float,
        center_fraction: float,
        n_coils: int = 1,
        mask: str = "random",
        noise_sigma: float = 0.005,
        phase_max_radians: float = math.pi / 2,
        multislice: bool = False,
    ):
        if mask not in self.MASKS:
            raise InvalidInputError(f"unknown MRI mask {mask!r}", fix=f"use one of {self.MASKS}")
        if int(n_coils) < 1:
            raise InvalidInputError(f"n_coils must be >= 1, got {n_coils}")
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.n_coils = int(n_coils)
        self.mask = mask
        self.noise_sigma = float(noise_sigma)
        self.phase_max_radians = float(phase_max_radians)
        self.multislice = bool(multislice)
        coils = "single-coil" if self.n_coils == 1 else f"{self.n_coils}-coil"
        self.name = (
            f"MRI {self.acceleration:g}x {coils} ({self.PATTERNS[mask]}, centre "
            f"{self.center_fraction:g})" + (", multislice" if self.multislice else "")
        )

    def _mask_generator(self) -> Any:
        from medldm.physics import masks

        if self.mask == "random":
            return masks.RandomLineMask(self.acceleration, self.center_fraction)
        if self.mask == "equispaced":
            return masks.EquispacedLineMask(self.acceleration, self.center_fraction)
        return masks.VariableDensityMask2D(self.acceleration, self.center_fraction)

    def build(
        self, image_shape: Shape, generator: torch.Generator, device: str | torch.device = "cpu"
    ) -> LinearPhysics:
        from medldm.physics.mri import MultiCoilMRI, SingleCoilMRI

        shape = _spatial(image_shape)
        multislice = self.multislice and len(shape) == 3
        mask = self._mask_generator()(shape[-2:] if multislice else shape, generator=generator)
        if multislice:  # one 2D pattern, every slice
            mask = mask.expand(*shape).contiguous()
        noise = GaussianNoise(self.noise_sigma)
        geometry = {"spatial_dims": len(shape), "kspace_dims": 2 if multislice else None}
        if self.n_coils == 1:
            physics = SingleCoilMRI(mask, noise_model=noise, **geometry)
        else:
            from medldm.physics.coils import birdcage_sensitivities

            maps = birdcage_sensitivities(self.n_coils, shape)
            physics = MultiCoilMRI(mask, maps, noise_model=noise, **geometry)
        return physics.to(device)

    def prepare_object(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``x * exp(i phase)`` with a smooth random phase (``x`` when the phase is 0)."""
        if self.phase_max_radians == 0:
            return x
        from medldm.physics.phase import with_smooth_phase

        spatial_dims = x.ndim - 2
        return with_smooth_phase(
            x, generator, self.phase_max_radians, spatial_dims=spatial_dims
        ).to(x.device)


# --- inpainting -----------------------------------------------------------------------
class InpaintingFactory(PhysicsFactory):
    """Inpainting: observe the image through a mask, ``y = M ⊙ x + noise`` on observed pixels.

    Parameters
    ----------
    kind:
        ``"box"``: a missing box of ``box_fraction`` of each side, centred (0.5 hides 25 %
        of a 2D image's area, 12.5 % of a volume); ``"random"``: ``fraction_observed`` of
        the pixels, uniformly at random; ``"brush"``: free-form brush strokes.
    box_fraction, fraction_observed, n_strokes:
        Parameters of the three kinds.
    noise_sigma:
        Gaussian noise standard deviation on observed pixels, in normalised intensity
        (0.01 = 1 % of the [0, 1] range).

    Example
    -------
    >>> import torch
    >>> physics = InpaintingFactory("box", box_fraction=0.5).build(
    ...     (8, 8), torch.Generator().manual_seed(0))
    >>> int((~physics.mask.bool()).sum())  # 4 x 4 missing pixels = 25 % of the area
    16
    """

    KINDS = ("box", "random", "brush")

    def __init__(
        self,
        kind: str = "box",
        box_fraction: float = 0.5,
        fraction_observed: float = 0.3,
        n_strokes: int = 4,
        noise_sigma: float = 0.01,
    ):
        if kind not in self.KINDS:
            raise InvalidInputError(f"unknown inpainting kind {kind!r}", fix=f"use {self.KINDS}")
        self.kind = kind
        self.box_fraction = float(box_fraction)
        self.fraction_observed = float(fraction_observed)
        self.n_strokes = int(n_strokes)
        self.noise_sigma = float(noise_sigma)
        detail = {
            "box": f"central box {self.box_fraction:g} of each side missing",
            "random": f"{self.fraction_observed:.0%} of pixels observed",
            "brush": f"{self.n_strokes} brush strokes missing",
        }[kind]
        self.name = f"inpainting ({detail})"

    def build(
        self, image_shape: Shape, generator: torch.Generator, device: str | torch.device = "cpu"
    ) -> LinearPhysics:
        from medldm.physics import masks
        from medldm.physics.inpainting import Inpainting

        shape = _spatial(image_shape)
        if self.kind == "box":
            make_mask = masks.BoxMask(box_fraction=self.box_fraction)
        elif self.kind == "random":
            make_mask = masks.RandomPixelMask(self.fraction_observed)
        else:
            make_mask = masks.BrushStrokeMask(n_strokes=self.n_strokes)
        mask = make_mask(shape, generator=generator)
        physics = Inpainting(
            mask, spatial_dims=len(shape), noise_model=GaussianNoise(self.noise_sigma)
        )
        return physics.to(device)


# --- CT -------------------------------------------------------------------------------
class CTFactory(PhysicsFactory):
    """Parallel-beam CT, sparse view or limited angle, with transmission noise.

    Parameters
    ----------
    n_views:
        Number of projections spread evenly over ``arc_deg``; ``None`` with a limited arc
        means one view per degree.
    arc_deg:
        Angular range in degrees: 180 for sparse view, less (e.g. 90) for limited angle.
    noise:
        ``"poisson"``: photon counts ``Poisson(I0 exp(-p))`` with ``I0 = photons_per_ray``
        (:class:`~medldm.physics.ct.TransmissionPoissonNoise`); ``"gaussian"``: additive,
        standard deviation ``gaussian_sigma`` times the image width (the line integral of
        an image of ones across its width is the width); ``"none"``.
    photons_per_ray:
        Unattenuated photons per detector bin (1e5: normal dose; 1e4: low dose).
    attenuation_per_width:
        Attenuation ``p`` of a ray crossing the whole image width through intensity 1, which
        converts normalised images to attenuation: ``p = attenuation_per_width / W * (P x)``.
        4 lets about 2 % of the photons through the densest full-width path.
    gaussian_sigma:
        See ``noise``.
    circle:
        ``False`` (default): the whole square image is inside the field of view (detector
        covers the diagonal); ``True``: only the inscribed circle, as skimage's default.

    Example
    -------
    >>> import torch
    >>> physics = CTFactory(n_views=30).build((32, 32), torch.Generator().manual_seed(0))
    >>> physics.n_views, physics.sinogram_shape
    (30, (46, 30))
    """

    NOISES = ("poisson", "gaussian", "none")

    def __init__(
        self,
        n_views: int | None = None,
        arc_deg: float = 180.0,
        noise: str = "poisson",
        photons_per_ray: float = 1e5,
        attenuation_per_width: float = 4.0,
        gaussian_sigma: float = 0.001,
        circle: bool = False,
    ):
        if noise not in self.NOISES:
            raise InvalidInputError(f"unknown CT noise {noise!r}", fix=f"use {self.NOISES}")
        if n_views is None and arc_deg >= 180:
            raise InvalidInputError("n_views is needed for a full 180-degree arc")
        self.n_views = None if n_views is None else int(n_views)
        self.arc_deg = float(arc_deg)
        self.noise = noise
        self.photons_per_ray = float(photons_per_ray)
        self.attenuation_per_width = float(attenuation_per_width)
        self.gaussian_sigma = float(gaussian_sigma)
        self.circle = bool(circle)
        views = "1 view/degree" if self.n_views is None else f"{self.n_views} views"
        self.name = f"CT parallel beam, {views} over {self.arc_deg:g} degrees, {noise} noise"

    def _noise_model(self, width: int) -> NoiseModel:
        from medldm.physics.ct import TransmissionPoissonNoise

        if self.noise == "poisson":
            return TransmissionPoissonNoise(
                self.photons_per_ray, line_integral_scale=self.attenuation_per_width / width
            )
        sigma = self.gaussian_sigma * width if self.noise == "gaussian" else 0.0
        return GaussianNoise(sigma)

    def build(
        self, image_shape: Shape, generator: torch.Generator, device: str | torch.device = "cpu"
    ) -> LinearPhysics:
        from medldm.physics.ct import ParallelBeamCT, limited_angle, sparse_view_angles

        shape = _spatial(image_shape)
        if self.arc_deg >= 180:
            angles = sparse_view_angles(int(self.n_views or 0), arc=self.arc_deg)
        else:
            angles = limited_angle(self.arc_deg, self.n_views)
        physics = ParallelBeamCT(
            shape[-2:],
            angles,
            spatial_dims=len(shape),
            circle=self.circle,
            noise_model=self._noise_model(shape[-1]),
        )
        return physics.to(device)


# --- microscopy ---------------------------------------------------------------------
class BlurFactory(PhysicsFactory):
    """Microscopy: convolution with a point spread function, Poisson-Gaussian camera noise.

    The PSF is a Gaussian of ``sigma_px`` pixels (:func:`medldm.physics.blur.gaussian_psf`,
    side ``2 ceil(4 sigma) + 1``; a widefield PSF's in-focus core is close to one). The
    measured PSF that ships with the microscopy data (``microscopy/psf.tif``) is NaN in
    every voxel and cannot be used; pass ``psf="file"`` and ``psf_path`` to use a measured
    PSF of your own (:func:`medldm.physics.blur.load_psf`: NaN refused, unit sum; a 3D PSF
    on 2D images uses its central plane).

    Parameters
    ----------
    psf:
        ``"gaussian"`` or ``"file"`` (with ``psf_path``).
    sigma_px:
        Gaussian standard deviation in pixels.
    psf_path:
        A measured PSF file (TIFF, NIfTI, DICOM).
    photons_per_unit:
        Poisson gain: photons for an intensity of 1 (the normalised image's bright end);
        1000 gives a shot-noise SNR of about 32 at the brightest pixels.
    read_noise_sigma:
        Gaussian read noise standard deviation, in normalised intensity.
    boundary:
        ``"circular"`` (periodic, FFT) or ``"zero"`` (zero-extended image).

    Example
    -------
    >>> import torch
    >>> factory = BlurFactory(sigma_px=2.0)
    >>> physics = factory.build((32, 32), torch.Generator().manual_seed(0))
    >>> type(physics).__name__, tuple(physics.psf.shape)
    ('Blur', (17, 17))
    """

    def __init__(
        self,
        psf: str = "gaussian",
        sigma_px: float = 2.0,
        psf_path: str | None = None,
        photons_per_unit: float = 1000.0,
        read_noise_sigma: float = 0.01,
        boundary: str = "circular",
    ):
        if psf not in ("gaussian", "file"):
            raise InvalidInputError(f"unknown PSF {psf!r}", fix="use 'gaussian' or 'file'")
        if psf == "file" and not psf_path:
            raise InvalidInputError("psf='file' needs psf_path", fix="give the PSF's file")
        if not sigma_px > 0:
            raise InvalidInputError(f"sigma_px must be > 0, got {sigma_px}")
        self.psf = psf
        self.sigma_px = float(sigma_px)
        self.psf_path = psf_path
        self.photons_per_unit = float(photons_per_unit)
        self.read_noise_sigma = float(read_noise_sigma)
        self.boundary = boundary
        kind = (
            f"Gaussian PSF, sigma {self.sigma_px:g} px" if psf == "gaussian" else f"PSF {psf_path}"
        )
        self.name = f"microscopy blur ({kind}), Poisson-Gaussian noise"

    def point_spread_function(self, spatial_dims: int) -> torch.Tensor:
        """The PSF (unit sum), 2D ``(h, w)`` or 3D ``(d, h, w)``."""
        from medldm.physics.blur import gaussian_psf, load_psf

        if self.psf == "gaussian":
            side = 2 * math.ceil(4 * self.sigma_px) + 1
            return gaussian_psf((side,) * spatial_dims, self.sigma_px)
        psf = load_psf(str(self.psf_path))
        if psf.ndim == 3 and spatial_dims == 2:
            psf = psf[psf.shape[0] // 2]  # the in-focus plane
        if psf.ndim != spatial_dims:
            raise InvalidInputError(
                f"the PSF has {psf.ndim} axes, the images {spatial_dims}",
                path=self.psf_path,
                fix=f"use a {spatial_dims}D PSF",
            )
        return psf / psf.sum()

    def build(
        self, image_shape: Shape, generator: torch.Generator, device: str | torch.device = "cpu"
    ) -> LinearPhysics:
        from medldm.physics.blur import Blur

        shape = _spatial(image_shape)
        noise = PoissonGaussianNoise(gain=self.photons_per_unit, sigma=self.read_noise_sigma)
        psf = self.point_spread_function(len(shape))
        physics = Blur(psf, spatial_dims=len(shape), boundary=self.boundary, noise_model=noise)
        return physics.to(device)
