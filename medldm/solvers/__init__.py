"""Reconstruction solvers, one file per method, all behind one call signature.

``solver.solve(y, physics, prior=None, *, generator=None, callback=None) -> Reconstruction``
"""

from medldm.solvers.base import Reconstruction, Solver

__all__ = ["Reconstruction", "Solver"]
