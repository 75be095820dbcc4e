"""Measurement physics: forward operators ``A``, adjoints, pseudo-inverses and noise.

Every operator works on batched torch tensors ``(B, C, *spatial)``, is a
:class:`torch.nn.Module` (so masks, coil maps and system matrices move with ``.to()``)
and derives from :class:`~medldm.physics.base.LinearPhysics`.

=====================  ===============================================================
module                 contents
=====================  ===============================================================
``masks``              mask generators (box, random pixels, brush strokes, fastMRI
                       lines, 3D variable density); ``mask = gen(shape, generator=g)``
``inpainting``         :class:`Inpainting`
``mri``                ``fft2c``/``ifft2c``/``fftnc``/``ifftnc``, :class:`SingleCoilMRI`,
                       :class:`MultiCoilMRI` (SENSE)
``coils``              simulated and estimated coil sensitivities
``phase``              smooth simulated phase for magnitude images
``ct``                 :class:`ParallelBeamCT` (sparse Joseph projector, FBP), angle sets,
                       :class:`TransmissionPoissonNoise`
``blur``               :class:`Blur` and PSFs (Gaussian, Airy, measured, bead fit)
``anchored``           :class:`AnchoredPhysics`: ``[A; sqrt(lam) I]``, a data-consistency
                       anchor stacked under an operator
=====================  ===============================================================

The base class (``base``) also holds the linear algebra every operator inherits (normal
operator, cached norm, CG least squares, ``prox_l2``, ``x_init``) and the capability names
a class declares in ``capabilities`` (:data:`OBSERVED_MASK`, :data:`FILTERED_BACKPROJECTION`,
:data:`CONVOLUTION`) so that solvers need not probe for methods.
"""

from medldm.physics.anchored import AnchoredPhysics
from medldm.physics.base import (
    CAPABILITIES,
    CONVOLUTION,
    FILTERED_BACKPROJECTION,
    OBSERVED_MASK,
    LinearPhysics,
    conjugate_gradient,
)
from medldm.physics.blur import (
    Blur,
    airy_psf,
    gaussian_psf,
    load_psf,
    psf_from_beads,
    psf_with_fallback,
)
from medldm.physics.coils import birdcage_sensitivities, estimate_sensitivities
from medldm.physics.ct import (
    ParallelBeamCT,
    TransmissionPoissonNoise,
    limited_angle,
    sparse_view_angles,
)
from medldm.physics.inpainting import Inpainting
from medldm.physics.masks import (
    BoxMask,
    BrushStrokeMask,
    EquispacedLineMask,
    MaskGenerator,
    RandomLineMask,
    RandomPixelMask,
    VariableDensityMask2D,
)
from medldm.physics.mri import (
    MultiCoilMRI,
    SingleCoilMRI,
    fft2c,
    fftnc,
    ifft2c,
    ifftnc,
    rss,
)
from medldm.physics.noise import GaussianNoise, NoiseModel, PoissonGaussianNoise, PoissonNoise
from medldm.physics.phase import smooth_phase, with_smooth_phase

__all__ = [
    "CAPABILITIES",
    "CONVOLUTION",
    "FILTERED_BACKPROJECTION",
    "OBSERVED_MASK",
    "AnchoredPhysics",
    "Blur",
    "BoxMask",
    "BrushStrokeMask",
    "EquispacedLineMask",
    "GaussianNoise",
    "Inpainting",
    "LinearPhysics",
    "MaskGenerator",
    "MultiCoilMRI",
    "NoiseModel",
    "ParallelBeamCT",
    "PoissonGaussianNoise",
    "PoissonNoise",
    "RandomLineMask",
    "RandomPixelMask",
    "SingleCoilMRI",
    "TransmissionPoissonNoise",
    "VariableDensityMask2D",
    "airy_psf",
    "birdcage_sensitivities",
    "conjugate_gradient",
    "estimate_sensitivities",
    "fft2c",
    "fftnc",
    "gaussian_psf",
    "ifft2c",
    "ifftnc",
    "limited_angle",
    "load_psf",
    "psf_from_beads",
    "psf_with_fallback",
    "rss",
    "smooth_phase",
    "sparse_view_angles",
    "with_smooth_phase",
]
