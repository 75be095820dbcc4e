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

Neither condition couples a slice to the ones beside it. With ``neighbour_slices`` the
network also sees the **noisy latents of the slice below and the slice above** (same
timestep, their own noise) as ``2 C`` more input channels, and predicts the noise of the
middle one: a 2.5D prior (the adjacent-slice context of DiffusionBlend, Song et al. 2024)
that runs over a whole stack at once, every slice seeing its neighbours' current state
(:func:`stack_neighbours`; a slice with no neighbour, at a stack's end or alone, is shown
its own latent in its place, which training also shows it now and then).

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
#: Neighbour-slice inputs of a stack-aware network: the slice below and the slice above.
NEIGHBOUR_SLICES = 2
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


def stack_neighbours(z: torch.Tensor, n_slices: int | None) -> torch.Tensor:
    """``(B, 2 C, h, w)``: for each latent of a batch of ``k`` stacks of ``n_slices``
    adjacent slices (slice fastest, inferior first), the latents of the slice below and the
    slice above; a stack's end slices (and every slice when ``n_slices`` is ``None`` or 1:
    slices not known to be adjacent) get their own latent in the missing place. No
    wrap-around: the top slice is never tied to the bottom one.

    >>> z = torch.arange(6.0).reshape(6, 1, 1, 1)  # two stacks of three slices
    >>> stack_neighbours(z, 3)[:, :, 0, 0].tolist()
    [[0.0, 1.0], [0.0, 2.0], [1.0, 2.0], [3.0, 4.0], [3.0, 5.0], [4.0, 5.0]]
    """
    if not n_slices or n_slices == 1:
        return torch.cat([z, z], dim=1)
    if z.shape[0] % n_slices:
        raise ValueError(f"a batch of {z.shape[0]} latents is not stacks of {n_slices} slices")
    stacks = z.reshape(-1, n_slices, *z.shape[1:])
    below = torch.cat([stacks[:, :1], stacks[:, :-1]], dim=1)
    above = torch.cat([stacks[:, 1:], stacks[:, -1:]], dim=1)
    return torch.cat([below, above], dim=2).reshape(z.shape[0], 2 * z.shape[1], *z.shape[2:])


class PositionConditionedUNet(DiffusionModelUNet):
    """A 2D ``DiffusionModelUNet`` whose input is the latent plus position maps:
    :data:`POSITION_CHANNELS` in-plane maps when ``image_positions`` and one slice-position
    map when ``slice_position``, then the neighbour slices' ``2 C`` latent channels when
    ``neighbour_slices`` (``in_channels`` counts the latent's channels only; new inputs go
    last, so a network widened from one without them starts as it, :func:`~medldm.train.
    loop.widen_input_channels`).

    ``forward(x, timesteps, positions=None, slice_position=None)``: ``positions``
    ``(B, 2, h, w)`` at the latent's resolution, ``None`` taking the whole-image maps of
    ``x``'s grid (inference on a whole image); ``slice_position`` ``(B,)`` or a number in
    ``[0, 1]``, ``None`` taking :data:`MIDDLE_SLICE`; ``neighbours`` ``(B, 2 C, h, w)``
    (:func:`stack_neighbours`), ``None`` showing each latent as its own neighbours. The
    state dict is MONAI's, with a wider
    first convolution.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        image_positions: bool = True,
        slice_position: bool = False,
        neighbour_slices: bool = False,
        **kwargs,
    ):
        extra = (
            POSITION_CHANNELS * image_positions
            + SLICE_POSITION_CHANNELS * slice_position
            + NEIGHBOUR_SLICES * in_channels * neighbour_slices
        )
        super().__init__(in_channels=in_channels + extra, **kwargs)
        self.latent_channels = in_channels
        self.image_positions = bool(image_positions)
        self.slice_position = bool(slice_position)
        self.neighbour_slices = bool(neighbour_slices)

    def forward(  # type: ignore[override]
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        positions: torch.Tensor | None = None,
        slice_position: torch.Tensor | float | None = None,
        neighbours: torch.Tensor | None = None,
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
        if self.neighbour_slices:
            inputs.append(stack_neighbours(x, None) if neighbours is None else neighbours.to(x))
        return super().forward(torch.cat(inputs, dim=1), timesteps, **kwargs)
