"""Physics and solver presets by name, for the benchmark: see :mod:`medldm.problems.configs`.

The benchmark takes *lists* of preset names (``physics=[mri_4x,mri_8x]``), so presets are
loaded with the shared config loader rather than as Hydra config groups. This module only
re-exports that loader under the names the benchmark has always used; it holds no logic.

Example
-------
>>> load_physics("inpaint_random").name
'inpainting (30% of pixels observed)'
"""

from __future__ import annotations

from medldm.problems.configs import (
    ENV_VAR,
    available_presets,
    config_dir,
    load_physics,
    load_preset_config,
    load_solver,
    preset_digest,
    preset_path,
    solver_for_operator,
)

__all__ = [
    "ENV_VAR",
    "available_presets",
    "config_dir",
    "load_physics",
    "load_preset_config",
    "load_solver",
    "preset_digest",
    "preset_path",
    "solver_for_operator",
]
