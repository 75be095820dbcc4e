"""Solvers by name: the names used in configs and on the command line.

Example
-------
>>> solver = get_solver("tv", weight=0.02, n_iter=50)
>>> solver.name, solver.weight
('tv', 0.02)
>>> sorted(SOLVERS)[:6]
['biharmonic', 'cg', 'l1_wavelet', 'latent_daps', 'latent_dds', 'latent_dps']
>>> needs_prior("latent_dds"), needs_prior("tv")
(True, False)
"""

from __future__ import annotations

from typing import Any

from medldm.errors import InvalidInputError
from medldm.solvers.biharmonic import Biharmonic
from medldm.solvers.cg import ConjugateGradient
from medldm.solvers.l1_wavelet import L1Wavelet
from medldm.solvers.latent_daps import LatentDAPS
from medldm.solvers.latent_dds import LatentDDS
from medldm.solvers.latent_dps import LatentDPS
from medldm.solvers.psld import PSLD
from medldm.solvers.resample import ReSample
from medldm.solvers.richardson_lucy import RichardsonLucy
from medldm.solvers.tv import TotalVariation
from medldm.solvers.zero_filled import ZeroFilled

#: Classical solvers (they ignore the prior).
CLASSICAL = (ZeroFilled, ConjugateGradient, TotalVariation, L1Wavelet, Biharmonic, RichardsonLucy)
#: Latent-diffusion solvers (they need a trained prior).
LATENT = (LatentDPS, PSLD, ReSample, LatentDAPS, LatentDDS)
#: Solver name -> class.
SOLVERS: dict[str, type] = {cls.name: cls for cls in CLASSICAL + LATENT}  # type: ignore[attr-defined]


def needs_prior(name: str) -> bool:
    """Whether the solver called ``name`` uses a trained LDM prior."""
    return name in {cls.name for cls in LATENT}  # type: ignore[attr-defined]


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
