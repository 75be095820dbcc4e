"""Console scripts ``medldm-train-autoencoder`` and ``medldm-train-diffusion`` (Hydra).

Examples::

    medldm-train-autoencoder model=brain_t1_2d
    medldm-train-diffusion model=brain_t1_2d
    torchrun --nproc_per_node=2 "$(which medldm-train-autoencoder)" model=tiny_2d
    medldm-train-autoencoder model=tiny_2d model.data.kind=folder +model.data.folder=/my/pngs

A model preset (``configs/model/<name>.yaml``) holds the networks, the training data and
both stages' hyper-parameters; the run folder is ``runs/<name>`` unless ``run_dir=`` says
otherwise. A rerun resumes from the run folder's saved state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from medldm.models.config import LDMConfig, UNetConfig
from medldm.problems.configs import config_dir
from medldm.train.autoencoder import AutoencoderTraining, train_autoencoder
from medldm.train.diffusion import DiffusionTraining, train_diffusion

CONFIG_DIR = str(config_dir())


def _plain(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def run_autoencoder(cfg: DictConfig) -> Path:
    model_cfg = _plain(cfg.model)
    ldm = LDMConfig.from_dict(model_cfg["ldm"])
    training = AutoencoderTraining(
        **model_cfg.get("autoencoder_training", {}),
        data=model_cfg["data"],
        data_card=model_cfg.get("data_card"),
        device=cfg.device,
    )
    prior = train_autoencoder(ldm, training, Path(cfg.run_dir) / "autoencoder")
    print(f"autoencoder checkpoint: {prior}")
    return prior


def run_diffusion(cfg: DictConfig) -> Path:
    model_cfg = _plain(cfg.model)
    unet = UNetConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in model_cfg["ldm"]["unet"].items()}
    )
    stage1 = cfg.get("autoencoder") or str(Path(cfg.run_dir) / "autoencoder" / "prior")
    training = DiffusionTraining(
        **model_cfg.get("diffusion_training", {}),
        autoencoder=stage1,
        data=model_cfg["data"],
        device=cfg.device,
    )
    prior = train_diffusion(unet, training, Path(cfg.run_dir) / "diffusion")
    print(f"prior checkpoint: {prior}")
    return prior


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train/autoencoder")
def autoencoder_main(cfg: DictConfig) -> None:
    run_autoencoder(cfg)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train/diffusion")
def diffusion_main(cfg: DictConfig) -> None:
    run_diffusion(cfg)
