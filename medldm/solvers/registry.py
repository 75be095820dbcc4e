"""Solvers by name: the names used in configs and on the command line.

Example
-------
>>> solver = get_solver("tv", weight=0.02, n_iter=50)
>>> solver.name, solver.weight
('tv', 0.02)
>>> sorted(SOLVERS)
['biharmonic', 'cg', 'richardson_lucy', 'tv', 'zero_filled']
"""

from __future__ import annotations

from typing import Any

from medldm.errors import InvalidInputError
from medldm.solvers.biharmonic import Biharmonic
from medldm.solvers.cg import ConjugateGradient
from medldm.solvers.richardson_lucy import RichardsonLucy
from medldm.solvers.tv import TotalVariation
from medldm.solvers.zero_filled import ZeroFilled

#: Solver name -> class. Classical solvers only; LDM solvers register here as they land.
SOLVERS: dict[str, type] = {
    cls.name: cls  # type: ignore[attr-defined]
    for cls in (ZeroFilled, ConjugateGradient, TotalVariation, Biharmonic, RichardsonLucy)
}


def get_solver(name: str, **params: Any) -> Any:
    """A solver instance from its name and its keyword hyper-parameters."""
    if name not in SOLVERS:
        raise InvalidInputError(f"unknown solver {name!r}", fix=f"use one of {sorted(SOLVERS)}")
    try:
        return SOLVERS[name](**params)
    except TypeError as error:
        raise InvalidInputError(
            f"bad parameters for solver {name!r}: {error}",
            fix="see the solver's docstring or configs/solver/",
        ) from error
