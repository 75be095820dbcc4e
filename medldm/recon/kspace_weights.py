"""Per-scan regularisation weights for the solvers of a measured run, chosen by
k-space hold-out (:mod:`medldm.physics.holdout`) instead of taken from a simulation.

The presets were tuned on simulated k-space with simulated noise; a real scan may want
more (or less) regularisation. For each solver with a weight (TV's and l1-wavelet's
``weight``, the LDM's final-step weight ``final_tv_weight`` or ``final_wavelet_weight``;
CG-SENSE has none) and each factor of ``factors``, the solver reconstructs the kept part of
``n_splits`` seeded splits with ``factor x`` its preset weight and is scored by its error
on the held-out samples; the factor with the lowest mean error is chosen, and the run's
reconstruction and hold-out score then use it. The LDM's other weights (its data
consistency, its TV start) stay the preset's. Every search solve starts from the run's
seed; in the run itself l1-wavelet draws its cycle-spinning shifts after the LDM's
sampling, so its shifts there differ from the search's (a small difference, reproducible).
The search splits are drawn with another seed than the scoring splits of
:func:`~medldm.recon.kspace_methods.holdout_scores`, but both come from the same measured
samples, so a chosen weight's score is slightly optimistic (cross-validation, not a fresh
scan).

Example
-------
>>> best_factor({0.5: [0.42, 0.44], 1.0: [0.41, 0.43], 2.0: [0.40, 0.45]})
1.0
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import LinearPhysics
from medldm.physics.coils import calibration_region
from medldm.recon.kspace_methods import MeasuredMethods, unit_phase

log = logging.getLogger(__name__)

#: Splits of the search (fewer than the score's five: it runs every factor on each).
SEARCH_SPLITS = 2
#: Added to the run's seed for the search splits, so that they differ from the score's.
SEARCH_SEED_OFFSET = 1000


def edge_text(search: Mapping[str, Any] | None) -> str:
    """A warning when a chosen factor is the smallest or largest searched ("" otherwise):
    the best weight may lie beyond the factors tried.

    >>> record = {"factors": [1.0, 4.0], "methods": {"tv": {"at_edge": True,
    ...     "chosen_factor": 4.0}}}
    >>> edge_text(record)
    'TV chose 4 x, the end of the factors searched (search beyond it, e.g. weight_search=[4,16,64])'
    """
    if not search:
        return ""
    lowest = min(search["factors"])
    texts = []
    for name, entry in search["methods"].items():
        if not entry.get("at_edge"):
            continue
        factor = entry["chosen_factor"]
        further = (
            [factor / 16, factor / 4, factor]
            if factor <= lowest
            else [factor, factor * 4, factor * 16]
        )
        example = ",".join(f"{f:g}" for f in further)
        texts.append(
            f"{name.upper()} chose {factor:g} x, the end of the factors searched (search "
            f"beyond it, e.g. weight_search=[{example}])"
        )
    return "; ".join(texts)


def check_factors(factors: Sequence[float] | float | None) -> tuple[float, ...]:
    """The factors as positive floats, sorted and without repeats (``None``: none; a
    number: that one); a clear error otherwise.

    >>> check_factors([2, 0.5, 1, 2]), check_factors(None), check_factors(4)
    ((0.5, 1.0, 2.0), (), (4.0,))
    """
    if factors is None:
        factors = ()
    elif isinstance(factors, int | float):
        factors = (factors,)
    try:
        values = tuple(sorted({float(f) for f in factors}))
    except (TypeError, ValueError):
        values = (float("nan"),)
    if any(not np.isfinite(f) or f <= 0 for f in values):
        raise InvalidInputError(
            f"weight_search factors must be finite numbers > 0, got {factors!r}",
            fix="give factors of the preset weight, e.g. weight_search=[0.5,1,2,4]",
        )
    return values


def best_factor(errors: Mapping[float, Sequence[float]]) -> float:
    """The factor with the lowest mean hold-out error (ties to the smaller factor)."""
    return min(sorted(errors), key=lambda f: float(np.mean(errors[f])))


def searchable(methods: MeasuredMethods) -> dict[str, tuple[str, float]]:
    """``{name: (option, preset weight)}``: the LDM's final-step weight (when its preset
    has one), then each classical solver's ``weight`` (CG-SENSE has none)."""
    weights = {}
    final = methods.ldm_final_weight()
    if final is not None:
        weights[methods.ldm_name] = final
    for name in methods.classical:
        weight = getattr(methods.build(name)[0], "weight", None)
        if isinstance(weight, int | float) and weight > 0:
            weights[name] = ("weight", float(weight))
    return weights


def search_weights(
    methods: MeasuredMethods,
    y: torch.Tensor,
    physics: LinearPhysics,
    mask: np.ndarray,
    factors: Sequence[float],
    progress: bool = False,
    n_splits: int = SEARCH_SPLITS,
) -> dict[str, Any] | None:
    """Choose each searchable solver's weight (module text) and set it on ``methods``
    (``methods.weights``); returns the record for ``metrics.json`` (None: nothing to
    search)."""
    from tqdm import tqdm

    from medldm.physics.holdout import holdout_splits

    factors = check_factors(factors)
    preset_weights = searchable(methods)
    if not factors:
        return None
    if not preset_weights:
        log.warning("weight_search: no solver of this run has a weight to search")
        return None
    splits = holdout_splits(
        mask,
        n_splits=n_splits,
        fraction=0.1,
        keep_centre=calibration_region(mask),
        seed=methods.seed + SEARCH_SEED_OFFSET,
    )
    errors: dict[str, dict[float, list[float]]] = {name: {} for name in preset_weights}
    total = len(splits) * len(factors) * len(preset_weights)
    with tqdm(total=total, desc="weight search", disable=not progress) as runs:
        for split in splits:
            for name, factor, error in _split_errors(
                methods, y, physics, split, preset_weights, factors
            ):
                errors[name].setdefault(factor, []).append(error)
                runs.update()
    for name, (_, weight) in preset_weights.items():
        methods.weights[name] = weight * best_factor(errors[name])
    return _record(preset_weights, errors, factors, len(splits))


def _split_errors(
    methods: MeasuredMethods,
    y: torch.Tensor,
    physics: LinearPhysics,
    split: Any,
    preset_weights: Mapping[str, tuple[str, float]],
    factors: Sequence[float],
) -> Iterator[tuple[str, float, float]]:
    """``(name, factor, hold-out error)`` of every searched solver and factor on one split
    (each solve seeded alike; the magnitude solvers behind the kept data's CG-SENSE
    phase)."""
    from medldm.physics.holdout import holdout_error

    kept, held = split.kept.to(y.device), split.held.to(y.device)
    kept_y, kept_physics = y * kept, physics.with_mask(kept)
    generator = torch.Generator(device=methods.device).manual_seed(methods.seed)
    cg = methods.solve_one("cg", kept_y, kept_physics, None, generator)
    phase = unit_phase(cg.estimate)
    for name, (option, weight) in preset_weights.items():
        for factor in factors:
            generator.manual_seed(methods.seed)
            options = {option: weight * factor}
            if name == methods.ldm_name:
                solved = methods.solve_ldm(kept_y, kept_physics, cg, generator, options)
            else:
                solved = methods.solve_one(name, kept_y, kept_physics, phase, generator, options)
            yield name, factor, holdout_error(physics, solved.estimate, y, held)


def _record(
    preset_weights: Mapping[str, tuple[str, float]],
    errors: Mapping[str, Mapping[float, Sequence[float]]],
    factors: Sequence[float],
    n_splits: int,
) -> dict[str, Any]:
    """The search's entry of ``metrics.json``: per method the preset weight, the mean
    hold-out error of each factor and the factor chosen."""
    methods = {}
    for name, (option, weight) in preset_weights.items():
        chosen = best_factor(errors[name])
        methods[name] = {
            "option": option,
            "preset_weight": weight,
            "chosen_factor": chosen,
            "chosen_weight": weight * chosen,
            "at_edge": len(factors) > 1 and chosen in (min(factors), max(factors)),
            "holdout_error_by_factor": {
                f"{f:g}": float(np.mean(values)) for f, values in errors[name].items()
            },
        }
    return {
        "description": "each solver's weight (the LDM's final-step weight) chosen per scan: "
        f"preset weight x {', '.join(f'{f:g}' for f in factors)}, each reconstructed from "
        f"the kept part of {n_splits} seeded splits (other splits than the hold-out score's) "
        "and scored on the held-out samples; the factor with the lowest mean error is used",
        "factors": list(factors),
        "methods": methods,
    }
