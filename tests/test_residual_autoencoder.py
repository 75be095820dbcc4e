"""The residual autoencoder starts as the block-PCA codec, only improves on it in training,
and round-trips through the safetensors checkpoint with its shortcut; bf16 is chosen only
where the hardware runs it natively."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from skimage import data as skdata

from medldm.errors import InvalidInputError
from medldm.models.block_pca import (
    BlockPCACodec,
    block_pca_decode,
    block_pca_encode,
    fit_block_pca,
    from_blocks,
    to_blocks,
)
from medldm.models.checkpoint import load_prior_checkpoint, save_prior_checkpoint
from medldm.models.config import AutoencoderConfig, LDMConfig, build_autoencoder
from medldm.models.precision import autocast, resolve_precision
from medldm.models.residual_autoencoder import ResidualAutoencoderKL

RESIDUAL = AutoencoderConfig(
    spatial_dims=2, channels=(8, 16, 16), latent_channels=4, norm_num_groups=4, shortcut="block_pca"
)


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    """32x32 crops of scikit-image's camera photograph in [0, 1] (real, no download)."""
    camera = skdata.camera().astype(np.float32)[::2, ::2] / 255.0  # 256x256
    crops = [camera[i : i + 32, j : j + 32] for i in range(0, 256, 32) for j in range(0, 256, 32)]
    return torch.from_numpy(np.stack(crops))[:, None]


@pytest.mark.parametrize("shape", [(2, 1, 8, 12), (2, 1, 4, 8, 12)])
def test_blocks_round_trip_in_2d_and_3d(shape):
    x = torch.randn(shape)
    blocks = to_blocks(x, 4 if len(shape) == 4 else 2)
    assert blocks.shape[1] == (16 if len(shape) == 4 else 8)
    assert torch.equal(from_blocks(blocks, 4 if len(shape) == 4 else 2), x)


def test_block_pca_matches_numpy_svd_of_the_blocks(patches):
    basis, mean = fit_block_pca(patches, factor=4, components=3)
    blocks = to_blocks(patches.double(), 4).permute(0, 2, 3, 1).reshape(-1, 16).numpy()
    _, _, vt = np.linalg.svd(blocks - blocks.mean(0), full_matrices=False)
    np.testing.assert_allclose(mean.numpy(), blocks.mean(0), atol=1e-6)
    # the same subspace (signs may differ): |U^T V| is the identity
    np.testing.assert_allclose(np.abs(basis.double().numpy().T @ vt[:3].T), np.eye(3), atol=1e-4)


def test_block_pca_refuses_more_components_than_pixels_per_block(patches):
    with pytest.raises(InvalidInputError, match="components"):
        fit_block_pca(patches, factor=2, components=5)


def test_residual_autoencoder_starts_as_the_linear_codec(patches):
    train, held_out = patches[:48], patches[48:]
    ae = build_autoencoder(RESIDUAL)
    assert isinstance(ae, ResidualAutoencoderKL)
    ae.fit_shortcut(train).eval()
    codec = BlockPCACodec(factor=4, components=4).fit(list(train[:, 0].numpy()))
    with torch.no_grad():
        mu, sigma = ae.encode(held_out)
        restored = ae.decode(mu)
    expected = codec.reconstruct(held_out[:, 0].numpy())
    np.testing.assert_allclose(restored[:, 0].numpy(), expected, atol=1e-5)
    assert float(sigma.max()) == pytest.approx(1e-3, rel=1e-4)  # a narrow start


def test_networks_at_their_zero_start_are_skipped_with_the_same_result(patches):
    """Outside training, an encoder or decoder whose last convolution is all zeros (a
    lossless codec's, which never trains) is skipped: same code, sigma and image."""
    ae = build_autoencoder(RESIDUAL).fit_shortcut(patches[:48])
    with torch.no_grad():
        mu, sigma = ae.train().encode(patches)  # the networks run in training
        image = ae.decode(mu)
        ae.eval()
        with (
            mock.patch.object(ae.encoder, "forward", side_effect=AssertionError("ran")),
            mock.patch.object(ae.decoder, "forward", side_effect=AssertionError("ran")),
        ):
            skipped_mu, skipped_sigma = ae.encode(patches)
            skipped_image = ae.decode(skipped_mu)
        torch.nn.init.normal_(ae.decoder.blocks[-1].conv.weight, std=0.1)  # trained
        assert not torch.allclose(ae.decode(mu), image)  # now the decoder runs
    torch.testing.assert_close(skipped_mu, mu)
    torch.testing.assert_close(skipped_sigma, sigma)
    torch.testing.assert_close(skipped_image, image)


def test_training_the_residual_autoencoder_improves_on_the_linear_codec(patches):
    torch.manual_seed(0)
    train = patches[16:24]  # the camera operator: edges the linear codec blurs
    ae = build_autoencoder(RESIDUAL).fit_shortcut(train)
    optimizer = torch.optim.Adam(ae.parameters(), lr=1e-3)

    def error() -> float:  # posterior mean, as the priors use it
        with torch.no_grad():
            return float((ae.decode(ae.encode(train)[0]) - train).abs().mean())

    linear_codec = error()
    for _ in range(100):
        x_hat, _, _ = ae(train)
        loss = (x_hat - train).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert error() < 0.8 * linear_codec


def test_shortcut_travels_in_the_checkpoint(patches, tmp_path):
    config = LDMConfig(autoencoder=RESIDUAL, image_size=(32, 32))
    ae = build_autoencoder(RESIDUAL).fit_shortcut(patches)
    folder = save_prior_checkpoint(tmp_path / "prior", config=config, autoencoder=ae, half=True)
    loaded = load_prior_checkpoint(folder)
    assert isinstance(loaded.autoencoder, ResidualAutoencoderKL)
    torch.testing.assert_close(
        loaded.autoencoder.shortcut_basis, ae.shortcut_basis, atol=1e-3, rtol=1e-3
    )
    with torch.no_grad():
        z = block_pca_encode(patches, ae.shortcut_basis, ae.shortcut_mean, 4)
        reference = block_pca_decode(z, ae.shortcut_basis, ae.shortcut_mean, 4)
        restored = loaded.autoencoder.decode(loaded.autoencoder.encode(patches)[0])
    assert float((restored - reference).abs().max()) < 5e-3  # fp16 weights


def test_unknown_shortcut_is_refused():
    with pytest.raises(InvalidInputError, match="shortcut"):
        build_autoencoder(AutoencoderConfig(shortcut="wavelet"))


def test_precision_auto_follows_the_hardware():
    cpu = torch.device("cpu")
    with mock.patch("medldm.models.precision.cpu_has_native_bf16", return_value=False):
        assert resolve_precision("auto", cpu) == "fp32"
        with pytest.raises(InvalidInputError, match="no native bf16"):
            resolve_precision("bf16", cpu)
    with mock.patch("medldm.models.precision.cpu_has_native_bf16", return_value=True):
        assert resolve_precision("auto", cpu) == "bf16"
        with autocast(cpu, "auto"):
            product = torch.ones(4, 4) @ torch.ones(4, 4)
        assert product.dtype == torch.bfloat16
    with pytest.raises(InvalidInputError, match="unknown precision"):
        resolve_precision("fp8", cpu)


def test_shortcut_stays_fp32_under_bf16_autocast(patches):
    ae = build_autoencoder(RESIDUAL).fit_shortcut(patches).eval()
    with torch.no_grad():
        exact = ae.decode(ae.encode(patches)[0])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast = ae.decode(ae.encode(patches)[0])
    assert fast.dtype == torch.float32
    # bf16 in the zero-initialised network branch only: the codec itself is untouched
    assert float((fast - exact).abs().max()) < 1e-6
