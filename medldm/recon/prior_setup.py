"""The prior and the intensity rule of an app run, for both of the app's paths (images and
measured k-space).

Example
-------
>>> from medldm.data.normalize import PercentileNormalizer
>>> isinstance(intensity_rule(None, "prior"), PercentileNormalizer)
True
>>> resolve_prior(None, "cpu") is None
True
"""

from __future__ import annotations

from typing import Any

import torch

from medldm.errors import InvalidInputError


def resolve_prior(spec: Any, device: str | torch.device, precision: str = "auto") -> Any:
    """A Prior object as is, else a shipped name / checkpoint folder loaded on ``device``
    with its network calls in ``precision`` (auto, fp32, bf16).

    The app works on a 2D in-plane grid (volumes slice by slice, coupled along z in the
    data-consistency step; measured k-space one slice at a time), so only 2D priors are
    accepted here; a 3D prior is refused with a pointer to the solvers, which run it
    natively on a volume of its own grid.
    """
    if spec is None:
        return spec
    from medldm.models.prior_protocol import LatentPrior

    if isinstance(spec, LatentPrior):
        prior = spec
    else:
        from medldm.models.prior import load_prior

        prior = load_prior(spec, device=device, precision=precision)
    if getattr(prior, "spatial_dims", 2) != 2:
        size = "x".join(str(s) for s in prior.image_size)
        raise InvalidInputError(
            f"prior {prior.name!r} is a {prior.spatial_dims}D prior ({size} voxels); "
            "medldm-recon and medldm.reconstruct run 2D priors (a volume slice by slice)",
            fix="use a 2D prior (e.g. preset.prior=brain_t1_2d with preset=mri_brain_3d), or "
            "run the 3D prior through a solver on a volume of its grid: "
            "LatentDDS(...).solve(y, physics, load_prior(<its folder>)), as "
            "benchmarks/ldm_3d_native.py does (see the prior's MODEL_CARD.md)",
        )
    return prior


def intensity_rule(prior: Any, intensity: str = "prior") -> Any:
    """The rule scaling the input to the prior's range: the prior's own training rule, or
    (``intensity="percentile"``, or a prior without one) the input's 0.5-99.5 percentiles.
    It is fitted by the model view (:func:`medldm.problems.model_view.fit_intensity`)."""
    from medldm.data.normalize import PercentileNormalizer

    own = getattr(prior, "normalizer", None) if intensity == "prior" else None
    return own or PercentileNormalizer(0.5, 99.5)
