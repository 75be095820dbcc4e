"""A KL autoencoder that learns only what a linear codec misses (residual autoencoding).

As in DC-AE's residual autoencoding (Chen et al., "Deep Compression Autoencoder for
Efficient High-Resolution Diffusion Models", 2024), a non-parametric shortcut carries the
image through the latent, and MONAI's ``AutoencoderKL`` learns a residual on top of it.
Here the shortcut is the block PCA fitted on the training split
(:mod:`medldm.models.block_pca`)::

    encoder:  mu(x)    = P(x) + E(x)          P = block PCA projection, E = MONAI encoder
    decoder:  x_hat(z) = P^T(z) + D(z)        D = MONAI decoder

The last layers of ``E`` and ``D`` start at zero and the posterior starts narrow
(``initial_sigma``), so at step 0 the autoencoder *is* the linear codec and training can
only add to it. The shortcut's basis and mean block are buffers: they travel in the
state dict, hence in the safetensors checkpoint, and are fitted once by
:meth:`ResidualAutoencoderKL.fit_shortcut`.

Example
-------
>>> import torch
>>> ae = ResidualAutoencoderKL(spatial_dims=2, channels=(8, 8, 8), latent_channels=4,
...                            norm_num_groups=4)
>>> images = torch.rand(6, 1, 16, 16)
>>> _ = ae.fit_shortcut(images)
>>> mu, sigma = ae.encode(images)
>>> from medldm.models.block_pca import block_pca_decode, block_pca_encode
>>> linear = block_pca_decode(block_pca_encode(images, ae.shortcut_basis, ae.shortcut_mean, 4),
...                           ae.shortcut_basis, ae.shortcut_mean, 4)
>>> bool(torch.allclose(ae.decode(mu), linear, atol=1e-5))   # step 0 = the linear codec
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from monai.networks.nets import AutoencoderKL
from torch import nn

from medldm.models.block_pca import block_pca_decode, block_pca_encode, fit_block_pca


class ResidualAutoencoderKL(AutoencoderKL):
    """MONAI ``AutoencoderKL`` plus a block-PCA shortcut (see the module docstring).

    Takes MONAI's arguments for a single-channel image, and ``initial_sigma``: the
    posterior standard deviation at initialisation, in latent units (the shortcut's code is
    in the image's units, orthonormal blocks), small so that early training sees the
    linear codec's reconstruction rather than noise.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: Sequence[int],
        latent_channels: int,
        *,
        num_res_blocks: int = 1,
        attention_levels: Sequence[bool] | None = None,
        norm_num_groups: int = 32,
        with_nonlocal_attn: bool = False,
        initial_sigma: float = 1e-3,
    ):
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=1,
            out_channels=1,
            channels=tuple(channels),
            latent_channels=latent_channels,
            num_res_blocks=num_res_blocks,
            attention_levels=tuple(attention_levels or (False,) * len(channels)),
            norm_num_groups=norm_num_groups,
            with_encoder_nonlocal_attn=with_nonlocal_attn,
            with_decoder_nonlocal_attn=with_nonlocal_attn,
        )
        self.factor = 2 ** (len(channels) - 1)
        block = self.factor**spatial_dims
        self.register_buffer("shortcut_basis", torch.zeros(block, latent_channels))
        self.register_buffer("shortcut_mean", torch.zeros(block))
        self._start_as_linear_codec(initial_sigma)

    @torch.no_grad()
    def _start_as_linear_codec(self, initial_sigma: float) -> None:
        log_sigma = _last_conv(self.quant_conv_log_sigma)
        for layer in (_last_conv(self.quant_conv_mu), log_sigma, _last_conv(self.decoder)):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        log_sigma.bias.fill_(2.0 * math.log(initial_sigma))

    @torch.no_grad()
    def fit_shortcut(
        self, images: torch.Tensor | Iterable[np.ndarray | torch.Tensor]
    ) -> ResidualAutoencoderKL:
        """Fit the block PCA on training ``images`` (a batch ``(N, 1, *spatial)`` or an
        iterable of arrays) and store it in the buffers."""
        basis, mean = fit_block_pca(images, self.factor, self.shortcut_basis.shape[1])
        self.shortcut_basis.copy_(basis)
        self.shortcut_mean.copy_(mean)
        return self

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # the linear codec stays fp32
            return block_pca_encode(x, self.shortcut_basis, self.shortcut_mean, self.factor)

    def _lift(self, z: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, enabled=False):
            return block_pca_decode(z, self.shortcut_basis, self.shortcut_mean, self.factor)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean ``P(x) + E(x)`` and standard deviation."""
        if (
            self._skips(self.quant_conv_mu)
            and not _last_conv(self.quant_conv_log_sigma).weight.any()
        ):
            code = self._project(x)
            log_var = _last_conv(self.quant_conv_log_sigma).bias.float().clamp(-30.0, 20.0)
            sigma = torch.exp(log_var / 2).view(1, -1, *[1] * (code.ndim - 2))
            return code, sigma.expand_as(code)
        mu, sigma = super().encode(x)
        return self._project(x) + mu.float(), sigma

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Image ``P^T(z) + D(z)``."""
        if self._skips(self.decoder):
            return self._lift(z)
        return self._lift(z) + super().decode(z).float()

    def _skips(self, network: nn.Module) -> bool:
        """True outside training when ``network``'s last convolution is all zeros, so it
        outputs 0 whatever its input (``E(x) = 0``, ``D(z) = 0``): a residual at its zero
        start, as in a lossless codec that never trains. Then it is skipped (the encoder
        and decoder cost about as much as the UNet)."""
        last = _last_conv(network)
        return not self.training and not last.weight.any() and not last.bias.any()


def _last_conv(module: nn.Module) -> nn.Conv2d | nn.Conv3d:
    """The last convolution inside ``module`` (MONAI wraps them in ``Convolution``)."""
    return [m for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)][-1]
