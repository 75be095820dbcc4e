"""Refuse images whose declared size is too large, before any pixel is allocated.

The limit is ``max_bytes`` when given, else the ``MEDLDM_MAX_IMAGE_BYTES`` environment
variable, else 8 GiB.

Example
-------
>>> check_declared_size(1_000, "a.dcm", max_bytes=10_000)
>>> check_declared_size(10**12, "big.nii", max_bytes=10_000)
Traceback (most recent call last):
...
medldm.errors.InvalidInputError: big.nii: declared image size 1000000.0 MB exceeds ...
"""

from __future__ import annotations

import os
from pathlib import Path

from medldm.errors import InvalidInputError

ENV_VAR = "MEDLDM_MAX_IMAGE_BYTES"
DEFAULT_MAX_BYTES = 8 * 1024**3


def max_image_bytes(max_bytes: int | None = None) -> int:
    """The size limit in bytes in force for this call."""
    if max_bytes is not None:
        return int(max_bytes)
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return int(float(env))
        except ValueError as exc:
            raise InvalidInputError(
                f"{ENV_VAR}={env!r} is not a number", fix="set it to a size in bytes"
            ) from exc
    return DEFAULT_MAX_BYTES


def check_declared_size(n_bytes: int, path: str | Path, *, max_bytes: int | None = None) -> None:
    """Raise :class:`InvalidInputError` if ``n_bytes`` exceeds the limit in force."""
    limit = max_image_bytes(max_bytes)
    if n_bytes > limit:
        raise InvalidInputError(
            f"declared image size {n_bytes / 1e6:.1f} MB exceeds the limit of {limit / 1e6:.2f} MB",
            path=path,
            fix=f"if the file is genuine, raise the limit with max_bytes= or {ENV_VAR}",
        )
