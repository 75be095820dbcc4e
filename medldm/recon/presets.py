"""Reconstruction presets: ``configs/preset/<name>.yaml``.

A preset names a physics preset (``configs/physics``), an LDM solver and a classical
baseline (``configs/solver``; the per-operator file ``<solver>_<physics>.yaml`` wins), the
prior, how many central slices to reconstruct, the prior's grid, how the input's intensities
are scaled to the prior's range (``intensity``) and the example input.

``intensity``: ``"prior"`` (default) uses the prior's own training normalisation (e.g. the
per-volume 0.5-99.5 percentiles of brain_t1_2d); ``"percentile"`` maps the input's own 0.5th
and 99.5th percentiles to 0 and 1 — for priors whose training rule does not apply to the
input's units (ct_2d learned 8-bit windowed MedNIST grey levels, a DICOM CT is in HU).

``volume``: a slab of more than one slice is one problem (``mri_brain_3d``: 3D k-space;
``mri_brain_4x``: its multislice physics, each slice its own 2D k-space, the slices coupled
by the solver along z); one slice, or ``volume: false``, is solved slice by slice with the
base operator (:meth:`Preset.per_slice`).

``native``: the variant for inputs at the scanner's resolution, ``{prior, max_spacing_mm,
domain[, volume]}``. An input whose in-plane spacing is at most ``max_spacing_mm`` (and measured
k-space whose file states no spacing, taken to be at the scanner's resolution) is
reconstructed with that prior on its
own grid (no resampling), with the solver presets tuned for that data
(``<solver>_<physics>_<domain>.yaml``); a coarser input keeps the preset's prior and grid.
Naming a prior or a grid yourself turns the choice off (:meth:`Preset.for_resolution`).

Example
-------
>>> preset = load_preset("mri_brain_4x")
>>> preset.physics, preset.solver, preset.prior
('mri_4x_multislice', 'latent_dds', 'brain_t1_lossless_2d')
>>> preset.with_overrides(slices=4, solver_options={"n_steps": 10}).slices
4
>>> sorted(available_recon_presets())[:2]
['ct_sparse_30', 'inpaint_box']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from medldm.errors import InvalidInputError
from medldm.problems.configs import (
    MULTISLICE_SUFFIX,
    config_dir,
    load_physics,
    solver_for_operator,
)

#: How a preset scales the input's intensities to the prior's range (see the module text).
INTENSITY_RULES = ("prior", "percentile")


def preset_folder() -> Path:
    return config_dir() / "preset"


def available_recon_presets() -> list[str]:
    """Names of the presets in ``configs/preset``."""
    return sorted(p.stem for p in preset_folder().glob("*.yaml"))


@dataclass(frozen=True)
class Preset:
    """One reconstruction setup (fields as in the YAML files)."""

    name: str
    physics: str
    solver: str = "latent_dds"
    baseline: str = "tv"
    prior: Any = None
    plane: str = "axial"
    slices: Any = 8
    volume: bool = False
    grid: dict[str, Any] = field(default_factory=dict)
    example: str = "mni152_t1_2mm"
    intensity: str = "prior"
    solver_options: dict[str, Any] = field(default_factory=dict)
    native: dict[str, Any] | None = field(default_factory=dict)
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.intensity not in INTENSITY_RULES:
            raise InvalidInputError(
                f"preset {self.name!r}: unknown intensity rule {self.intensity!r}",
                fix=f"use one of {list(INTENSITY_RULES)}",
            )
        missing = sorted({"prior", "max_spacing_mm"} - set(self.native)) if self.native else []
        if missing:
            raise InvalidInputError(
                f"preset {self.name!r}: its native variant lacks {missing}",
                fix="give native: {prior: <name>, max_spacing_mm: <mm>, domain: native}",
            )

    @property
    def grid_size(self) -> tuple[int, int] | None:
        size = self.grid.get("size")
        return None if size is None else (int(size[0]), int(size[1]))

    @property
    def grid_spacing(self) -> float | None:
        spacing = self.grid.get("spacing_mm")
        return None if spacing is None else float(spacing)

    def with_overrides(self, **changes: Any) -> Preset:
        """A copy with fields replaced; ``solver_options`` and ``grid`` are merged."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown preset option(s) {unknown}", fix=f"use any of {sorted(known)}"
            )
        changes = {k: v for k, v in changes.items() if v is not None}
        if "solver_options" in changes:
            changes["solver_options"] = {**self.solver_options, **dict(changes["solver_options"])}
        if "grid" in changes:
            changes["grid"] = {**self.grid, **dict(changes["grid"])}
        if {"prior", "grid"} & set(changes):  # the user chose: no choice by resolution
            changes.setdefault("native", {})
        if self.plane != "axial" or changes.get("plane", "axial") != "axial":
            raise InvalidInputError(
                "only axial slices are supported by the shipped 2D priors",
                fix="use plane=axial (the input is reoriented to RAS+ first)",
            )
        return dataclasses.replace(self, **changes)

    def for_resolution(self, spacing_mm: float | None) -> Preset:
        """The preset for an input of in-plane ``spacing_mm`` (the finer of its two
        spacings; ``None`` for measured k-space whose file states no spacing, taken to be
        at the scanner's resolution): the ``native`` variant when the input is at least that
        fine, else this preset.

        >>> preset = load_preset("mri_brain_4x")
        >>> preset.for_resolution(2.0).prior, preset.for_resolution(2.0).grid_size
        ('brain_t1_lossless_2d', (128, 128))
        >>> native = preset.for_resolution(0.9)
        >>> native.prior, native.grid_size, native.domain
        ('brain_native_2d', None, 'native')
        """
        if not self.native:
            return self
        if spacing_mm is not None and float(spacing_mm) > float(self.native["max_spacing_mm"]):
            return self
        return dataclasses.replace(
            self,
            prior=self.native["prior"],
            grid={"size": None, "spacing_mm": None},
            domain=self.native.get("domain", "native"),
            volume=bool(self.native.get("volume", self.volume)),
            native={},
        )

    def per_slice(self) -> Preset:
        """This preset for a slab solved slice by slice (one slice, or a preset without
        ``volume``): a multislice operator is then its base operator, whose presets and
        std calibrations were made on single slices.

        >>> load_preset("mri_brain_4x").per_slice().physics
        'mri_4x'
        """
        return dataclasses.replace(self, physics=self.physics.removesuffix(MULTISLICE_SUFFIX))

    def build_physics(self) -> Any:
        return load_physics(self.physics)

    def build_solver(self) -> Any:
        """The LDM solver, ``solver_options`` merged into its preset before it is made."""
        return self.solver_and_source()[0]

    def solver_and_source(self) -> tuple[Any, str]:
        """``(LDM solver, the preset file it came from)``; see :func:`solver_for_operator`."""
        return solver_for_operator(self.solver, self.physics, self.solver_options, self.domain)

    def build_baseline(self) -> Any:
        solver, _ = solver_for_operator(self.baseline, self.physics, domain=self.domain)
        return solver


def load_preset(name: str) -> Preset:
    """The preset ``configs/preset/<name>.yaml`` (or a YAML path)."""
    path = Path(name)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = preset_folder() / f"{name}.yaml"
    if not path.is_file():
        raise InvalidInputError(
            f"unknown reconstruction preset {name!r}",
            fix=f"use one of {available_recon_presets()} or a YAML file path",
        )
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    return preset_from_dict(data, source=path)  # type: ignore[arg-type]


def resolve_preset(preset: str | Preset, **overrides: Any) -> Preset:
    """``preset`` (a name or a YAML path is loaded, a :class:`Preset` is taken as it is)
    with ``overrides`` (:meth:`Preset.with_overrides`): what a reconstruction's stages
    start from.

    >>> resolve_preset("mri_brain_4x", slices=2).slices
    2
    """
    preset = preset if isinstance(preset, Preset) else load_preset(preset)
    return preset.with_overrides(**overrides)


def preset_from_dict(data: dict[str, Any], source: Path | str = "<config>") -> Preset:
    """A Preset from a plain mapping (a Hydra ``preset`` group node)."""
    try:
        return Preset(**{k: v for k, v in data.items()})
    except TypeError as error:
        raise InvalidInputError(
            f"bad reconstruction preset: {error}",
            path=source,
            fix="see configs/preset/mri_brain_4x.yaml for the fields",
        ) from error
