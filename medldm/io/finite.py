"""Checks shared by the image readers: non-finite values and the size limit.

* :func:`check_finite` applies a NaN/Inf policy (``"raise"``, ``"zero"`` or ``"ignore"``)
  to freshly loaded pixels.
* :func:`check_size` refuses an image whose declared size is above a byte limit *before*
  its pixels are read, so a corrupt or hostile header cannot make us allocate terabytes.
  The limit is ``max_bytes`` when given, else the ``MEDLDM_MAX_IMAGE_BYTES`` environment
  variable, else 8 GiB (see :mod:`medldm.io.limits`).

Example
-------
>>> import numpy as np
>>> fixed, warnings = check_finite(np.array([1.0, np.nan]), "a.nii", "zero")
>>> fixed.tolist(), warnings
([1.0, 0.0], ['a.nii: 1 non-finite voxel(s) (NaN/Inf) replaced by 0'])
>>> check_size((4, 4), np.uint8, "a.nii", max_bytes=100)
16
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from medldm.errors import InvalidInputError
from medldm.io.limits import ENV_VAR as MAX_BYTES_ENV
from medldm.io.limits import max_image_bytes

NAN_POLICIES = ("raise", "zero", "ignore")


def check_nan_policy(nan_policy: str) -> str:
    """Return ``nan_policy`` if it is one of :data:`NAN_POLICIES`, else raise."""
    if nan_policy not in NAN_POLICIES:
        raise InvalidInputError(
            f"unknown nan_policy {nan_policy!r}", fix=f"use one of {', '.join(NAN_POLICIES)}"
        )
    return nan_policy


def check_finite(
    array: np.ndarray, path: str | Path, nan_policy: str = "raise"
) -> tuple[np.ndarray, list[str]]:
    """Apply a NaN/Inf policy to ``array`` loaded from ``path``.

    Parameters
    ----------
    array:
        Pixel values (any dtype; integer and boolean arrays are always finite).
    path:
        The source file, named in the error and in the warning.
    nan_policy:
        ``"raise"``: raise :class:`InvalidInputError` giving the number of NaN/Inf voxels;
        ``"zero"``: replace NaN, +Inf and -Inf by 0 (in place when the array is writeable)
        and return a warning; ``"ignore"``: return the array unchanged.

    Returns
    -------
    The (possibly fixed) array and a list of warning strings (empty when nothing changed).

    Example
    -------
    >>> import numpy as np
    >>> check_finite(np.arange(3), "x.tif")[1]
    []
    """
    check_nan_policy(nan_policy)
    if nan_policy == "ignore" or array.dtype.kind not in "fc":
        return array, []
    bad = ~np.isfinite(array)
    count = int(np.count_nonzero(bad))
    if count == 0:
        return array, []
    if nan_policy == "raise":
        raise InvalidInputError(
            f"{count} of {array.size} voxels are NaN or Inf",
            path=path,
            fix="pass nan_policy='zero' (replace them by 0) or 'ignore' (keep them)",
        )
    if not array.flags.writeable:
        array = array.copy()
    array[bad] = 0
    return array, [f"{path}: {count} non-finite voxel(s) (NaN/Inf) replaced by 0"]


def check_size(
    shape: Sequence[int],
    dtype: DTypeLike,
    path: str | Path,
    max_bytes: int | None = None,
    out_itemsize: int | None = None,
) -> int:
    """Refuse an image whose declared size is above the limit; return that size in bytes.

    The size is ``prod(shape) * max(itemsize of dtype, out_itemsize)`` so a file stored as
    uint8 but returned as float32 counts four bytes a voxel. Call it before reading pixels.
    """
    itemsize = max(np.dtype(dtype).itemsize, out_itemsize or 0)
    n_bytes = int(np.prod([int(s) for s in shape], dtype=object)) * itemsize
    limit = max_image_bytes(max_bytes)
    if n_bytes > limit:
        raise InvalidInputError(
            f"header declares shape {tuple(int(s) for s in shape)} of {np.dtype(dtype)} "
            f"({n_bytes / 1024**3:.3g} GiB in memory), above the limit of "
            f"{limit / 1024**3:.3g} GiB; refusing to read it",
            path=path,
            fix=f"check the file is not corrupt, or raise the limit with max_bytes= or "
            f"the {MAX_BYTES_ENV} environment variable",
        )
    return n_bytes
