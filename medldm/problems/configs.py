"""The one config loader: where ``configs/`` is, and presets turned into objects.

Every config group option is a small YAML file whose ``_target_`` names the class it
makes (``configs/physics/mri_4x.yaml``, ``configs/solver/latent_dds.yaml``, ...). Train,
the benchmark and the reconstruction app all load them here.

**Where the configs are.** ``$MEDLDM_CONFIG_DIR`` when set; else the tree installed with
the package (``medldm/configs``, from a wheel); else the ``configs/`` folder beside the
``medldm`` package (a source checkout or an editable install). :func:`config_dir` is the
only place that knows this.

**Options go through ``__init__``.** Options given on top of a preset (``n_steps=10``)
are merged into its YAML *before* the object is made, so the class's ``__init__`` checks
every value; a name that ``__init__`` does not take is refused with the valid names,
never set as an attribute afterwards. A value is cast to the type of the preset's value
(or of the ``__init__`` default) when that is an int or a float, so ``"10"`` or ``10.0``
from a command line gives ``10``.

Solvers may have per-operator presets, tuned on training cases:
``configs/solver/<solver>_<operator>.yaml`` (e.g. ``tv_mri_4x.yaml``) is used for that
operator when it exists, ``<solver>.yaml`` otherwise (:func:`solver_for_operator`); a
multislice operator (``mri_4x_multislice``) also tries its base operator's presets
(:func:`solver_preset_candidates` gives the order). A solver without a preset file comes
from the registry (:func:`medldm.solvers.get_solver`).

Example
-------
>>> (config_dir() / "bench" / "config.yaml").is_file()
True
>>> load_physics("inpaint_random").name
'inpainting (30% of pixels observed)'
>>> solver, source = solver_for_operator("latent_dds", "mri_4x", {"n_steps": "10"})
>>> source, solver.n_steps
('latent_dds_mri_4x', 10)
>>> load_solver("tv", {"n_step": 3})
Traceback (most recent call last):
...
medldm.errors.InvalidInputError: ...: solver preset 'tv' has no option 'n_step' (valid: ...
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from medldm.errors import DataNotFoundError, InvalidInputError, MedLDMError

#: Environment variable that points medldm at another configs folder.
ENV_VAR = "MEDLDM_CONFIG_DIR"

_PACKAGE = Path(__file__).resolve().parents[1]  # the installed medldm/ folder


def config_dir() -> Path:
    """The configs folder: ``$MEDLDM_CONFIG_DIR``, the installed one, or the checkout's.

    Raises :class:`~medldm.errors.DataNotFoundError` when none of them exists.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        candidates = [Path(env).expanduser()]
    else:
        # installed from a wheel: medldm/configs; source checkout: configs/ beside medldm/
        candidates = [_PACKAGE / "configs", _PACKAGE.parent / "configs"]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise DataNotFoundError(
        "the medldm configs folder is missing",
        path=candidates[0],
        fix=f"reinstall medldm (its wheel ships the configs) or set {ENV_VAR}",
    )


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

    Stored with every benchmark result row, so a rerun can tell rows made with another
    setting.
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


def target_class(config: Mapping[str, Any] | DictConfig) -> type:
    """The class (or factory function) that a config's ``_target_`` names."""
    from hydra.utils import get_object

    try:
        return get_object(str(config["_target_"]))
    except Exception as error:  # hydra wraps import errors in its own types
        raise InvalidInputError(
            f"cannot import _target_ {config['_target_']!r}: {error}",
            fix="point _target_ at a medldm class, e.g. medldm.solvers.tv.TotalVariation",
        ) from error


def option_defaults(target: Any) -> dict[str, Any] | None:
    """The keyword options ``target(...)`` takes, with their defaults
    (:data:`inspect.Parameter.empty` when required); None when it takes ``**kwargs``."""
    function = target.__init__ if inspect.isclass(target) else target
    parameters = list(inspect.signature(function).parameters.values())
    if inspect.isclass(target):
        parameters = parameters[1:]  # self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in parameters if p.kind in keyword}


def merge_options(
    config: Mapping[str, Any] | DictConfig,
    options: Mapping[str, Any] | None,
    *,
    what: str | None = None,
    source: Path | None = None,
) -> DictConfig:
    """``config`` with ``options`` merged in, after checking each name against ``__init__``.

    Raises :class:`~medldm.errors.InvalidInputError` naming an unknown option and the
    valid ones. Int and float values are cast to the type of the value they replace.
    """
    merged = OmegaConf.create(
        OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else config
    )
    if not options:
        return merged
    what = what or str(merged["_target_"]).rsplit(".", 1)[-1]
    target = target_class(merged)
    defaults = option_defaults(target)
    for key, value in dict(options).items():
        if defaults is not None and key not in defaults:
            raise InvalidInputError(
                f"{what} has no option {key!r} (valid: {', '.join(sorted(defaults))})",
                path=source,
                fix="use one of the valid names (see the class docstring)",
            )
        current = merged.get(key, (defaults or {}).get(key))
        merged[key] = _like(current, value, key, what)
    return merged


def _like(current: Any, value: Any, key: str, what: str) -> Any:
    """``value`` cast to ``current``'s type when that is int or float (not bool)."""
    if value is None or isinstance(current, bool) or not isinstance(current, int | float):
        return value
    kind = "an integer" if isinstance(current, int) else "a number"
    try:
        cast = type(current)(value)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(
            f"{what}: option {key!r} must be {kind}, got {value!r}",
            fix=f"give a value like {key}={current}",
        ) from error
    if isinstance(current, int) and isinstance(value, float) and cast != value:
        raise InvalidInputError(
            f"{what}: option {key!r} must be {kind}, got {value!r}",
            fix=f"give a whole number, e.g. {key}={current}",
        )
    return cast


def instantiate(
    config: Mapping[str, Any] | DictConfig,
    options: Mapping[str, Any] | None = None,
    *,
    what: str | None = None,
    source: Path | None = None,
) -> Any:
    """The object a config describes, with ``options`` merged in first (:func:`merge_options`).

    ``__init__`` sees every value, so its checks apply to options as to the YAML.
    """
    from hydra.utils import instantiate as hydra_instantiate

    merged = merge_options(config, options, what=what, source=source)
    what = what or str(merged["_target_"]).rsplit(".", 1)[-1]
    try:
        return hydra_instantiate(merged, _convert_="all")
    except Exception as error:  # hydra wraps __init__'s own error: give that one back
        cause = error.__cause__ or error
        if isinstance(cause, MedLDMError):
            raise cause from None
        raise InvalidInputError(
            f"{what}: cannot make {merged['_target_']}: {cause}",
            path=source,
            fix="check the preset's values against the class docstring",
        ) from error


def load_physics(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The physics factory of a preset (has ``build(image_shape, generator, device)``)."""
    factory = instantiate(
        load_preset_config("physics", name),
        options,
        what=f"physics preset {name!r}",
        source=preset_path("physics", name),
    )
    if not hasattr(factory, "build"):
        raise InvalidInputError(
            f"physics preset {name!r} made a {type(factory).__name__} without build()",
            path=preset_path("physics", name),
            fix="point _target_ at a factory in medldm.physics.factory",
        )
    return factory


def load_solver(name: str, options: Mapping[str, Any] | None = None) -> Any:
    """The solver of a preset file, else of the registry ``medldm.solvers.get_solver``."""
    return solver_for_operator(name, None, options)[0]


def solver_for_operator(
    name: str,
    operator: str | None = None,
    options: Mapping[str, Any] | None = None,
    domain: str | None = None,
) -> tuple[Any, str]:
    """``(solver, source)`` for solver preset ``name`` applied to physics preset ``operator``
    on data of tuning ``domain``.

    ``source`` says what was used, the first file that exists of
    ``"<name>_<operator>_<domain>"`` (tuned for that data, e.g. ``tv_mri_4x_native``: the
    brain MRI at the scanner's resolution), ``"<name>_<operator>"`` (tuned per operator on
    the default data), ``"<name>"`` (the generic preset), else ``"registry:<name>"`` (no
    preset file). ``options`` are merged into the preset before the solver is made.

    >>> solver_for_operator("tv", "mri_4x")[1]
    'tv_mri_4x'
    >>> solver_for_operator("tv", "ct_sparse_30", domain="native")[1]  # none tuned for it
    'tv_ct_sparse_30'
    """
    candidates = solver_preset_candidates(name, operator, domain)
    for candidate in candidates:
        if not candidate.endswith((".yaml", ".yml")) and preset_path("solver", candidate):
            return _solver_preset(candidate, options), candidate
    if preset_path("solver", name) is not None:  # an explicit YAML path
        return _solver_preset(name, options), name
    from medldm.solvers.registry import SOLVERS

    if name not in SOLVERS:
        known = sorted({*available_presets("solver"), *SOLVERS})
        raise InvalidInputError(
            f"no solver preset or registered solver named {name!r}",
            path=config_dir() / "solver",
            fix=f"use one of {known} or add configs/solver/{name}.yaml",
        )
    solver_class = SOLVERS[name]
    config = {"_target_": f"{solver_class.__module__}.{solver_class.__qualname__}"}
    return instantiate(config, options, what=f"solver {name!r}"), f"registry:{name}"


#: The suffix of an operator that is another one acquired slice by slice (a volume as a
#: stack of 2D k-spaces, ``configs/physics/mri_4x_multislice.yaml``).
MULTISLICE_SUFFIX = "_multislice"
#: The suffix of an MRI operator sampled on a 2D variable-density pattern over both in-plane
#: k-space axes instead of phase-encode lines (``mri_multicoil_8x_variable_density.yaml``).
VARIABLE_DENSITY_SUFFIX = "_variable_density"
#: Acquisition variants of an operator: each falls back to its base operator's presets.
ACQUISITION_SUFFIXES = (MULTISLICE_SUFFIX, VARIABLE_DENSITY_SUFFIX)


def base_operator(operator: str) -> str:
    """The operator whose presets an acquisition variant (multislice, variable density)
    shares (itself otherwise).

    >>> base_operator("mri_4x_multislice"), base_operator("mri_multicoil_8x_variable_density")
    ('mri_4x', 'mri_multicoil_8x')
    >>> base_operator("mri_4x")
    'mri_4x'
    """
    for suffix in ACQUISITION_SUFFIXES:
        operator = operator.removesuffix(suffix)
    return operator


def solver_preset_candidates(
    name: str, operator: str | None = None, domain: str | None = None
) -> list[str]:
    """The solver preset names tried for ``name`` on ``operator`` and ``domain``, most
    specific first (see :func:`solver_for_operator`). An acquisition variant (multislice,
    variable density) falls back to its base operator's presets, the data's domain before
    the acquisition: a preset tuned
    for the domain (``tv_mri_4x_native``) wins over one tuned for the multislice
    acquisition on the default data (``tv_mri_4x_multislice``).

    >>> solver_preset_candidates("tv", "mri_4x_multislice", "native")
    ['tv_mri_4x_multislice_native', 'tv_mri_4x_native', 'tv_mri_4x_multislice', 'tv_mri_4x', 'tv']
    """
    if not operator:
        return [name]
    operators = list(dict.fromkeys([operator, base_operator(operator)]))
    specific = [f"{name}_{op}_{domain}" for op in operators] if domain else []
    return [*specific, *(f"{name}_{op}" for op in operators), name]


def _solver_preset(name: str, options: Mapping[str, Any] | None) -> Any:
    return instantiate(
        load_preset_config("solver", name),
        options,
        what=f"solver preset {name!r}",
        source=preset_path("solver", name),
    )
