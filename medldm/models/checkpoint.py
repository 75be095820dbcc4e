"""The prior checkpoint format: a folder of safetensors weights and a JSON description.

::

    brain_t1_2d/
      config.json              model config, scale factor, normalisation, data card, split,
                               training steps and commands, SHA-256 of every weight file
      autoencoder.safetensors  AutoencoderKL weights
      unet.safetensors         DiffusionModelUNet weights (EMA), absent after stage 1

Loading never executes code (safetensors holds tensors only), checks every file's SHA-256
and that the weights match the config, and says what is wrong otherwise. A folder is
written under a temporary name and renamed into place.

Example
-------
>>> import tempfile, pathlib
>>> from medldm.models.config import LDMConfig, AutoencoderConfig, build_autoencoder
>>> cfg = LDMConfig(autoencoder=AutoencoderConfig(channels=(8, 8, 8), norm_num_groups=4))
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "tiny"
>>> _ = save_prior_checkpoint(folder, config=cfg, autoencoder=build_autoencoder(cfg.autoencoder))
>>> loaded = load_prior_checkpoint(folder)
>>> loaded.unet is None, loaded.meta["format"]
(True, 'medldm-prior')
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medldm.errors import DataNotFoundError, InvalidInputError, OutputExistsError
from medldm.models.config import LDMConfig, build_autoencoder, build_unet
from medldm.utils.files import sha256_file

FORMAT = "medldm-prior"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
AUTOENCODER_FILE = "autoencoder.safetensors"
UNET_FILE = "unet.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")


@dataclass
class LoadedPrior:
    """Networks and description read from a checkpoint folder."""

    config: LDMConfig
    autoencoder: nn.Module
    unet: nn.Module | None
    meta: dict[str, Any]
    path: Path


def _state_dict(module: nn.Module, half: bool) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        if half and value.is_floating_point():
            value = value.half()
        state[key] = value
    return state


def save_prior_checkpoint(
    folder: str | Path,
    *,
    config: LDMConfig,
    autoencoder: nn.Module,
    unet: nn.Module | None = None,
    scale_factor: float | None = None,
    latent_normalization: dict[str, list[float]] | None = None,
    normalization: dict[str, Any] | None = None,
    data_card: str | None = None,
    split: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    half: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a prior checkpoint folder atomically and return its path.

    ``half=True`` stores float weights as float16 (they load back as float32).
    ``latent_normalization`` (``{"shift": [...], "scale": [...]}`` per latent channel,
    :mod:`medldm.models.latent_normalization`) supersedes the single ``scale_factor``.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise OutputExistsError(
            "checkpoint folder exists", path=folder, fix="pass overwrite=True or a new folder"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        files = {}
        save_file(_state_dict(autoencoder, half), str(staging / AUTOENCODER_FILE))
        files[AUTOENCODER_FILE] = sha256_file(staging / AUTOENCODER_FILE)
        if unet is not None:
            save_file(_state_dict(unet, half), str(staging / UNET_FILE))
            files[UNET_FILE] = sha256_file(staging / UNET_FILE)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": config.to_dict(),
            "scale_factor": scale_factor,
            "latent_normalization": latent_normalization,
            "normalization": normalization,
            "data_card": data_card,
            "split": split,
            "training": training or {},
            "weights_dtype": "float16" if half else "float32",
            "files": files,
        }
        (staging / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True))
        os.chmod(staging, 0o755)
        if folder.exists():
            backup = folder.with_name(f".{folder.name}.old")
            if backup.exists():
                shutil.rmtree(backup)
            os.replace(folder, backup)
            os.replace(staging, folder)
            shutil.rmtree(backup)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def read_checkpoint_meta(folder: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, validated."""
    folder = Path(folder)
    _refuse_pickle(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise DataNotFoundError(
            f"not a medldm checkpoint: {CONFIG_NAME} missing",
            path=folder,
            fix="point to a folder written by medldm-train-* (or a shipped prior name)",
        )
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"corrupt {CONFIG_NAME} ({exc})", path=config_path) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InvalidInputError(f"{CONFIG_NAME} is not a {FORMAT} description", path=config_path)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InvalidInputError(
            f"checkpoint format version {meta.get('format_version')} is newer than this medldm",
            path=config_path,
            fix="upgrade medldm",
        )
    return meta


def _load_pickled(path: Path, device: str | torch.device) -> LoadedPrior:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read the pickle checkpoint safely ({exc})",
            path=path,
            fix="it must hold only tensors and plain containers (weights_only=True)",
        ) from exc
    if not isinstance(payload, dict) or "model" not in payload or "autoencoder" not in payload:
        raise InvalidInputError(
            "a pickle checkpoint must be a dict with 'model' and 'autoencoder'", path=path
        )
    config = LDMConfig.from_dict(payload["model"])
    autoencoder = build_autoencoder(config.autoencoder)
    try:
        autoencoder.load_state_dict(payload["autoencoder"])
        unet = None
        if payload.get("unet") is not None:
            unet = build_unet(config.unet, config.autoencoder.latent_channels)
            unet.load_state_dict(payload["unet"])
            unet = unet.to(device).eval()
    except RuntimeError as exc:
        raise InvalidInputError(f"weights do not match the config: {exc}", path=path) from exc
    meta = {"format": FORMAT, "model": payload["model"], **dict(payload.get("meta") or {})}
    return LoadedPrior(config, autoencoder.to(device).eval(), unet, meta, path)


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InvalidInputError(
            "pickle-based checkpoints are refused: loading them can execute code",
            path=path,
            fix="convert it to a medldm checkpoint folder (safetensors), or pass "
            "allow_pickle=True to read it with torch.load(weights_only=True)",
        )


def _load_weights(folder: Path, name: str, expected_sha: str, module: nn.Module) -> None:
    path = folder / name
    if not path.is_file():
        raise DataNotFoundError(f"weight file {name} is missing", path=folder)
    actual = sha256_file(path)
    if actual != expected_sha:
        raise InvalidInputError(
            f"SHA-256 mismatch: the file was modified or damaged (expected {expected_sha[:12]}…, "
            f"found {actual[:12]}…)",
            path=path,
            fix="restore the original file; do not edit weights by hand",
        )
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise InvalidInputError(f"unreadable safetensors file ({exc})", path=path) from exc
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong_shape:
            key = wrong_shape[0]
            details.append(
                f"{len(wrong_shape)} of another shape (e.g. {key}: "
                f"{tuple(state[key].shape)} vs config {tuple(own[key].shape)})"
            )
        raise InvalidInputError(
            "weights do not match the model config: " + "; ".join(details),
            path=path,
            fix=f"use the {CONFIG_NAME} that was saved with these weights",
        )
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def load_prior_checkpoint(
    folder: str | Path, device: str | torch.device = "cpu", *, allow_pickle: bool = False
) -> LoadedPrior:
    """Read a checkpoint folder: verify hashes and shapes, rebuild and load the networks.

    A pickle-format file (``.pt``, ``.pth``, ``.ckpt``, ...) is refused unless
    ``allow_pickle=True``; even then it is read with ``torch.load(weights_only=True)``
    (tensors and plain containers only, never code) and must hold a dict with ``model``
    (the LDM config as in ``config.json``), ``autoencoder`` and optionally ``unet`` (state
    dicts) and optionally ``meta`` — for importing weights trained elsewhere; save it as a
    folder with :func:`save_prior_checkpoint` afterwards.
    """
    folder = Path(folder)
    if allow_pickle and folder.suffix.lower() in PICKLE_SUFFIXES and folder.is_file():
        return _load_pickled(folder, device)
    meta = read_checkpoint_meta(folder)
    config = LDMConfig.from_dict(meta["model"])
    files = meta.get("files", {})
    if AUTOENCODER_FILE not in files:
        raise InvalidInputError(f"{CONFIG_NAME} lists no {AUTOENCODER_FILE}", path=folder)
    autoencoder = build_autoencoder(config.autoencoder)
    _load_weights(folder, AUTOENCODER_FILE, files[AUTOENCODER_FILE], autoencoder)
    unet = None
    if UNET_FILE in files:
        unet = build_unet(config.unet, config.autoencoder.latent_channels)
        _load_weights(folder, UNET_FILE, files[UNET_FILE], unet)
        unet = unet.to(device).eval()
    return LoadedPrior(config, autoencoder.to(device).eval(), unet, meta, folder)
