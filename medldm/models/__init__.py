"""The latent diffusion prior: configs, checkpoints and the :class:`Prior` solvers call.

``load_prior(name_or_path)`` loads a shipped prior by name (see :func:`shipped_priors`)
or any checkpoint folder written by ``medldm-train-diffusion``.
"""

from medldm.models.prior import Prior, load_prior, resolve_device, shipped_priors

__all__ = ["Prior", "load_prior", "resolve_device", "shipped_priors"]
