"""The training campaign: many short runs of one command continue one training, stop
cleanly at a checkpoint (signal or time budget), and survive the loss of their run state
through the fp16 milestones."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from medldm.models.prior import load_prior
from medldm.train.campaign import Campaign, idle_cores, run_campaign
from medldm.train.loop import StopRequest


def _preset(folder: Path, ae_steps: int, diffusion_steps: int) -> dict:
    small = {"log_every": 1, "validate_every": 4, "checkpoint_every": 4, "n_validation": 4}
    return {
        "name": "tiny_campaign",
        "data": {"kind": "folder", "folder": str(folder), "size": [32, 32], "augment": False},
        "ldm": {
            "image_size": [32, 32],
            "autoencoder": {
                "spatial_dims": 2,
                "channels": [8, 16, 16],
                "latent_channels": 4,
                "norm_num_groups": 4,
                "shortcut": "block_pca",
            },
            "unet": {
                "spatial_dims": 2,
                "channels": [16, 16, 32],
                "attention_levels": [False, False, True],
                "num_head_channels": 16,
                "norm_num_groups": 8,
            },
        },
        "autoencoder_training": {"steps": ae_steps, "batch_size": 4, "lr": 1e-3, **small},
        "diffusion_training": {
            "steps": diffusion_steps,
            "batch_size": 4,
            "lr": 1e-3,
            "n_sample_grid": 2,
            "sample_steps": 2,
            "latent_normalization": "per_channel",  # as the brain_t1_2d preset
            **small,
        },
    }


@pytest.fixture()
def setup(tmp_path) -> tuple[Path, Path]:
    """A config folder with the tiny preset, and a training folder of real photo patches."""
    camera = skdata.camera().astype(np.float32)[::4, ::4] / 255.0  # 128x128
    patches = [camera[i : i + 32, j : j + 32] for i in range(0, 128, 32) for j in range(0, 128, 32)]
    images = tmp_path / "images"
    images.mkdir()
    np.savez(images / "train.npz", images=np.stack(patches))
    config_dir = tmp_path / "configs"
    (config_dir / "model").mkdir(parents=True)
    return config_dir, images


def _write_preset(config_dir: Path, images: Path, ae_steps: int, diffusion_steps: int) -> None:
    preset = _preset(images, ae_steps, diffusion_steps)
    (config_dir / "model" / "tiny_campaign.yaml").write_text(yaml.safe_dump(preset))


class StopAfterChecks(StopRequest):
    """Asks to stop once it has been asked ``n`` times (one ask per training step)."""

    def __init__(self, n: int):
        super().__init__()
        self.remaining = n

    @property
    def requested(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0 or super().requested


def test_campaign_resumes_stage_by_stage_and_writes_milestones(setup, tmp_path):
    config_dir, images = setup
    _write_preset(config_dir, images, ae_steps=10, diffusion_steps=6)
    campaign = Campaign(tmp_path / "root", tmp_path / "milestones", config_dir=config_dir)
    assert campaign.next_stage("tiny_campaign").stage == "autoencoder"

    # a first short run: stopped after a few steps, at a checkpoint
    run_campaign(["tiny_campaign"], minutes=60, campaign=campaign, stop=StopAfterChecks(8))
    first = campaign.status("tiny_campaign", "autoencoder")
    assert first.source == "state" and 0 < first.step < 10
    milestone = tmp_path / "milestones" / "tiny_campaign" / "autoencoder" / "config.json"
    saved = json.loads(milestone.read_text())["training"]["autoencoder_steps"]
    assert saved == first.step  # every call ends with a milestone

    # the same command again: finishes the autoencoder, then trains the diffusion model
    statuses = run_campaign(["tiny_campaign"], minutes=60, campaign=campaign)
    assert [(s.stage, s.step, s.done) for s in statuses] == [
        ("autoencoder", 10, True),
        ("diffusion", 6, True),
    ]
    assert campaign.next_stage("tiny_campaign") is None
    log = (tmp_path / "root" / "tiny_campaign" / "autoencoder" / "train_log.csv").read_text()
    steps = [int(line.split(",")[0]) for line in log.splitlines()[1:]]
    assert steps == sorted(steps) and steps[-1] == 10  # one continuous run, not a restart

    milestone = tmp_path / "milestones" / "tiny_campaign" / "diffusion"
    meta = json.loads((milestone / "config.json").read_text())
    assert meta["weights_dtype"] == "float16" and meta["training"]["diffusion_steps"] == 6
    assert len(meta["latent_normalization"]["scale"]) == 4 and meta["scale_factor"] is None
    prior = load_prior(milestone, device="cpu")
    sample = prior.sample(1, n_steps=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(sample).all()


def test_a_diffusion_only_prior_trains_on_another_priors_autoencoder(setup, tmp_path):
    """autoencoder_from + init_weights (brain_native_pos_2d on brain_native_2d): no
    autoencoder stage; the diffusion stage starts from the other prior's UNet, widened by
    two position channels, and trains on its crops with their positions. Both name the
    other prior by its folder in the checkout (the config folder's parent), as a committed
    milestone is named, wherever the campaign runs."""
    config_dir, images = setup
    _write_preset(config_dir, images, ae_steps=4, diffusion_steps=4)
    campaign = Campaign(tmp_path / "root", tmp_path / "milestones", config_dir=config_dir)
    run_campaign(["tiny_campaign"], minutes=60, campaign=campaign)
    source = tmp_path / "milestones" / "tiny_campaign" / "diffusion"

    preset = _preset(images, 0, 4)
    del preset["autoencoder_training"]
    in_checkout = str(source.relative_to(config_dir.parent))  # milestones/tiny_campaign/...
    preset["autoencoder_from"] = in_checkout
    preset["data"].update(patch=16, positions=True)
    preset["ldm"]["unet"]["position_channels"] = 2
    preset["diffusion_training"].update(init_weights=in_checkout, sample_shape=[32, 32])
    (config_dir / "model" / "tiny_positions.yaml").write_text(yaml.safe_dump(preset))
    assert campaign.next_stage("tiny_positions").stage == "diffusion"
    statuses = run_campaign(["tiny_positions"], minutes=60, campaign=campaign)
    assert [(s.stage, s.done) for s in statuses] == [("autoencoder", True), ("diffusion", True)]
    milestone = tmp_path / "milestones" / "tiny_positions" / "diffusion"
    prior, original = load_prior(milestone, device="cpu"), load_prior(source, device="cpu")
    ae, ae_source = prior.autoencoder.state_dict(), original.autoencoder.state_dict()
    assert all(torch.equal(ae[k], ae_source[k]) for k in ae_source)  # the same autoencoder
    assert prior.unet.conv_in.conv.weight.shape[1] == 4 + 2


def test_lost_run_state_restarts_from_the_milestone(setup, tmp_path):
    config_dir, images = setup
    _write_preset(config_dir, images, ae_steps=8, diffusion_steps=0)
    campaign = Campaign(tmp_path / "root", tmp_path / "milestones", config_dir=config_dir)
    run_campaign(["tiny_campaign"], minutes=60, campaign=campaign)
    shutil.rmtree(tmp_path / "root")  # a new machine: the cache folder is gone
    status = campaign.status("tiny_campaign", "autoencoder")
    assert (status.step, status.source) == (8, "milestone")

    _write_preset(config_dir, images, ae_steps=12, diffusion_steps=0)  # train further
    run_campaign(["tiny_campaign"], minutes=60, campaign=campaign)
    log = (tmp_path / "root" / "tiny_campaign" / "autoencoder" / "train_log.csv").read_text()
    assert int(log.splitlines()[1].split(",")[0]) == 9  # continued after step 8
    assert campaign.status("tiny_campaign", "autoencoder").step == 12


def test_sigterm_stops_at_a_checkpoint(setup, tmp_path):
    config_dir, images = setup
    _write_preset(config_dir, images, ae_steps=50, diffusion_steps=0)
    campaign = Campaign(tmp_path / "root", tmp_path / "milestones", config_dir=config_dir)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = StopRequest().install()
    original = campaign.run_stage

    def run_stage_with_a_kill(*args, **kwargs):
        # SIGTERM this process once the trainer has written its first checkpoint
        log_dir = tmp_path / "root" / "tiny_campaign" / "autoencoder"
        import threading

        def kill_when_checkpointed():
            while not (log_dir / "state").exists():
                threading.Event().wait(0.05)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=kill_when_checkpointed, daemon=True).start()
        return original(*args, **kwargs)

    campaign.run_stage = run_stage_with_a_kill
    try:
        run_campaign(["tiny_campaign"], minutes=60, campaign=campaign, stop=stop)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    status = campaign.status("tiny_campaign", "autoencoder")
    assert stop.reason == "SIGTERM"
    assert status.source == "state" and 4 <= status.step < 50


def test_idle_cores_is_at_least_one():
    assert 1 <= idle_cores() <= (os.cpu_count() or 1)


def test_training_from_a_pack_needs_none_of_the_io_libraries(tmp_path):
    """A bare GPU machine has no nibabel or pydicom: training from a pack must not import
    them (benchmarks/gpu_pack.py carries only what training needs)."""
    import subprocess
    import sys

    from medldm.train.data import save_packed_arrays

    images = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    pack = save_packed_arrays(tmp_path / "pack.npz", images, images[:2], 1, {"kind": "test"})
    code = (
        "import sys\n"
        "for name in ('nibabel', 'pydicom', 'tifffile', 'h5py'):\n"
        "    sys.modules[name] = None\n"
        "from medldm.train.campaign import main\n"
        "from medldm.train.data import build_training_data\n"
        f"data = build_training_data(kind='arrays', path={str(pack)!r})\n"
        "print(len(data.train), len(data.validation), data.train.flip_axis)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6", "2", "1"]


def test_a_lossless_codec_is_exported_untrained_and_its_unet_widened_from_another(setup, tmp_path):
    """brain_t1_lossless_2d's recipe: as many block-PCA components as a block has pixels
    (16 of a 4 x 4 block) make the codec lossless, so the autoencoder stage trains nothing
    (steps 0) but still exports it; the diffusion stage starts from another prior's UNet
    with fewer latent channels, the new input and output channels at zero."""
    config_dir, images = setup
    _write_preset(config_dir, images, ae_steps=4, diffusion_steps=4)
    campaign = Campaign(tmp_path / "root", tmp_path / "milestones", config_dir=config_dir)
    run_campaign(["tiny_campaign"], minutes=60, campaign=campaign)
    source = tmp_path / "milestones" / "tiny_campaign" / "diffusion"

    preset = _preset(images, 0, 4)
    preset["ldm"]["autoencoder"]["latent_channels"] = 16
    preset["diffusion_training"]["init_weights"] = str(source)
    (config_dir / "model" / "tiny_lossless.yaml").write_text(yaml.safe_dump(preset))
    status = campaign.status("tiny_lossless", "autoencoder")
    assert (status.step, status.target, status.done) == (0, 0, False)  # exported once
    statuses = run_campaign(["tiny_lossless"], minutes=60, campaign=campaign)
    assert [(s.stage, s.step, s.done) for s in statuses] == [
        ("autoencoder", 0, True),
        ("diffusion", 4, True),
    ]
    prior = load_prior(tmp_path / "milestones" / "tiny_lossless" / "diffusion", device="cpu")
    photo = torch.from_numpy(np.load(images / "train.npz")["images"][:2, None])
    with torch.no_grad():
        round_trip = prior.decode(prior.encode(photo)).float()
    assert float((round_trip - photo).abs().max()) < 2e-3  # fp16 weights, no codec loss
    assert prior.unet.conv_in.conv.weight.shape[1] == 16
    assert prior.unet.out[2].conv.weight.shape[0] == 16
