"""Where real data lives: ``MEDLDM_DATA_DIR`` or ``../shared/data``.

Example
-------
>>> root = find_data_root(required=False)  # None on a machine without the data
"""

from __future__ import annotations

import os
from pathlib import Path

from medldm.errors import DataNotFoundError

ENV_VAR = "MEDLDM_DATA_DIR"


def _default_candidates() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    return [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data"]


def find_data_root(required: bool = True) -> Path | None:
    """Return the data root folder.

    ``MEDLDM_DATA_DIR`` wins when set (and must exist); otherwise ``../shared/data``
    relative to the working directory or to the repository. With ``required=False`` a
    missing root gives ``None`` instead of an error.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if path.is_dir():
            return path.resolve()
        if required:
            raise DataNotFoundError(
                f"{ENV_VAR} points to a folder that does not exist",
                path=path,
                fix=f"set {ENV_VAR} to the folder holding ixi_t1/, mednist/, microscopy/",
            )
        return None
    for candidate in _default_candidates():
        if candidate.is_dir():
            return candidate.resolve()
    if required:
        raise DataNotFoundError(
            "no data root found (looked for ../shared/data)",
            fix=f"set {ENV_VAR}=/path/to/data (the folder holding ixi_t1/, mednist/, ...)",
        )
    return None
