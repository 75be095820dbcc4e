"""Physics and solver presets by name: ``configs/physics/<name>.yaml`` and
``configs/solver/<name>.yaml``, each a ``_target_`` with its arguments.

The benchmark takes *lists* of preset names (``physics=[mri_4x,mri_8x]``), so presets are
loaded here with OmegaConf and :func:`hydra.utils.instantiate` rather than as Hydra config
groups. A name may also be the path of a YAML file. A solver without a preset file falls
back to :func:`medldm.solvers.get_solver` (the solver registry).

Solvers may have per-operator presets, tuned on training cases:
``configs/solver/<solver>_<operator>.yaml`` (e.g. ``tv_mri_4x.yaml``) is used for that
operator when it exists, ``<solver>.yaml`` otherwise (:func:`solver_for_operator`).

The configuration folder is ``$MEDLDM_CONFIG_DIR`` when set, else the ``configs/`` folder
of the source tree (beside the ``medldm`` package).

Example
-------
>>> (config_dir() / "bench" / "config.yaml").is_file()
True
>>> load_physics("inpaint_random").name
'inpainting (30% of pixels observed)'
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medldm.errors import DataNotFoundError, InvalidInputError

ENV_VAR = "MEDLDM_CONFIG_DIR"


def config_dir() -> Path:
    """The ``configs/`` folder (``$MEDLDM_CONFIG_DIR`` or the source tree's)."""
    env = os.environ.get(ENV_VAR)
    folder = Path(env).expanduser() if env else Path(__file__).resolve().parents[2] / "configs"
    if not folder.is_dir():
        raise DataNotFoundError(
            "the medldm configs folder is missing",
            path=folder,
            fix=f"run from a source checkout (pip install -e .) or set {ENV_VAR}",
        )
    return folder


def available_presets(group: str) -> list[str]:
    """Names of the YAML presets in ``configs/<group>/``, sorted."""
    folder = config_dir() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(group: str, name: str) -> Path | None:
    """The YAML file of a preset name (or an explicit ``.yaml`` path); None if absent."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        return path if path.is_file() else None
    path = config_dir() / group / f"{name}.yaml"
    return path if path.is_file() else None


def preset_digest(group: str, name: str) -> str:
    """First 12 hex digits of the SHA-256 of a preset file's text (``""`` without a file).

    Stored with every result row, so a rerun can tell rows made with another setting.
    """
    path = preset_path(group, name)
    if path is None:
        return ""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_preset_config(group: str, name: str) -> DictConfig:
    """The preset's config (``_target_`` and arguments), DataNotFoundError if missing."""
    path = preset_path(group, name)
    if path is None:
        known = ", ".join(available_presets(group)) or "none"
        raise DataNotFoundError(
            f"no {group} preset named {name!r} (known: {known})",
            path=config_dir() / group,
            fix=f"use a known name or add configs/{group}/{name}.yaml with a _target_",
        )
    config = OmegaConf.load(path)
    if not isinstance(config, DictConfig) or "_target_" not in config:
        raise InvalidInputError(
            "a preset must be a mapping with a _target_", path=path, fix="add _target_: ..."
        )
    return config


def _instantiate(config: DictConfig) -> Any:
    from hydra.utils import instantiate

    return instantiate(config, _convert_="all")


def load_physics(name: str) -> Any:
    """The physics factory of a preset (has ``build(image_shape, generator, device)``)."""
    factory = _instantiate(load_preset_config("physics", name))
    if not hasattr(factory, "build"):
        raise InvalidInputError(
            f"physics preset {name!r} made a {type(factory).__name__} without build()",
            path=preset_path("physics", name),
            fix="point _target_ at a factory in medldm.physics.factory",
        )
    return factory


def load_solver(name: str) -> Any:
    """The solver of a preset file, else of the registry ``medldm.solvers.get_solver``."""
    return solver_for_operator(name)[0]


def solver_for_operator(name: str, operator: str | None = None) -> tuple[Any, str]:
    """``(solver, source)`` for solver preset ``name`` applied to physics preset ``operator``.

    ``source`` says what was used: ``"<name>_<operator>"`` (a per-operator preset),
    ``"<name>"`` (the generic preset) or ``"registry:<name>"`` (no preset file).
    """
    candidates = [f"{name}_{operator}", name] if operator else [name]
    for candidate in candidates:
        if not candidate.endswith((".yaml", ".yml")) and preset_path("solver", candidate):
            return _instantiate(load_preset_config("solver", candidate)), candidate
    if preset_path("solver", name) is not None:  # an explicit YAML path
        return _instantiate(load_preset_config("solver", name)), name
    solvers = importlib.import_module("medldm.solvers")
    get_solver = getattr(solvers, "get_solver", None)
    if get_solver is None:
        known = ", ".join(available_presets("solver")) or "none"
        raise DataNotFoundError(
            f"no solver preset named {name!r} (known presets: {known}) and no solver registry",
            path=config_dir() / "solver",
            fix="add configs/solver/<name>.yaml or install medldm with its solvers",
        )
    return get_solver(name), f"registry:{name}"
