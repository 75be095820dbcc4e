"""Reconstruction solvers, one file per method, all behind one call signature.

``solver.solve(y, physics, prior=None, *, generator=None, callback=None) -> Reconstruction``

Classical baselines: :class:`ZeroFilled` (``A^H y`` / FBP), :class:`ConjugateGradient`
(CG least squares, CG-SENSE), :class:`TotalVariation` (PDHG), :class:`L1Wavelet`
(l1-wavelet by FISTA), :class:`Biharmonic` (inpainting) and :class:`RichardsonLucy`
(deconvolution). :func:`get_solver` builds one by name.

Latent-diffusion solvers (need a trained :class:`~medldm.models.prior.Prior`):
:class:`LatentDPS`, :class:`PSLD`, :class:`ReSample`, :class:`LatentDAPS` and our fast
:class:`LatentDDS`; each returns the mean of ``n_samples`` posterior samples with their
pixel-wise std.
"""

from medldm.solvers.base import Reconstruction, Solver
from medldm.solvers.biharmonic import Biharmonic
from medldm.solvers.cg import ConjugateGradient
from medldm.solvers.l1_wavelet import L1Wavelet
from medldm.solvers.latent_daps import LatentDAPS
from medldm.solvers.latent_dds import LatentDDS
from medldm.solvers.latent_dps import LatentDPS
from medldm.solvers.psld import PSLD
from medldm.solvers.registry import SOLVERS, get_solver, needs_prior
from medldm.solvers.resample import ReSample
from medldm.solvers.richardson_lucy import RichardsonLucy
from medldm.solvers.tv import TotalVariation
from medldm.solvers.zero_filled import ZeroFilled

__all__ = [
    "PSLD",
    "SOLVERS",
    "Biharmonic",
    "ConjugateGradient",
    "L1Wavelet",
    "LatentDAPS",
    "LatentDDS",
    "LatentDPS",
    "ReSample",
    "Reconstruction",
    "RichardsonLucy",
    "Solver",
    "TotalVariation",
    "ZeroFilled",
    "get_solver",
    "needs_prior",
]
