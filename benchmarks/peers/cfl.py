"""BART's file format: ``name.hdr`` (the dimensions as text) and ``name.cfl`` (complex64
values, first dimension fastest, i.e. Fortran order). BART's own Python helper (``cfl.py``,
in BART's source tree) is not installed by the Debian package; this is the same few lines.

Example
-------
>>> import numpy as np, tempfile, os
>>> folder = tempfile.mkdtemp()
>>> data = np.arange(6).reshape(2, 3) * (1 + 1j)
>>> write_cfl(os.path.join(folder, "x"), data)
>>> back = read_cfl(os.path.join(folder, "x"))
>>> back.shape, bool(np.array_equal(back, data))
((2, 3), True)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_cfl(name: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (any shape, at most 16 dimensions) as ``name.hdr`` + ``name.cfl``."""
    array = np.asarray(array, dtype=np.complex64)
    Path(f"{name}.hdr").write_text("# Dimensions\n" + " ".join(map(str, array.shape)) + "\n")
    array.ravel(order="F").tofile(f"{name}.cfl")


def read_cfl(name: str | Path) -> np.ndarray:
    """Read ``name.hdr`` + ``name.cfl``; trailing singleton dimensions are dropped."""
    lines = Path(f"{name}.hdr").read_text().splitlines()
    dims = [int(n) for n in lines[lines.index("# Dimensions") + 1].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return np.fromfile(f"{name}.cfl", dtype=np.complex64).reshape(dims, order="F")
