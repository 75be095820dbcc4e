"""What a latent-diffusion solver needs from a prior: the :class:`LatentPrior` protocol.

:class:`~medldm.models.prior.Prior` (one trained checkpoint) satisfies it; so can any
object with these members (a wrapper around another LDM, a test double), without
inheriting from anything. Solvers are typed with it and check it with ``isinstance``
(the protocol is runtime-checkable: the members must exist).

Example
-------
>>> from medldm.models.testing import tiny_prior
>>> isinstance(tiny_prior(), LatentPrior), isinstance(object(), LatentPrior)
(True, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class LatentPrior(Protocol):
    """A latent diffusion prior as the solvers call it.

    Images are ``(B, 1, *spatial)`` tensors in the model's ``[0, 1]`` range, latents are
    scaled so they have unit variance on the training data, and the diffusion model
    predicts the noise ``eps`` of ``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps``.

    Attributes
    ----------
    device:
        Where the networks run.
    spatial_dims:
        2 or 3: the images the autoencoder takes.
    num_train_timesteps:
        Length of the training noise schedule (timesteps ``0 .. T - 1``).
    nfe:
        Network evaluations so far (solvers report the difference).
    normalizer:
        How the training data was scaled to ``[0, 1]`` (a
        :mod:`medldm.data.normalize` rule), or ``None``.
    """

    device: torch.device
    spatial_dims: int
    num_train_timesteps: int
    nfe: int
    normalizer: Any

    @property
    def has_diffusion_model(self) -> bool:
        """Whether :meth:`predict_eps` can run (an autoencoder-only checkpoint cannot)."""
        ...

    @property
    def size_multiple(self) -> int:
        """Image sizes the networks take are multiples of this."""
        ...

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image in ``[0, 1]`` -> scaled latent."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image (differentiable)."""
        ...

    def latent_shape(self, image_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """Latent shape (without batch) for an image of ``image_shape``."""
        ...

    def predict_eps(self, z_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """The noise in ``z_t`` at timestep ``t`` (one network evaluation)."""
        ...

    def predict_x0(self, z_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate of the clean latent (one network evaluation)."""
        ...

    def at_slice_positions(
        self, positions: Sequence[float] | torch.Tensor | None, *, adjacent: bool = False
    ) -> Any:
        """A context in which the network calls are told where their slices lie in the
        head (0 inferior, 1 superior; one per slice of the batch, or one for all) and
        whether they are a contiguous stack (``adjacent``); a prior without that condition
        ignores it."""
        ...

    def alpha_bar(self, t: int | torch.Tensor) -> torch.Tensor:
        """The cumulative signal fraction ``a_t``."""
        ...

    def ddim_timesteps(self, n_steps: int) -> list[int]:
        """``n_steps`` training timesteps from noisiest to cleanest."""
        ...
