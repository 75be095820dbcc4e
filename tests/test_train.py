"""LDM training on CPU with tiny models: loss decreases, exact resume, DDP replicas agree,
checkpoints round trip, and the prior loads and samples in 2D and 3D."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from skimage import data as skdata
from skimage.transform import resize

from medldm.errors import InvalidInputError
from medldm.models.config import AutoencoderConfig, LDMConfig, UNetConfig
from medldm.models.prior import load_prior
from medldm.train.autoencoder import AutoencoderTraining, train_autoencoder
from medldm.train.diffusion import DiffusionTraining, train_diffusion, training_noise

TINY_2D = LDMConfig(
    AutoencoderConfig(spatial_dims=2, channels=(8, 16, 16), latent_channels=4, norm_num_groups=4),
    UNetConfig(
        spatial_dims=2,
        channels=(16, 16, 32),
        attention_levels=(False, False, True),
        num_head_channels=16,
        norm_num_groups=8,
    ),
    image_size=(32, 32),
)
TINY_3D = LDMConfig(
    AutoencoderConfig(spatial_dims=3, channels=(4, 8, 8), latent_channels=3, norm_num_groups=4),
    UNetConfig(
        spatial_dims=3,
        channels=(8, 8, 16),
        attention_levels=(False, False, True),
        num_head_channels=8,
        norm_num_groups=4,
    ),
    image_size=(16, 16, 16),
)


def _real_patches(n: int = 64, size: int = 32) -> np.ndarray:
    """Downsampled crops of scikit-image's bundled real photographs (no download)."""
    patches = []
    for image in (skdata.camera(), skdata.coins(), skdata.moon(), skdata.page()):
        small = resize(image.astype(np.float32) / 255.0, (128, 128), anti_aliasing=True)
        for i in range(0, 128, size):
            for j in range(0, 128, size):
                patches.append(small[i : i + size, j : j + size])
    return np.stack(patches[:n]).astype(np.float32)


@pytest.fixture(scope="module")
def folder_2d(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images2d")
    np.savez(folder / "train.npz", images=_real_patches())
    return folder


@pytest.fixture(scope="module")
def folder_3d(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images3d")
    patches = _real_patches(64, 16)
    volumes = np.stack(
        [np.stack([patches[i]] * 16, axis=-1) * np.linspace(0.5, 1, 16) for i in range(0, 64, 8)]
    )
    np.savez(folder / "train.npz", images=volumes.astype(np.float32))
    return folder


def _ae_training(folder: Path, size, **changes) -> AutoencoderTraining:
    base = AutoencoderTraining(
        steps=30,
        batch_size=4,
        lr=2e-3,
        ema_decay=0.5,
        log_every=5,
        validate_every=10,
        checkpoint_every=10,
        n_validation=4,
        device="cpu",
        data={"kind": "folder", "folder": str(folder), "size": list(size), "augment": False},
    )
    return replace(base, **changes)


def _log(run: Path) -> list[dict[str, str]]:
    with open(run / "train_log.csv") as handle:
        return list(csv.DictReader(handle))


def test_tiny_2d_autoencoder_loss_decreases_and_exports_a_prior(folder_2d, tmp_path):
    prior_dir = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32)), tmp_path / "ae")
    losses = [float(r["l1"]) for r in _log(tmp_path / "ae") if r.get("l1")]
    assert losses[-1] < losses[0]
    meta = json.loads((prior_dir / "config.json").read_text())
    assert meta["training"]["autoencoder_steps"] == 30
    assert set(meta["files"]) == {"autoencoder.safetensors"}


def _diffusion_training(stage1: Path, folder: Path, **changes) -> DiffusionTraining:
    base = DiffusionTraining(
        autoencoder=str(stage1),
        steps=40,
        batch_size=8,
        lr=2e-3,
        ema_decay=0.5,
        log_every=1,
        validate_every=20,
        checkpoint_every=20,
        n_validation=4,
        n_sample_grid=4,
        sample_steps=3,
        device="cpu",
        data={"kind": "folder", "folder": str(folder), "size": [32, 32], "augment": False},
    )
    return replace(base, **changes)


def test_tiny_2d_diffusion_trains_and_the_prior_samples(folder_2d, tmp_path):
    stage1 = train_autoencoder(
        TINY_2D, _ae_training(folder_2d, (32, 32), steps=10), tmp_path / "ae"
    )
    training = _diffusion_training(stage1, folder_2d)
    prior_dir = train_diffusion(TINY_2D.unet, training, tmp_path / "diff")
    losses = [float(r["loss"]) for r in _log(tmp_path / "diff") if r.get("loss")]
    assert np.mean(losses[-10:]) < 0.8 * losses[0]
    assert (tmp_path / "diff" / "samples" / "step_0000040.png").is_file()
    prior = load_prior(prior_dir, device="cpu")
    assert prior.scale_factor > 0
    samples = prior.sample(2, n_steps=4, generator=torch.Generator().manual_seed(0))
    again = prior.sample(2, n_steps=4, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 32, 32) and torch.isfinite(samples).all()
    torch.testing.assert_close(samples, again)  # same seed, same samples


def test_per_channel_latent_normalization_is_fitted_stored_and_resumed(folder_2d, tmp_path):
    stage1 = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=5), tmp_path / "ae")
    training = _diffusion_training(
        stage1,
        folder_2d,
        steps=4,
        batch_size=4,
        lr=1e-4,
        ema_decay=0.999,
        validate_every=4,
        checkpoint_every=2,
        n_sample_grid=1,
        sample_steps=2,
        latent_normalization="per_channel",
        noise_offset=0.1,
    )
    prior_dir = train_diffusion(TINY_2D.unet, replace(training, steps=2), tmp_path / "diff")
    stored = json.loads((prior_dir / "config.json").read_text())["latent_normalization"]
    assert len(stored["shift"]) == len(stored["scale"]) == 4
    prior = load_prior(prior_dir, device="cpu")
    assert prior.scale_factor is None and not prior.latent_normalization.is_global
    # the fitted map standardises every channel of the training latents
    images = torch.from_numpy(_real_patches())[:, None]
    z = prior.encode(images)
    per_channel = z.transpose(0, 1).reshape(4, -1)
    assert per_channel.std(1).sub(1).abs().max() < 0.35
    torch.testing.assert_close(
        prior.decode(z), prior.autoencoder.decode(prior.autoencoder.encode(images)[0])
    )
    # resumed from the run state: the same normalisation, not a refit
    train_diffusion(TINY_2D.unet, training, tmp_path / "diff")
    again = json.loads((prior_dir / "config.json").read_text())
    assert again["latent_normalization"] == stored
    assert again["training"]["diffusion_steps"] == 4


def test_a_new_prior_starts_from_another_priors_weights_at_step_zero(folder_2d, tmp_path):
    """init_weights: transfer learning (the native-resolution brain prior starts from the
    2 mm one): the weights are copied, the step count and latent normalisation are not."""
    from medldm.models.checkpoint import load_prior_checkpoint

    source_ae = train_autoencoder(
        TINY_2D, _ae_training(folder_2d, (32, 32), steps=10), tmp_path / "source_ae"
    )
    source = train_diffusion(
        TINY_2D.unet,
        _diffusion_training(source_ae, folder_2d, steps=6, validate_every=6, checkpoint_every=6),
        tmp_path / "source",
    )
    ae = train_autoencoder(
        TINY_2D,
        _ae_training(folder_2d, (32, 32), steps=1, lr=1e-12, init_weights=str(source)),
        tmp_path / "ae",
    )
    copied = load_prior_checkpoint(ae).autoencoder.state_dict()
    original = load_prior_checkpoint(source).autoencoder.state_dict()
    assert all(torch.allclose(copied[k], original[k], atol=1e-6) for k in original)
    assert json.loads((ae / "config.json").read_text())["training"]["autoencoder_steps"] == 1
    scaled = folder_2d.parent / "darker"  # other data: the normalisation is refitted
    scaled.mkdir()
    with np.load(next(folder_2d.glob("*.npz"))) as data:
        np.savez(scaled / "images.npz", images=data["images"] ** 3)
    diffusion = _diffusion_training(
        ae,
        scaled,
        steps=1,
        lr=1e-12,
        validate_every=1,
        checkpoint_every=1,
        init_weights=str(source),
    )
    prior_dir = train_diffusion(TINY_2D.unet, diffusion, tmp_path / "diff")
    new, old = load_prior_checkpoint(prior_dir), load_prior_checkpoint(source)
    assert json.loads((prior_dir / "config.json").read_text())["training"]["diffusion_steps"] == 1
    fresh = load_prior_checkpoint(
        train_diffusion(TINY_2D.unet, replace(diffusion, init_weights=None), tmp_path / "fresh")
    )
    assert new.meta["scale_factor"] == pytest.approx(fresh.meta["scale_factor"], rel=1e-6)
    assert new.meta["scale_factor"] != old.meta["scale_factor"]
    unet, before = new.unet.state_dict(), old.unet.state_dict()
    assert all(torch.allclose(unet[k], before[k], atol=1e-3) for k in before)
    # latent_normalization: from_init keeps the source's map (a fine-tune on other crops)
    kept = train_diffusion(
        TINY_2D.unet,
        replace(diffusion, latent_normalization="from_init"),
        tmp_path / "kept",
    )
    assert load_prior_checkpoint(kept).meta["scale_factor"] == old.meta["scale_factor"]
    with pytest.raises(InvalidInputError, match="from_init keeps init_weights"):
        train_diffusion(
            TINY_2D.unet,
            replace(diffusion, latent_normalization="from_init", init_weights=None),
            tmp_path / "none",
        )


def test_unpadded_crops_keep_a_smaller_images_size_and_refuse_mixed_batches():
    from medldm.train.data import ImageDataset

    images = [np.full((20, 24), 0.5, np.float32), np.full((40, 40), 0.5, np.float32)]
    rng = np.random.default_rng(0)
    padded = ImageDataset(images, patch=32, augment=False)
    assert padded.get(0, rng).shape == (1, 32, 32) and padded.get(1, rng).shape == (1, 32, 32)
    whole = ImageDataset(images, patch=32, augment=False, pad=False)
    assert whole.get(0, rng).shape == (1, 20, 24) and whole.get(1, rng).shape == (1, 32, 32)
    assert tuple(whole.batch([0], rng).shape) == (1, 1, 20, 24)
    sixteen = ImageDataset(images, patch=32, augment=False, pad=False, crop_multiple=16)
    assert sixteen.get(0, rng).shape == (1, 16, 16) and sixteen.get(1, rng).shape == (1, 32, 32)
    with pytest.raises(InvalidInputError, match="cannot share a batch"):
        whole.batch([0, 1], rng)


def test_a_tiny_position_prior_trains_on_crops_and_samples_whole_images(folder_2d, tmp_path):
    """PaDIS-style: a UNet with position channels trains on 16 x 16 crops of 32 x 32
    images and samples whole images of another shape."""
    from medldm.errors import InvalidInputError
    from medldm.models.positions import PositionConditionedUNet

    stage1 = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=4), tmp_path / "ae")
    data = {"kind": "folder", "folder": str(folder_2d), "size": [32, 32], "patch": 16}
    unet = replace(TINY_2D.unet, position_channels=2)
    with pytest.raises(InvalidInputError, match="diffusion stage only"):
        train_autoencoder(
            TINY_2D,
            _ae_training(folder_2d, (32, 32), steps=1, data={**data, "positions": True}),
            tmp_path / "ae_positions",
        )
    with pytest.raises(InvalidInputError, match="position"):  # a UNet without position data
        train_diffusion(unet, _diffusion_training(stage1, folder_2d, steps=1), tmp_path / "bad")
    training = _diffusion_training(
        stage1,
        folder_2d,
        steps=6,
        validate_every=6,
        checkpoint_every=6,
        data={**data, "positions": True},
        sample_shape=(32, 32),
    )
    prior = load_prior(train_diffusion(unet, training, tmp_path / "diff"), device="cpu")
    assert isinstance(prior.unet, PositionConditionedUNet)
    samples = prior.sample(
        2, n_steps=3, generator=torch.Generator().manual_seed(0), image_shape=(48, 32)
    )
    assert samples.shape == (2, 1, 48, 32) and torch.isfinite(samples).all()


def test_a_tiny_slice_conditioned_prior_trains_and_samples_each_position(
    folder_2d, tmp_path, monkeypatch
):
    """A UNet told each slice's position in the head trains on slices that carry it (here
    the folder's images with made-up positions) and samples at chosen positions."""
    from medldm.errors import InvalidInputError
    from medldm.models.positions import PositionConditionedUNet
    from medldm.train import diffusion as diffusion_module
    from medldm.train.data import ImageDataset, TrainingData, build_training_data

    stage1 = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=4), tmp_path / "ae")
    unet = replace(TINY_2D.unet, slice_position=True)
    with pytest.raises(InvalidInputError, match="slice_position"):  # no positions in the data
        train_diffusion(unet, _diffusion_training(stage1, folder_2d, steps=1), tmp_path / "bad")
    with pytest.raises(InvalidInputError, match="ixi_slices"):
        build_training_data("folder", folder=folder_2d, size=32, slice_positions=True)

    def with_positions(**options):
        data = build_training_data(**options)
        at = [np.linspace(0, 1, len(d)) for d in (data.train, data.validation)]
        return TrainingData(
            ImageDataset(data.train.images, slice_positions=at[0], augment=False),
            ImageDataset(data.validation.images, slice_positions=at[1], augment=False),
            {**data.description, "slice_positions": True},
        )

    monkeypatch.setattr(diffusion_module, "build_training_data", with_positions)
    with pytest.raises(ValueError, match="high_noise_weight_max"):
        _diffusion_training(stage1, folder_2d, high_noise_weight_max=0.5)
    training = _diffusion_training(
        stage1, folder_2d, steps=6, validate_every=6, checkpoint_every=6, high_noise_weight_max=5
    )
    prior_dir = train_diffusion(unet, training, tmp_path / "diff")
    losses = [float(r["loss"]) for r in _log(tmp_path / "diff") if r.get("loss")]
    assert len(losses) == 6 and np.isfinite(losses).all()
    assert (prior_dir.parent / "samples" / "step_0000006.png").is_file()
    prior = load_prior(prior_dir, device="cpu")
    assert isinstance(prior.unet, PositionConditionedUNet) and prior.slice_conditioned
    with prior.at_slice_positions([0.0, 1.0]):
        samples = prior.sample(2, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 1, 32, 32) and torch.isfinite(samples).all()


def test_a_tiny_stack_aware_prior_trains_on_neighbours_and_samples_a_stack(
    folder_2d, tmp_path, monkeypatch
):
    """A UNet shown each slice's neighbours trains on slices that carry them (here the
    folder's images in a made-up order, one head) and denoises a contiguous stack at once."""
    from medldm.errors import InvalidInputError
    from medldm.train import diffusion as diffusion_module
    from medldm.train.data import (
        ImageDataset,
        TrainingData,
        build_training_data,
        extent_neighbours,
    )

    stage1 = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=4), tmp_path / "ae")
    unet = replace(TINY_2D.unet, slice_position=True, neighbour_slices=True)
    with pytest.raises(InvalidInputError, match="neighbour_slices needs slice_positions"):
        build_training_data("ixi_slices", neighbour_slices=True)

    def dataset(images, **options) -> ImageDataset:
        at = np.linspace(0, 1, len(images))
        pairs = extent_neighbours(["head"] * len(images), at)
        return ImageDataset(images, slice_positions=at, neighbours=pairs, **options)

    def with_neighbours(**options):
        data = build_training_data(**options)
        return TrainingData(
            dataset(data.train.images, flip_axis=1),
            dataset(data.validation.images, augment=False),
            {**data.description, "slice_positions": True, "neighbour_slices": True},
        )

    monkeypatch.setattr(diffusion_module, "build_training_data", with_neighbours)
    with pytest.raises(InvalidInputError, match="neighbour"):  # data with, network without
        slice_only = replace(TINY_2D.unet, slice_position=True)
        train_diffusion(slice_only, _diffusion_training(stage1, folder_2d, steps=1), tmp_path / "b")
    training = _diffusion_training(
        stage1, folder_2d, steps=6, validate_every=6, checkpoint_every=6, neighbour_dropout=0.5
    )
    prior_dir = train_diffusion(unet, training, tmp_path / "diff")
    losses = [float(r["loss"]) for r in _log(tmp_path / "diff") if r.get("loss")]
    assert len(losses) == 6 and np.isfinite(losses).all()
    prior = load_prior(prior_dir, device="cpu")
    assert prior.stack_aware
    with prior.at_slice_positions(np.linspace(0.2, 0.4, 3), adjacent=True):
        samples = prior.sample(3, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (3, 1, 32, 32) and torch.isfinite(samples).all()


def test_offset_noise_adds_one_constant_per_image_and_channel():
    torch.manual_seed(0)
    z0 = torch.zeros(256, 3, 8, 8, 8)
    white = training_noise(z0, 0.0)
    offset = training_noise(z0, 0.5)
    # white noise: per-(image, channel) means spread like 1 / sqrt(512); offset: ~0.5
    assert float(white.mean(dim=(2, 3, 4)).std()) < 0.06
    assert 0.45 < float(offset.mean(dim=(2, 3, 4)).std()) < 0.55
    # within one image and channel the offset is a constant: the spread about the mean stays 1
    centred = offset - offset.mean(dim=(2, 3, 4), keepdim=True)
    assert abs(float(centred.std()) - 1.0) < 0.02
    with pytest.raises(ValueError, match="noise_offset"):
        DiffusionTraining(noise_offset=-0.1)


def test_lr_cooldown_appended_to_a_finished_run_decays_to_zero(folder_2d, tmp_path):
    """A run finished at a constant rate is extended by a decay phase: it resumes from its
    state, and the logged rate falls linearly over the added steps."""
    stage1 = train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=3), tmp_path / "ae")
    training = _diffusion_training(
        stage1,
        folder_2d,
        steps=2,
        batch_size=4,
        lr=1e-3,
        ema_decay=0.999,
        validate_every=100,
        checkpoint_every=1,
        n_sample_grid=1,
        sample_steps=2,
    )
    run_dir = tmp_path / "diff"
    train_diffusion(TINY_2D.unet, training, run_dir)
    train_diffusion(TINY_2D.unet, replace(training, steps=6, lr_cooldown_steps=4), run_dir)
    with open(run_dir / "train_log.csv", newline="") as handle:
        rates = {int(row["step"]): float(row["lr"]) for row in csv.DictReader(handle)}
    assert [rates[s] for s in range(1, 7)] == pytest.approx(
        [1e-3, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4]
    )
    assert (
        json.loads((run_dir / "prior" / "config.json").read_text())["training"]["diffusion_steps"]
        == 6
    )
    with pytest.raises(ValueError, match="lr_cooldown_steps"):
        DiffusionTraining(steps=10, lr_cooldown_steps=11)


def test_tiny_3d_autoencoder_and_diffusion_train(folder_3d, tmp_path):
    stage1 = train_autoencoder(
        TINY_3D,
        _ae_training(folder_3d, (16, 16, 16), steps=20, batch_size=2, log_every=1),
        tmp_path / "ae",
    )
    losses = [float(r["l1"]) for r in _log(tmp_path / "ae") if r.get("l1")]
    assert np.mean(losses[-5:]) < losses[0]
    training = DiffusionTraining(
        autoencoder=str(stage1),
        steps=6,
        batch_size=2,
        ema_decay=0.5,
        log_every=3,
        validate_every=6,
        checkpoint_every=6,
        n_validation=2,
        n_sample_grid=2,
        sample_steps=2,
        device="cpu",
        data={"kind": "folder", "folder": str(folder_3d), "size": [16, 16, 16], "augment": False},
    )
    prior = load_prior(train_diffusion(TINY_3D.unet, training, tmp_path / "diff"), device="cpu")
    z = prior.encode(torch.rand(1, 1, 16, 16, 16))
    assert z.shape == (1, 3, 4, 4, 4)
    # A volume larger than the training size decodes in overlapping tiles, bounded memory.
    big = torch.randn(1, 3, 8, 8, 6)
    tiled = prior.decode(big)
    assert tiled.shape == (1, 1, 32, 32, 24) and torch.isfinite(tiled).all()


def test_interrupted_run_resumes_at_the_same_step_with_the_same_result(folder_2d, tmp_path):
    straight = tmp_path / "straight"
    train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=20), straight)
    interrupted = tmp_path / "interrupted"
    train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=10), interrupted)
    state = torch.load(interrupted / "state" / "training_state.pt", weights_only=True)
    assert state["step"] == 10
    train_autoencoder(TINY_2D, _ae_training(folder_2d, (32, 32), steps=20), interrupted)
    a = load_file(str(straight / "prior" / "autoencoder.safetensors"))
    b = load_file(str(interrupted / "prior" / "autoencoder.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)
    final = torch.load(interrupted / "state" / "training_state.pt", weights_only=True)
    reference = torch.load(straight / "state" / "training_state.pt", weights_only=True)
    assert final["step"] == reference["step"] == 20
    assert final["sampler"] == reference["sampler"]
    assert torch.equal(final["rng"]["torch"], reference["rng"]["torch"])


def test_two_process_ddp_keeps_replicas_identical(folder_2d, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "medldm.train",
        "autoencoder",
        "model=tiny_2d",
        f"run_dir={run_dir}",
        "device=cpu",
        "model.data.kind=folder",
        f"+model.data.folder={folder_2d}",
        "model.data.size=32",
        "~model.data.limit",
        "model.ldm.image_size=[32,32]",
        "model.autoencoder_training.steps=6",
        "model.autoencoder_training.checkpoint_every=3",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = json.loads((run_dir / "autoencoder" / "ddp_check.json").read_text())
    assert len(check["rank_sha256"]) == 2
    assert len(set(check["rank_sha256"])) == 1
