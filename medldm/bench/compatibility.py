"""Which solver applies to which operator.

A solver decides for itself when it has a ``supports(physics)`` method. Otherwise the
table :data:`SOLVER_PHYSICS` says which operator classes (by class name, base classes
included) a solver is made for; solvers not in it apply to every linear operator. The
runner *skips* inapplicable pairs (biharmonic inpainting of k-space means nothing): they
are neither run nor counted as failures.

Example
-------
>>> class Inpainting: ...
>>> class SingleCoilMRI: ...
>>> class Biharmonic:
...     name = "biharmonic"
>>> is_applicable(Biharmonic(), Inpainting()), is_applicable(Biharmonic(), SingleCoilMRI())
(True, False)
"""

from __future__ import annotations

from typing import Any

#: Solver name -> names of the physics classes it is made for.
SOLVER_PHYSICS: dict[str, tuple[str, ...]] = {
    "biharmonic": ("Inpainting",),
    "richardson_lucy": ("Blur",),
}


def is_applicable(solver: Any, physics: Any, label: str | None = None) -> bool:
    """Whether ``solver`` should run on ``physics``.

    ``label`` is the preset name the solver was loaded under (checked against the table
    as well as ``solver.name``).
    """
    supports = getattr(solver, "supports", None)
    if callable(supports):
        return bool(supports(physics))
    class_names = {cls.__name__ for cls in type(physics).__mro__}
    for name in (getattr(solver, "name", None), label):
        if name in SOLVER_PHYSICS:
            return bool(class_names & set(SOLVER_PHYSICS[name]))
    return True
