"""From the input's voxel grid to the prior's pixel grid and back, saying what was done.

The prior was trained on slices of a fixed size and pixel spacing (``grid`` in a preset:
``size`` in pixels, ``spacing_mm``). For an input slice stack (``(S, rows, cols)``, rows =
y towards A, cols = x towards R, the orientation the prior saw in training):

* spacing differs from the prior's by more than 5% (or the prior has no spacing and the
  image is not of its size): the in-plane axes are **resampled** (linear) to the prior's
  spacing — and resampled back afterwards; the report says so, with both spacings;
* the resampled slice fits inside the training size: it is **zero-padded** to it
  (centred; cut back afterwards);
* it is larger: the convolutional prior runs **on the input's own grid** (padded only to
  the size multiple the networks need).

Example
-------
>>> import numpy as np

from medldm.data.slices import crop_or_pad_in_plane
>>> plan = GridPlan.make((5, 90, 110), (2.0, 2.0), size=(128, 128), spacing_mm=2.0)
>>> plan.resampled, plan.working_shape, plan.describe()[:40]
(False, (128, 128), 'the 90x110 slices at 2x2 mm were not res')
>>> stack = np.random.rand(5, 90, 110).astype(np.float32)
>>> bool(np.allclose(plan.from_working(plan.to_working(stack)), stack))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medldm.data.slices import crop_or_pad_in_plane


@dataclass(frozen=True)
class GridPlan:
    """How an input slice stack is mapped to the prior's grid (see the module)."""

    input_shape: tuple[int, int]
    input_spacing: tuple[float, float]
    resampled_shape: tuple[int, int]
    working_shape: tuple[int, int]
    prior_spacing: float | None

    @classmethod
    def make(
        cls,
        stack_shape: Sequence[int],
        spacing: Sequence[float],
        *,
        size: Sequence[int] | None,
        spacing_mm: float | None,
        tolerance: float = 0.05,
    ) -> GridPlan:
        """Plan for a stack ``(S, rows, cols)`` with in-plane ``spacing`` (rows, cols) in mm."""
        rows, cols = (int(s) for s in stack_shape[-2:])
        spacing = (float(spacing[0]), float(spacing[1]))
        resampled = (rows, cols)
        if spacing_mm:
            zoom = [s / float(spacing_mm) for s in spacing]
            if any(abs(z - 1) > tolerance for z in zoom):
                resampled = (max(1, round(rows * zoom[0])), max(1, round(cols * zoom[1])))
        elif size is not None and (rows, cols) != tuple(size):
            scale = min(size[0] / rows, size[1] / cols)
            resampled = (max(1, round(rows * scale)), max(1, round(cols * scale)))
        working = resampled
        if size is not None and resampled[0] <= size[0] and resampled[1] <= size[1]:
            working = (int(size[0]), int(size[1]))
        return cls((rows, cols), spacing, resampled, working, spacing_mm)

    @property
    def resampled(self) -> bool:
        return self.resampled_shape != self.input_shape

    @property
    def padded(self) -> bool:
        return self.working_shape != self.resampled_shape

    def describe(self) -> str:
        """One sentence for logs and the report."""
        rows, cols = self.input_shape
        parts = [
            f"the {rows}x{cols} slices at {self.input_spacing[0]:.3g}x"
            f"{self.input_spacing[1]:.3g} mm"
        ]
        if self.resampled:
            target = f"{self.prior_spacing:.3g} mm" if self.prior_spacing else "the prior's size"
            parts.append(
                f"were RESAMPLED (linear) to {self.resampled_shape[0]}x"
                f"{self.resampled_shape[1]} ({target}) for the prior and back afterwards"
            )
        else:
            parts.append("were not resampled")
        if self.padded:
            parts.append(
                f"zero-padded to the prior's training grid "
                f"{self.working_shape[0]}x{self.working_shape[1]}"
            )
        else:
            parts.append(
                f"the convolutional prior ran on the image's own "
                f"{self.working_shape[0]}x{self.working_shape[1]} grid"
            )
        return " ".join(parts[:2]) + "; " + parts[2]

    def _resample(self, stack: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        from scipy.ndimage import zoom

        if tuple(stack.shape[-2:]) == shape:
            return stack
        factors = [1.0] * (stack.ndim - 2) + [
            shape[0] / stack.shape[-2],
            shape[1] / stack.shape[-1],
        ]
        out = zoom(stack, factors, order=1, mode="nearest", grid_mode=True)
        return out[..., : shape[0], : shape[1]]

    def to_working(self, stack: np.ndarray) -> np.ndarray:
        """Input stack -> the working grid (resampled, then zero-padded, centred)."""
        stack = self._resample(np.asarray(stack, np.float32), self.resampled_shape)
        return crop_or_pad_in_plane(stack, self.working_shape)

    def from_working(self, stack: np.ndarray) -> np.ndarray:
        """Working grid -> the input's grid (padding cut, resampled back)."""
        stack = crop_or_pad_in_plane(np.asarray(stack, np.float32), self.resampled_shape)
        return self._resample(stack, self.input_shape)
