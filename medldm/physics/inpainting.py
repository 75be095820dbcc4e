"""Inpainting: observe the pixels a mask keeps, lose the others.

Masks come from the generators in :mod:`medldm.physics.masks` (box, random pixels, brush
strokes); this module only applies one.

Example
-------
>>> import torch
>>> from medldm.physics.masks import BoxMask
>>> physics = Inpainting(BoxMask(size=2)((4, 4)))
>>> y = physics.A(torch.ones(1, 1, 4, 4))
>>> y[0, 0].int().tolist()
[[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
"""

from __future__ import annotations

import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import OBSERVED_MASK, LinearPhysics
from medldm.physics.masks import check_mask_observes_something
from medldm.physics.noise import NoiseModel


def as_batched_mask(mask: torch.Tensor, spatial_dims: int, what: str = "mask") -> torch.Tensor:
    """``mask`` as a real tensor of shape ``(B or 1, C or 1, *spatial)``.

    Accepts ``(*spatial)``, ``(C, *spatial)`` (taken as ``(1, C, *spatial)``) or the full
    ``(B, C, *spatial)``; bool masks become 0/1 floats. Raises if it observes nothing.
    """
    mask = torch.as_tensor(mask)
    if mask.is_complex():
        raise InvalidInputError(f"{what} must be real, got {mask.dtype}")
    if not spatial_dims <= mask.ndim <= spatial_dims + 2:
        raise InvalidInputError(
            f"{what} has shape {tuple(mask.shape)}; expected {spatial_dims} spatial axes, "
            f"optionally preceded by batch and channel axes"
        )
    check_mask_observes_something(mask, what)
    mask = mask.to(torch.get_default_dtype()) if not mask.is_floating_point() else mask
    while mask.ndim < spatial_dims + 2:
        mask = mask.unsqueeze(0)
    return mask


def check_spatial_shape(x: torch.Tensor, expected: tuple[int, ...], what: str) -> None:
    """Raise if the trailing axes of ``x`` are not ``expected`` (or ``x`` has no batch)."""
    n = len(expected)
    if x.ndim < n + 2 or tuple(x.shape[-n:]) != tuple(expected):
        raise InvalidInputError(
            f"{what} has shape {tuple(x.shape)}; expected (B, C, {', '.join(map(str, expected))})"
        )


class Inpainting(LinearPhysics):
    """Pixel-wise masking, ``y = M ⊙ x`` (2D or 3D).

    ``A = A^H = diag(M)``; for a 0/1 mask the pseudo-inverse is the same zero-fill
    ``A^+ y = M ⊙ y``, and for a weighted mask ``A^+ y = y / M`` where ``M > 0`` (0
    elsewhere). ``y`` has the shape of ``x`` with zeros at the missing pixels; noise is only
    added where ``M > 0`` so missing pixels stay exactly 0.

    Parameters
    ----------
    mask:
        ``True``/1 where a pixel is observed: shape ``(*spatial)``, ``(C, *spatial)`` or
        ``(B, C, *spatial)``; bool or real weights in [0, 1]. Registered as a buffer, so
        ``.to(device)`` moves it.
    spatial_dims:
        2 (``x`` is ``(B, C, H, W)``) or 3 (``(B, C, D, H, W)``).
    noise_model:
        Measurement noise (default none), e.g. :class:`~medldm.physics.noise.GaussianNoise`.

    Example
    -------
    >>> import torch
    >>> from medldm.physics.masks import RandomPixelMask
    >>> mask = RandomPixelMask(0.5)((4, 8, 8), generator=torch.Generator().manual_seed(0))
    >>> physics = Inpainting(mask, spatial_dims=3)
    >>> x = torch.rand(2, 1, 4, 8, 8)
    >>> y = physics.A(x)
    >>> bool(torch.equal(physics.A_dagger(y), y)), float((y != 0).float().mean()) <= 0.5
    (True, True)
    """

    capabilities = frozenset({OBSERVED_MASK})

    def __init__(
        self, mask: torch.Tensor, spatial_dims: int = 2, noise_model: NoiseModel | None = None
    ):
        super().__init__(spatial_dims=spatial_dims, noise_model=noise_model)
        self.register_buffer("mask", as_batched_mask(mask, spatial_dims))

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape[-self.spatial_dims :])

    def _mask_for(self, tensor: torch.Tensor) -> torch.Tensor:
        check_spatial_shape(tensor, self.spatial_shape, "inpainting input")
        return self.mask.to(device=tensor.device, dtype=tensor.real.dtype)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self._mask_for(x) * x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._mask_for(y) * y

    def A_dagger(self, y: torch.Tensor, **_: object) -> torch.Tensor:
        """Closed-form pseudo-inverse: zero-fill (divide by the weight where it is > 0)."""
        mask = self._mask_for(y)
        return torch.where(mask > 0, y / torch.where(mask > 0, mask, 1), 0)

    def noise(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Missing pixels carry no measurement, so they get no noise either.
        return self.noise_model(y, generator) * (self._mask_for(y) > 0)
