"""The linear reference codec (block PCA with an autoencoder's latent size, used by
benchmarks/autoencoder_ceiling.py and as the residual autoencoder's shortcut), on a real
image."""

from __future__ import annotations

import numpy as np
import pytest

from medldm.metrics import psnr
from medldm.models.block_pca import BlockPCACodec


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    from skimage import data

    return data.camera().astype(np.float32) / 255.0


def test_all_components_reconstruct_exactly(camera):
    codec = BlockPCACodec(factor=4, components=16).fit([camera[:256]])
    restored = codec.reconstruct(camera[256:][None])[0]
    np.testing.assert_allclose(restored, camera[256:], atol=1e-4)


def test_fewer_components_lose_detail_monotonically(camera):
    train, test = camera[:, :256], camera[:, 256:]
    scores = [
        psnr(np.clip(BlockPCACodec(4, k).fit([train]).reconstruct(test[None])[0], 0, 1), test)
        for k in (1, 4, 8)
    ]
    assert scores[0] < scores[1] < scores[2] < 60
    assert scores[0] > 15  # one component per 4x4 block is still the block mean, roughly


def test_sizes_that_are_not_multiples_are_cropped(camera):
    codec = BlockPCACodec(factor=4, components=8).fit([camera[:101, :203]])
    restored = codec.reconstruct(camera[:50, :70][None])
    assert restored.shape == (1, 48, 68)
