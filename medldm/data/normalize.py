"""Invertible intensity normalisation: physical units <-> the model range [0, 1].

A *normalizer* describes a rule (``PercentileNormalizer(0.5, 99.5)``: per-image
percentiles; ``FixedRangeNormalizer(-1000, 1000)``: a fixed CT window in HU). Fitting it to
an image gives a :class:`Normalization`: the two numbers ``low`` and ``high`` in the image's
own units (HU, arbitrary MR units, counts). ``forward`` maps ``low -> 0`` and
``high -> 1`` linearly; ``inverse`` maps model outputs back to physical units, so outputs can
be written in the input's units. ``to_dict``/``from_dict`` let a checkpoint or a sample
store the record as plain JSON.

Both work on NumPy arrays and torch tensors and keep floating dtypes (integers become
float32).

Example
-------
>>> import numpy as np
>>> volume = np.array([0.0, 100.0, 200.0, 300.0, 4000.0])
>>> norm = PercentileNormalizer(0.0, 75.0).fit(volume)
>>> (norm.low, norm.high)
(0.0, 300.0)
>>> norm.forward(volume).tolist()
[0.0, 0.3333333333333333, 0.6666666666666666, 1.0, 1.0]
>>> norm.inverse(norm.forward(volume, clip=False)).tolist()
[0.0, 100.0, 200.0, 300.0, 4000.0]
>>> Normalization.from_dict(norm.to_dict()) == norm
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from medldm.errors import InvalidInputError

ArrayT = TypeVar("ArrayT")


def _is_tensor(x: Any) -> bool:
    # Checked by module name so that NumPy-only callers never import torch.
    return type(x).__module__.startswith("torch")


def _as_float(x: Any) -> Any:
    """NumPy array or torch tensor in a floating dtype (integers and bools -> float32)."""
    if _is_tensor(x):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class Normalization:
    """A fitted linear intensity map ``y = (x - low) / (high - low)``.

    Parameters
    ----------
    low, high:
        Physical values (in ``unit``) that map to 0 and 1. ``high == low`` (a constant
        image) is allowed: the scale is then 1, so the image maps to 0 and back exactly.
    clip:
        Default for :meth:`forward`: clip the result to [0, 1]. Clipping loses values
        outside ``[low, high]``; :meth:`inverse` cannot bring them back.
    unit:
        Intensity unit of ``low``/``high`` (e.g. ``"HU"``, ``"arbitrary MR units"``).
    method:
        Short provenance text, e.g. ``"percentile 0.5-99.5"``.

    Example
    -------
    >>> import torch
    >>> norm = Normalization(low=-1000.0, high=1000.0, unit="HU")
    >>> norm.forward(torch.tensor([-1000.0, 0.0, 3000.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> norm.inverse(torch.tensor([0.25])).tolist()
    [-500.0]
    """

    low: float
    high: float
    clip: bool = True
    unit: str = "unknown"
    method: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "low", float(self.low))
        object.__setattr__(self, "high", float(self.high))
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise InvalidInputError(
                f"normalisation range [{self.low}, {self.high}] is not finite",
                fix="fit on an image with finite values or give finite low/high",
            )
        if self.high < self.low:
            raise InvalidInputError(
                f"normalisation range has high {self.high} < low {self.low}",
                fix="swap low and high",
            )

    @property
    def scale(self) -> float:
        """``high - low`` in physical units (1.0 when the range is empty)."""
        width = self.high - self.low
        return width if width > 0 else 1.0

    def forward(self, x: ArrayT, clip: bool | None = None) -> ArrayT:
        """Physical units -> model range: ``(x - low) / scale``, clipped to [0, 1] if asked.

        ``clip=None`` uses the record's :attr:`clip`.
        """
        y = (_as_float(x) - self.low) / self.scale
        if self.clip if clip is None else clip:
            y = y.clamp(0.0, 1.0) if _is_tensor(y) else np.clip(y, 0.0, 1.0)
        return y

    def inverse(self, y: ArrayT) -> ArrayT:
        """Model range -> physical units: ``y * scale + low`` (no clipping)."""
        return _as_float(y) * self.scale + self.low

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (for checkpoints and sidecars)."""
        return {
            "low": self.low,
            "high": self.high,
            "clip": self.clip,
            "unit": self.unit,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`; unknown or missing required keys raise."""
        unknown = set(data) - {"low", "high", "clip", "unit", "method"}
        if unknown or not {"low", "high"} <= set(data):
            raise InvalidInputError(
                f"not a normalisation record: keys {sorted(data)}",
                fix="pass a dict made by Normalization.to_dict()",
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class PercentileNormalizer:
    """Per-image percentile scaling: the ``low_pct`` percentile -> 0, ``high_pct`` -> 1.

    NaN values are ignored when fitting (real PSFs contain some). Used for MRI (per
    volume, e.g. 0.5-99.5) and microscopy (per image, e.g. 0.1-99.9).

    Example
    -------
    >>> import numpy as np
    >>> norm = PercentileNormalizer(0.0, 100.0).fit(np.array([2.0, np.nan, 6.0]), unit="counts")
    >>> (norm.low, norm.high, norm.unit)
    (2.0, 6.0, 'counts')
    """

    low_pct: float
    high_pct: float
    clip: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.low_pct < self.high_pct <= 100.0:
            raise InvalidInputError(
                f"percentiles ({self.low_pct}, {self.high_pct}) are not ordered in [0, 100]",
                fix="use 0 <= low_pct < high_pct <= 100, e.g. (0.5, 99.5)",
            )

    def fit(self, array: Any, unit: str = "unknown") -> Normalization:
        """Percentiles of ``array`` (NumPy or torch; NaNs ignored) as a Normalization."""
        values = _to_numpy(array).astype(np.float64, copy=False).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise InvalidInputError(
                "cannot fit a percentile normalisation: the image has no finite values",
                fix="check the input image (all NaN/inf or empty)",
            )
        low, high = np.percentile(values, [self.low_pct, self.high_pct])
        return Normalization(
            float(low),
            float(high),
            clip=self.clip,
            unit=unit,
            method=f"percentile {self.low_pct:g}-{self.high_pct:g}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Config form: ``{"method": "percentile", "low_pct", "high_pct", "clip"}``."""
        return {
            "method": "percentile",
            "low_pct": self.low_pct,
            "high_pct": self.high_pct,
            "clip": self.clip,
        }


@dataclass(frozen=True)
class FixedRangeNormalizer:
    """A fixed physical range -> [0, 1]: a CT window in HU, or 0..255 for 8-bit images.

    Example
    -------
    >>> import numpy as np
    >>> norm = FixedRangeNormalizer(0, 255).fit(np.zeros((2, 2), np.uint8))
    >>> norm.forward(np.array([0, 51, 255], np.uint8)).tolist()
    [0.0, 0.20000000298023224, 1.0]
    """

    low: float
    high: float
    clip: bool = True

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise InvalidInputError(
                f"fixed range [{self.low}, {self.high}] is empty or reversed",
                fix="give low < high, e.g. a CT window (-1000, 1000) HU",
            )

    def fit(self, array: Any = None, unit: str = "unknown") -> Normalization:
        """The fixed range as a Normalization (``array`` is ignored; accepted for symmetry)."""
        return Normalization(
            self.low,
            self.high,
            clip=self.clip,
            unit=unit,
            method=f"fixed range {self.low:g}-{self.high:g}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Config form: ``{"method": "fixed_range", "low", "high", "clip"}``."""
        return {"method": "fixed_range", "low": self.low, "high": self.high, "clip": self.clip}


Normalizer = PercentileNormalizer | FixedRangeNormalizer

#: Keys of a normaliser config that only document it (ignored when building one).
_DOC_KEYS = {"method", "scope", "description"}


def normalizer_from_dict(spec: Mapping[str, Any]) -> Normalizer:
    """Build a normaliser from a card's ``normalization`` block or a ``to_dict()`` result.

    Example
    -------
    >>> normalizer_from_dict({"method": "percentile", "low_pct": 0.5, "high_pct": 99.5})
    PercentileNormalizer(low_pct=0.5, high_pct=99.5, clip=True)
    """
    method = spec.get("method")
    kinds: dict[str, type] = {
        "percentile": PercentileNormalizer,
        "fixed_range": FixedRangeNormalizer,
    }
    if method not in kinds:
        raise InvalidInputError(
            f"unknown normalisation method {method!r}",
            fix=f"use one of {sorted(kinds)}",
        )
    args = {k: v for k, v in spec.items() if k not in _DOC_KEYS}
    try:
        return kinds[method](**args)
    except TypeError as err:
        raise InvalidInputError(
            f"bad arguments {sorted(args)} for normalisation method {method!r}: {err}",
            fix="percentile takes low_pct, high_pct, clip; fixed_range takes low, high, clip",
        ) from err


def fit_to_image(normalizer: Normalizer, image: Any, unit: str = "unknown") -> Normalization:
    """Fit ``normalizer`` to one image or volume the way every medldm app does: on its
    *signed* values when real (a CT in HU has negative air; ranking ``|HU|`` would call it
    bright), on its magnitude when complex (MRI). NumPy or torch.

    Example
    -------
    >>> ct = np.array([-1000.0, -500.0, 0.0, 40.0, 1000.0])
    >>> fit_to_image(PercentileNormalizer(0, 100), ct).low
    -1000.0
    >>> fit_to_image(PercentileNormalizer(0, 100), np.array([3 + 4j, 0j])).high
    5.0
    """
    values = _to_numpy(image)
    if np.iscomplexobj(values):
        values = np.abs(values)
    return normalizer.fit(values, unit=unit)
