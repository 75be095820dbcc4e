"""Which solver applies to which operator, from what the classes declare.

A solver lists the physics capabilities it needs in its class attribute ``requires``
(biharmonic inpainting: an observed-pixel mask; Richardson-Lucy: a convolution), and a
physics class lists what it offers in ``capabilities`` (names in
:mod:`medldm.physics.base`). A solver applies when the physics offers everything it needs;
objects that declare nothing need, or offer, nothing. The runner *skips* inapplicable pairs
(biharmonic inpainting of k-space means nothing): they are neither run nor counted as
failures.

Example
-------
>>> import torch
>>> from medldm.physics.inpainting import Inpainting
>>> from medldm.physics.mri import SingleCoilMRI
>>> from medldm.solvers import Biharmonic, ZeroFilled
>>> mask = torch.ones(8, 8, dtype=torch.bool)
>>> is_applicable(Biharmonic(), Inpainting(mask)), is_applicable(Biharmonic(), SingleCoilMRI(mask))
(True, False)
>>> is_applicable(ZeroFilled(), SingleCoilMRI(mask))
True
"""

from __future__ import annotations

from typing import Any


def requirements(solver: Any) -> frozenset[str]:
    """The physics capabilities ``solver`` declares it needs (none if it declares nothing)."""
    return frozenset(getattr(solver, "requires", frozenset()))


def capabilities(physics: Any) -> frozenset[str]:
    """The capabilities ``physics`` declares (none if it declares nothing)."""
    return frozenset(getattr(physics, "capabilities", frozenset()))


def is_applicable(solver: Any, physics: Any) -> bool:
    """Whether ``solver`` should run on ``physics``: the physics offers all it requires."""
    return requirements(solver) <= capabilities(physics)
