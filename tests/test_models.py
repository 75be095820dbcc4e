"""Prior checkpoints: exact save/load, tampered or mismatched weights refused, pickle refused,
and the Prior's maths (x0 prediction, normalisation round trip)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medldm.errors import DataNotFoundError, InvalidInputError, OutputExistsError
from medldm.models.checkpoint import load_prior_checkpoint, save_prior_checkpoint
from medldm.models.config import (
    AutoencoderConfig,
    LDMConfig,
    UNetConfig,
    build_autoencoder,
    build_unet,
)
from medldm.models.prior import load_prior

CONFIG = LDMConfig(
    AutoencoderConfig(channels=(8, 8, 16), latent_channels=4, norm_num_groups=4),
    UNetConfig(
        channels=(8, 16, 16),
        attention_levels=(False, False, True),
        num_head_channels=8,
        norm_num_groups=4,
    ),
    image_size=(32, 32),
)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    ae = build_autoencoder(CONFIG.autoencoder)
    unet = build_unet(CONFIG.unet, 4)
    folder = save_prior_checkpoint(
        tmp_path / "prior",
        config=CONFIG,
        autoencoder=ae,
        unet=unet,
        scale_factor=0.7,
        normalization={"method": "percentile", "low_pct": 1.0, "high_pct": 99.0, "clip": True},
        data_card="ixi_t1",
        split={"train": "train"},
        training={"autoencoder_steps": 3},
    )
    return folder, ae, unet


def test_save_then_load_is_exact(checkpoint):
    folder, ae, unet = checkpoint
    loaded = load_prior_checkpoint(folder)
    for original, restored in ((ae, loaded.autoencoder), (unet, loaded.unet)):
        for (key, a), (_, b) in zip(
            original.state_dict().items(), restored.state_dict().items(), strict=True
        ):
            assert torch.equal(a, b), key
    assert loaded.meta["scale_factor"] == 0.7 and loaded.meta["data_card"] == "ixi_t1"


def test_half_precision_weights_load_back_as_float32(tmp_path):
    ae = build_autoencoder(CONFIG.autoencoder)
    folder = save_prior_checkpoint(tmp_path / "half", config=CONFIG, autoencoder=ae, half=True)
    loaded = load_prior_checkpoint(folder)
    weight = next(loaded.autoencoder.parameters())
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, next(ae.parameters()), atol=1e-3, rtol=1e-3)


def test_a_tampered_weight_file_is_refused(checkpoint):
    folder, _, _ = checkpoint
    path = folder / "unet.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="SHA-256 mismatch") as info:
        load_prior_checkpoint(folder)
    assert "unet.safetensors" in str(info.value)


def test_weights_that_do_not_match_the_config_are_refused_with_the_reason(checkpoint):
    folder, _, _ = checkpoint
    meta = json.loads((folder / "config.json").read_text())
    meta["model"]["autoencoder"]["channels"] = [8, 8, 32]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="do not match the model config"):
        load_prior_checkpoint(folder)


def test_pickle_checkpoints_and_missing_folders_are_refused(tmp_path):
    pickled = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2)}, pickled)
    with pytest.raises(InvalidInputError, match="pickle"):
        load_prior_checkpoint(pickled)
    with pytest.raises(DataNotFoundError, match=r"config\.json missing"):
        load_prior_checkpoint(tmp_path)
    with pytest.raises(DataNotFoundError, match="shipped priors"):
        load_prior("no_such_prior")


def test_existing_checkpoint_is_not_overwritten_unless_asked(checkpoint):
    folder, ae, _ = checkpoint
    with pytest.raises(OutputExistsError):
        save_prior_checkpoint(folder, config=CONFIG, autoencoder=ae)
    save_prior_checkpoint(folder, config=CONFIG, autoencoder=ae, overwrite=True)
    assert load_prior_checkpoint(folder).unet is None


def test_prior_predict_x0_inverts_the_forward_noising(checkpoint):
    folder, _, _ = checkpoint
    prior = load_prior(folder, device="cpu")
    z0 = torch.randn(2, 4, 8, 8)
    t = 500
    eps = torch.randn_like(z0)
    a = prior.alpha_bar(t)
    z_t = a.sqrt() * z0 + (1 - a).sqrt() * eps
    with torch.no_grad():
        predicted_eps = prior.predict_eps(z_t, t)
        x0 = prior.predict_x0(z_t, t)
    torch.testing.assert_close(x0, (z_t - (1 - a).sqrt() * predicted_eps) / a.sqrt())
    assert prior.nfe == 2
    assert prior.ddim_timesteps(5) == [999, 749, 500, 250, 0]


def test_prior_normalisation_round_trips_physical_units(checkpoint):
    folder, _, _ = checkpoint
    prior = load_prior(folder, device="cpu")
    image = np.random.default_rng(0).gamma(2.0, 300.0, size=(32, 32)).astype(np.float32)
    normalization = prior.fit_normalization(image)
    x = normalization.forward(image, clip=False)
    assert abs(np.percentile(x, 1)) < 1e-4 and abs(np.percentile(x, 99) - 1) < 1e-4
    np.testing.assert_allclose(normalization.inverse(x), image, rtol=1e-5, atol=1e-3)
    ct = image - 1000.0  # signed values: negative intensities are dark, not bright
    assert prior.fit_normalization(ct).low < -900


def test_prior_refuses_images_it_cannot_encode(checkpoint):
    folder, _, _ = checkpoint
    prior = load_prior(folder, device="cpu")
    with pytest.raises(InvalidInputError, match="multiple of the downsampling"):
        prior.encode(torch.rand(1, 1, 30, 30))
    with pytest.raises(InvalidInputError, match="expected images"):
        prior.encode(torch.rand(30, 30))


def test_a_pickle_checkpoint_loads_only_when_explicitly_allowed(tmp_path):
    import dataclasses

    from medldm.models.testing import tiny_prior

    prior = tiny_prior()
    path = tmp_path / "imported.pt"
    torch.save(
        {
            "model": dataclasses.asdict(prior.config),
            "autoencoder": prior.autoencoder.state_dict(),
            "unet": prior.unet.state_dict(),
        },
        path,
    )
    with pytest.raises(InvalidInputError, match="allow_pickle=True"):
        load_prior_checkpoint(path)
    loaded = load_prior_checkpoint(path, allow_pickle=True)
    z = torch.zeros(1, 4, 4, 4)
    torch.testing.assert_close(loaded.unet(z, torch.tensor([5])), prior.unet(z, torch.tensor([5])))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InvalidInputError, match="must be a dict"):
        load_prior_checkpoint(tmp_path / "other.pt", allow_pickle=True)


def test_prior_network_calls_in_bf16_return_float32_close_to_fp32(checkpoint):
    """precision=bf16 runs the networks under autocast (where the CPU has native bf16;
    forced here so the test runs on any CPU) and hands the solvers float32 back."""
    from unittest import mock

    folder, _, _ = checkpoint
    with mock.patch("medldm.models.precision.cpu_has_native_bf16", return_value=True):
        fast = load_prior(folder, device="cpu", precision="bf16")
    exact = load_prior(folder, device="cpu", precision="fp32")
    assert (fast.precision, exact.precision) == ("bf16", "fp32")
    x = torch.rand(2, 1, 32, 32)
    t = torch.tensor([10, 500])
    with mock.patch("medldm.models.precision.cpu_has_native_bf16", return_value=True):
        z, image = fast.encode(x), fast.decode(fast.encode(x))
        eps = fast.predict_eps(z, t)
    assert z.dtype == image.dtype == eps.dtype == torch.float32
    torch.testing.assert_close(z, exact.encode(x), atol=0.05, rtol=0.05)
    torch.testing.assert_close(eps, exact.predict_eps(exact.encode(x), t), atol=0.1, rtol=0.1)


def test_bf16_is_refused_where_it_would_only_be_emulated(checkpoint):
    from unittest import mock

    folder, _, _ = checkpoint
    with mock.patch("medldm.models.precision.cpu_has_native_bf16", return_value=False):
        with pytest.raises(InvalidInputError, match="no native bf16"):
            load_prior(folder, device="cpu", precision="bf16")
        assert load_prior(folder, device="cpu", precision="auto").precision == "fp32"


def test_latent_normalization_reads_old_checkpoints_and_checks_channel_counts():
    from medldm.models.latent_normalization import LatentNormalization

    legacy = LatentNormalization.from_meta({"scale_factor": 0.7}, channels=3)
    assert legacy.is_global and legacy.scale_factor == pytest.approx(0.7)
    mu = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(legacy.forward(mu), mu * 0.7)
    fitted = LatentNormalization.fit(mu * torch.tensor([5.0, 1.0, 0.2]).view(1, 3, 1, 1))
    assert fitted.is_global  # "global" is one scale, no shift
    per_channel = LatentNormalization.fit(mu, "per_channel")
    read = LatentNormalization.from_meta({"latent_normalization": per_channel.to_meta()}, 3)
    torch.testing.assert_close(read.shift, per_channel.shift)
    torch.testing.assert_close(read.scale, per_channel.scale)
    assert read.scale_factor is None
    with pytest.raises(InvalidInputError, match="4 latent channels"):
        LatentNormalization.from_meta({"latent_normalization": per_channel.to_meta()}, 4)
    with pytest.raises(InvalidInputError, match="unknown latent normalization"):
        LatentNormalization.fit(mu, "per_pixel")
