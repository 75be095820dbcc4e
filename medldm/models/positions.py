"""Where a patch lies in its image: position channels for a diffusion network trained on
crops and run on whole images (PaDIS; Hu, Delbracio, Milanfar & Fessler, "Learning image
priors through patch-based diffusion models for solving inverse problems", NeurIPS 2024).

A prior trained on random 128 x 128 crops of clinical slices learns local tissue but not
where in a head a crop lies: its unconditional samples of a whole slice are a quilt of
texture. Giving the network each latent pixel's place in the *whole* image, two channels
``(row, column)`` in ``[-1, 1]`` (pixel centres, ``-1`` at the first row's top edge, ``+1``
at the last row's bottom edge), lets it learn the layout: at inference the channels span the
whole slice, so the crops it was trained on tile it.

* :func:`image_coordinates`: the two maps for an image of a given shape (or a crop of it);
* :func:`latent_coordinates`: the same maps averaged over each latent pixel's footprint;
* :class:`PositionConditionedUNet`: MONAI's ``DiffusionModelUNet`` with the maps as extra
  input channels; called without them it uses the whole-image maps of its input's grid.

A prior trained on whole axial slices of many heads has the opposite gap: it knows a
slice's layout but not *which* slice it is, and the skull base (orbits, sinuses, petrous
bone, cerebellum) is a small share of its training slices. The same network takes, as one
more constant input channel, the slice's **position in the head's foreground extent** (the
model view's ``position``, :mod:`medldm.problems.model_view`: 0 at the inferior end, 1 at
the superior end), so it can be asked for a slice through the skull base.

Example
-------
>>> coords = image_coordinates((4, 2))
>>> coords[0, :, 0].tolist(), coords[1, 0].tolist()
([-0.75, -0.25, 0.25, 0.75], [-0.5, 0.5])
>>> pooled = latent_coordinates(image_coordinates((8, 8)), 4)  # a 4x-downsampled latent grid
>>> bool(torch.allclose(pooled, image_coordinates((2, 2))))
True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet

#: Position input channels of a position-conditioned UNet: row and column.
POSITION_CHANNELS = 2
#: The slice-position input channel: one constant map per image.
SLICE_POSITION_CHANNELS = 1
#: The slice position a slice-conditioned network gets when none is given: the middle of
#: the foreground extent.
MIDDLE_SLICE = 0.5


def image_coordinates(
    shape: Sequence[int], start: Sequence[int] = (0, 0), full: Sequence[int] | None = None
) -> torch.Tensor:
    """``(2, rows, cols)`` maps of pixel-centre positions in ``[-1, 1]`` of the full image
    ``full`` (default ``shape``), for the ``shape`` crop starting at pixel ``start``."""
    full = tuple(shape) if full is None else tuple(full)
    axes = [
        (2.0 * (torch.arange(n, dtype=torch.float32) + s + 0.5) / total) - 1.0
        for n, s, total in zip(shape, start, full, strict=True)
    ]
    rows, cols = torch.meshgrid(axes[0], axes[1], indexing="ij")
    return torch.stack([rows, cols])


def latent_coordinates(coordinates: torch.Tensor, factor: int) -> torch.Tensor:
    """Image-resolution maps ``(..., 2, H, W)`` averaged over ``factor x factor`` blocks:
    the position of each latent pixel's footprint."""
    squeeze = coordinates.ndim == 3
    batch = coordinates[None] if squeeze else coordinates
    pooled = F.avg_pool2d(batch, factor)
    return pooled[0] if squeeze else pooled


def slice_position_map(
    slice_position: torch.Tensor | float | None, batch: int, shape: Sequence[int]
) -> torch.Tensor:
    """``(batch, 1, *shape)`` constant maps holding each image's slice position (``[0, 1]``
    in the foreground extent, shown to the network as ``2 p - 1``): one value for all, one
    per image, or ``None`` (:data:`MIDDLE_SLICE`).

    >>> slice_position_map(torch.tensor([0.0, 1.0]), 2, (1, 2)).tolist()
    [[[[-1.0, -1.0]]], [[[1.0, 1.0]]]]
    """
    value = MIDDLE_SLICE if slice_position is None else slice_position
    value = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if value.numel() not in (1, batch):
        raise ValueError(f"{value.numel()} slice positions for a batch of {batch}")
    value = value.expand(batch) if value.numel() == 1 else value
    return (2.0 * value - 1.0).reshape(batch, 1, *[1] * len(shape)).expand(batch, 1, *shape)


class PositionConditionedUNet(DiffusionModelUNet):
    """A 2D ``DiffusionModelUNet`` whose input is the latent plus position maps:
    :data:`POSITION_CHANNELS` in-plane maps when ``image_positions`` and one slice-position
    map when ``slice_position`` (``in_channels`` counts the latent's channels only).

    ``forward(x, timesteps, positions=None, slice_position=None)``: ``positions``
    ``(B, 2, h, w)`` at the latent's resolution, ``None`` taking the whole-image maps of
    ``x``'s grid (inference on a whole image); ``slice_position`` ``(B,)`` or a number in
    ``[0, 1]``, ``None`` taking :data:`MIDDLE_SLICE`. The state dict is MONAI's, with a wider
    first convolution.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_positions: bool = True,
        slice_position: bool = False,
        **kwargs,
    ):
        extra = POSITION_CHANNELS * image_positions + SLICE_POSITION_CHANNELS * slice_position
        super().__init__(in_channels=in_channels + extra, **kwargs)
        self.latent_channels = in_channels
        self.image_positions = bool(image_positions)
        self.slice_position = bool(slice_position)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        positions: torch.Tensor | None = None,
        slice_position: torch.Tensor | float | None = None,
        **kwargs,
    ) -> torch.Tensor:
        inputs = [x]
        if self.image_positions:
            if positions is None:
                positions = image_coordinates(x.shape[-2:]).to(x.device)
                positions = positions[None].expand(x.shape[0], -1, -1, -1)
            inputs.append(positions.to(x.dtype))
        if self.slice_position:
            inputs.append(slice_position_map(slice_position, x.shape[0], x.shape[-2:]).to(x))
        return super().forward(torch.cat(inputs, dim=1), timesteps, **kwargs)
