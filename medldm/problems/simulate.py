"""The one measurement simulation: an image in the prior's space, an operator preset and a
seed give the physics and the noisy measurement, the same way for the benchmark and the
reconstruction app.

The random choices happen in a fixed order on one ``torch.Generator`` seeded with
``seed``: the operator's random parts (sampling mask, coil maps, views) when it is built for
the image's shape, then the object's preparation (e.g. a smooth MRI phase), then the
measurement noise. Same image, operator and seed: the same ``y``, in every app.

Example
-------
>>> import torch
>>> from medldm.problems.configs import load_physics
>>> x = torch.rand(1, 1, 32, 32)
>>> physics, y = simulate(x, load_physics("inpaint_random"), seed=0)
>>> _, again = simulate(x, load_physics("inpaint_random"), seed=0)
>>> bool(torch.equal(y, again)), tuple(y.shape)
(True, (1, 1, 32, 32))
"""

from __future__ import annotations

from typing import Any

import torch

from medldm.physics.base import LinearPhysics
from medldm.physics.factory import PhysicsFactory


@torch.no_grad()
def simulate(
    x: torch.Tensor,
    operator: PhysicsFactory | Any,
    seed: int,
    device: torch.device | str | None = None,
) -> tuple[LinearPhysics, torch.Tensor]:
    """Physics for ``x``'s spatial shape and its noisy measurement of ``x``.

    Parameters
    ----------
    x:
        Images ``(B, 1, *spatial)`` in the prior's space (the model view), on ``device``.
    operator:
        An operator preset (``medldm.problems.configs.load_physics(name)``), or any object
        with ``build(shape, generator, device)`` and optionally ``prepare_object``.
    seed:
        Seeds the operator's random parts, the object preparation and the noise.
    device:
        Where the physics lives (default: ``x``'s device).
    """
    generator = torch.Generator().manual_seed(int(seed))
    physics = operator.build(tuple(x.shape[2:]), generator, device or x.device)
    # prepare_object is optional for operators written outside medldm (a duck-typed
    # factory with build() only measures the image as it is)
    prepare = getattr(operator, "prepare_object", None)
    measured_object = prepare(x, generator) if callable(prepare) else x
    return physics, physics(measured_object, generator)
