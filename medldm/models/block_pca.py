"""Block PCA: the linear codec with an autoencoder's latent shape.

Every non-overlapping block of ``f^d`` pixels (``f`` the downsampling factor, ``d`` = 2 or
3) is projected on the ``k`` leading principal components of the training blocks, so an
image ``(B, 1, H, W)`` becomes a code ``(B, k, H/f, W/f)``: exactly the latent shape of an
autoencoder with ``k`` latent channels. With an orthonormal basis ``U`` (``f^d x k``) and
the mean block ``m``::

    encode:  z[:, :, i, j] = U^T (block_ij(x) - m)
    decode:  block_ij(x_hat) = U z[:, :, i, j] + m

It is the reference a trained autoencoder must beat (``benchmarks/autoencoder_ceiling.py
--linear-reference``) and the shortcut of :class:`~medldm.models.residual_autoencoder.
ResidualAutoencoderKL`, which starts from it.

Example
-------
>>> import torch
>>> images = torch.rand(4, 1, 8, 8)
>>> basis, mean = fit_block_pca(images, factor=2, components=4)   # 4 of 4: lossless
>>> z = block_pca_encode(images, basis, mean, factor=2)
>>> tuple(z.shape)
(4, 4, 4, 4)
>>> bool(torch.allclose(block_pca_decode(z, basis, mean, factor=2), images, atol=1e-5))
True
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from medldm.errors import InvalidInputError


def to_blocks(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(B, 1, *spatial)`` -> ``(B, factor^d, *spatial/factor)``: each block's pixels, in
    row-major order within the block, as channels (space-to-channel)."""
    batch, channels, *spatial = x.shape
    d = len(spatial)
    if channels != 1 or any(s % factor for s in spatial):
        raise InvalidInputError(
            f"block PCA needs (B, 1, *spatial) with sizes divisible by {factor}, "
            f"got {tuple(x.shape)}",
            fix="pad the image to a multiple of the downsampling factor",
        )
    grid = [s // factor for s in spatial]
    shaped = x.reshape(batch, *[v for g in grid for v in (g, factor)])
    # axes: 0 batch, then (grid_0, f_0, grid_1, f_1, ...): move the f axes first
    order = [0, *[2 + 2 * i for i in range(d)], *[1 + 2 * i for i in range(d)]]
    return shaped.permute(order).reshape(batch, factor**d, *grid)


def from_blocks(blocks: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: ``(B, factor^d, *grid)`` -> ``(B, 1, *grid*factor)``."""
    batch, _, *grid = blocks.shape
    d = len(grid)
    shaped = blocks.reshape(batch, *[factor] * d, *grid)
    # axes: 0 batch, 1..d the f axes, d+1..2d the grid axes -> (grid_0, f_0, grid_1, f_1, ...)
    order = [0, *[v for i in range(d) for v in (1 + d + i, 1 + i)]]
    return shaped.permute(order).reshape(batch, 1, *[g * factor for g in grid])


def fit_block_pca(
    images: torch.Tensor | Iterable[np.ndarray | torch.Tensor],
    factor: int,
    components: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal basis ``(factor^d, components)`` and mean block ``(factor^d,)`` of the
    blocks of ``images``: a batch ``(N, 1, *spatial)`` or any iterable of arrays of any
    sizes (each cropped to a multiple of ``factor``). Accumulates the block covariance in
    float64, so memory does not grow with the number of images."""
    if isinstance(images, torch.Tensor) and images.ndim >= 4:
        images = list(images[:, 0])
    total, outer, count = None, None, 0
    for image in images:
        array = torch.as_tensor(np.asarray(image), dtype=torch.float64)
        array = array[tuple(slice(0, s // factor * factor) for s in array.shape)]
        blocks = to_blocks(array[None, None], factor).flatten(2)[0].T  # (n_blocks, f^d)
        if total is None:
            total = torch.zeros(blocks.shape[1], dtype=torch.float64)
            outer = torch.zeros(blocks.shape[1], blocks.shape[1], dtype=torch.float64)
        total += blocks.sum(0)
        outer += blocks.T @ blocks
        count += len(blocks)
    if count == 0 or total is None or outer is None:
        raise InvalidInputError("block PCA needs at least one image to fit on")
    if components > len(total):
        raise InvalidInputError(
            f"{components} components asked for blocks of only {len(total)} pixels",
            fix="use at most factor^d latent channels",
        )
    mean = total / count
    covariance = outer / count - torch.outer(mean, mean)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    basis = eigenvectors[:, torch.argsort(eigenvalues, descending=True)[:components]]
    # a deterministic sign: the largest entry of each component is positive
    signs = torch.sign(basis.gather(0, basis.abs().argmax(0, keepdim=True)))
    return (basis * signs).float(), mean.float()


def block_pca_encode(
    x: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor, factor: int
) -> torch.Tensor:
    """Image ``(B, 1, *spatial)`` -> code ``(B, k, *spatial/factor)`` (float32)."""
    blocks = to_blocks(x.float(), factor)
    centred = blocks - mean.reshape(1, -1, *[1] * (blocks.ndim - 2))
    return torch.einsum("bp...,pk->bk...", centred, basis.float())


def block_pca_decode(
    z: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor, factor: int
) -> torch.Tensor:
    """Code ``(B, k, *grid)`` -> image ``(B, 1, *grid*factor)`` (float32)."""
    blocks = torch.einsum("bk...,pk->bp...", z.float(), basis.float())
    blocks = blocks + mean.reshape(1, -1, *[1] * (blocks.ndim - 2))
    return from_blocks(blocks, factor)


class BlockPCACodec:
    """The block PCA as a codec on NumPy images ``(N, H, W)`` (sizes cropped to multiples
    of ``factor``): the linear reference of ``benchmarks/autoencoder_ceiling.py``.

    >>> import numpy as np
    >>> images = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    >>> codec = BlockPCACodec(factor=2, components=4).fit(images)   # 4 of 4: lossless
    >>> bool(np.allclose(codec.reconstruct(images), images, atol=1e-5))
    True
    """

    def __init__(self, factor: int, components: int):
        self.factor, self.components = factor, components

    def fit(self, images: Iterable[np.ndarray]) -> BlockPCACodec:
        """Fit on 2D images of any sizes."""
        self.basis, self.mean = fit_block_pca(images, self.factor, self.components)
        return self

    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """Encode and decode ``(N, H, W)`` images (cropped to multiples of ``factor``)."""
        f = self.factor
        _, h, w = np.shape(images)
        x = torch.from_numpy(np.asarray(images, np.float32)[:, : h // f * f, : w // f * f])
        code = block_pca_encode(x[:, None], self.basis, self.mean, f)
        return block_pca_decode(code, self.basis, self.mean, f)[:, 0].numpy()
