"""Reconstruction solvers, one file per method, all behind one call signature.

``solver.solve(y, physics, prior=None, *, generator=None, callback=None) -> Reconstruction``

Classical baselines: :class:`ZeroFilled` (``A^H y`` / FBP), :class:`ConjugateGradient`
(CG least squares, CG-SENSE), :class:`TotalVariation` (PDHG), :class:`Biharmonic`
(inpainting) and :class:`RichardsonLucy` (deconvolution). :func:`get_solver` builds one by
name.
"""

from medldm.solvers.base import Reconstruction, Solver
from medldm.solvers.biharmonic import Biharmonic
from medldm.solvers.cg import ConjugateGradient
from medldm.solvers.registry import SOLVERS, get_solver
from medldm.solvers.richardson_lucy import RichardsonLucy
from medldm.solvers.tv import TotalVariation
from medldm.solvers.zero_filled import ZeroFilled

__all__ = [
    "SOLVERS",
    "Biharmonic",
    "ConjugateGradient",
    "Reconstruction",
    "RichardsonLucy",
    "Solver",
    "TotalVariation",
    "ZeroFilled",
    "get_solver",
]
