"""One benchmark case: a ground-truth image in the model range [0, 1], with its provenance.

A dataset becomes a sequence of :class:`Case` records (see :mod:`medldm.bench.cases`);
an input that cannot be read becomes a :class:`CaseFailure`, so a batch run records it
and goes on.

Example
-------
>>> import numpy as np
>>> from medldm.data.normalize import Normalization
>>> case = Case("demo", "img0", np.zeros((4, 4), np.float32), Normalization(0.0, 255.0))
>>> case.shape, case.spatial_dims
((4, 4), 2)
>>> case.in_physical_units(np.ones((1,), np.float32))  # back to the input's units
array([255.], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medldm.data.normalize import Normalization


@dataclass(frozen=True)
class Case:
    """A ground-truth image ready for the benchmark.

    Attributes
    ----------
    dataset:
        Name of the dataset (a card id and split such as ``"ixi_t1_test"``, or a folder name).
    case_id:
        Identifier unique within the dataset, e.g. ``"IXI603/slice058"`` or
        ``"scans/a.npz[3]"``.
    image:
        float32 array, 2D ``(rows, columns)`` or 3D ``(depth, rows, columns)``, in [0, 1].
        2D slices of volumes are in display orientation, and a 3D volume is the stack of its
        axial slices in that orientation, inferior first (see
        :mod:`medldm.bench.cases.from_images`).
    normalization:
        The fitted intensity map; ``normalization.inverse(image)`` gives the input's units.
    source:
        The file (or folder) the case was read from.
    metadata:
        Anything else worth keeping (slice index, class name; for a volume its foreground
        ``extent``, the slices the benchmark scores one by one).
    """

    dataset: str
    case_id: str
    image: np.ndarray
    normalization: Normalization
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape of the image (2 or 3 numbers)."""
        return tuple(int(n) for n in self.image.shape)

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes."""
        return self.image.ndim

    def in_physical_units(self, array: Any) -> Any:
        """Map an array in the model range back to the input's units."""
        return self.normalization.inverse(array)


@dataclass(frozen=True)
class CaseFailure:
    """An input that could not become a case: which one, and why.

    Attributes
    ----------
    dataset, case_id:
        As for :class:`Case` (the case id of an unreadable file is its relative path).
    error:
        ``"<ExceptionType>: <message>"``; medldm errors name the file and the fix.
    """

    dataset: str
    case_id: str
    error: str
