"""Sampling-mask generators, kept apart from the operators that apply a mask.

A generator is configured once (``RandomLineMask(acceleration=4)``) and then called with a
shape and a ``torch.Generator``: ``mask = make_mask(shape, generator=g)``. The same seed gives
the same mask. Every mask is a ``torch.bool`` tensor of exactly ``shape`` where ``True``
means *observed* (a measured pixel, a sampled k-space location); the operators in
:mod:`medldm.physics.inpainting` and :mod:`medldm.physics.mri` take it as their ``mask``.
A mask that observes nothing raises :class:`~medldm.errors.InvalidInputError`.

Random numbers are drawn on the generator's device (CPU when no generator is given) so a
seed gives the same mask on every machine; ``device=`` moves the result afterwards.

=====================  ===================================================================
generator              what it samples
=====================  ===================================================================
BoxMask                everything except one box (inpainting a missing block), 2D/3D
RandomPixelMask        an exact fraction of pixels/voxels, uniformly at random
BrushStrokeMask        everything except free-form brush strokes (2D; 3D extruded,
                       per slice or as 3D tubes)
RandomLineMask         fastMRI ``RandomMaskFunc``: random phase-encode lines (last axis)
EquispacedLineMask     fastMRI ``EquispacedMaskFractionFunc``: equispaced lines
VariableDensityMask2D  3D Cartesian MRI: a Gaussian variable-density pattern over the
                       two phase-encode axes (last two) with a calibration box
=====================  ===================================================================

Example
-------
>>> import torch
>>> make_mask = EquispacedLineMask(acceleration=4)
>>> mask = make_mask((64, 64), generator=torch.Generator().manual_seed(0))
>>> mask.shape, mask.dtype
(torch.Size([64, 64]), torch.bool)
>>> int(mask[0].sum())  # sampled lines (columns) out of 64: about 64 / 4
15
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from medldm.errors import InvalidInputError

#: fastMRI pairs its accelerations with centre fractions 4x -> 0.08 and 8x -> 0.04, i.e.
#: ``center_fraction = 0.32 / acceleration``; the line masks use that when none is given.
FASTMRI_CENTER_FRACTION_TIMES_ACCELERATION = 0.32


# --- shared helpers -------------------------------------------------------------------
def check_mask_observes_something(mask: torch.Tensor, what: str = "mask") -> torch.Tensor:
    """Return ``mask`` if it is finite and observes at least one location, else raise."""
    if mask.numel() == 0:
        raise InvalidInputError(f"{what} is empty (shape {tuple(mask.shape)})")
    inexact = mask.is_floating_point() or mask.is_complex()
    if inexact and not bool(torch.isfinite(mask).all()):
        raise InvalidInputError(f"{what} contains NaN or Inf", fix="pass a finite mask")
    if not bool((mask != 0).any()):
        raise InvalidInputError(
            f"{what} of shape {tuple(mask.shape)} observes nothing (all zeros)",
            fix="sample a larger fraction, a smaller box or fewer strokes",
        )
    return mask


def _as_shape(shape: Sequence[int] | torch.Size, min_dims: int, max_dims: int | None) -> tuple:
    shape = tuple(int(s) for s in shape)
    if len(shape) < min_dims or (max_dims is not None and len(shape) > max_dims):
        allowed = f"{min_dims}" if max_dims == min_dims else f"{min_dims} to {max_dims or 'n'}"
        raise InvalidInputError(f"mask shape {shape} must have {allowed} axes")
    if any(s < 1 for s in shape):
        raise InvalidInputError(f"mask shape {shape} has an axis of size < 1")
    return shape


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def _check_fraction(name: str, value: float, *, allow_zero: bool = False) -> float:
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        bound = "[0, 1]" if allow_zero else "(0, 1]"
        raise InvalidInputError(f"{name} must be in {bound}, got {value}")
    return value


def _per_axis(value: float | Sequence[float], n_axes: int, name: str) -> tuple[float, ...]:
    values = (value,) * n_axes if isinstance(value, int | float) else tuple(value)
    if len(values) != n_axes:
        raise InvalidInputError(f"{name} has {len(values)} entries for {n_axes} axes")
    return tuple(float(v) for v in values)


class MaskGenerator:
    """Base class: ``generator_object(shape, generator=None, device=None) -> bool tensor``.

    Subclasses implement :meth:`sample` (draw on the generator's device) and set the number
    of axes they accept.
    """

    min_dims: int = 1
    max_dims: int | None = None

    def __call__(
        self,
        shape: Sequence[int] | torch.Size,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        shape = _as_shape(shape, self.min_dims, self.max_dims)
        mask = self.sample(shape, generator)
        check_mask_observes_something(mask, f"{type(self).__name__} mask")
        return mask if device is None else mask.to(device)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


# --- inpainting masks -----------------------------------------------------------------
class BoxMask(MaskGenerator):
    """Observe everything except one axis-aligned box (a missing block to inpaint).

    Parameters
    ----------
    box_fraction:
        Side of the box as a fraction of each image side (one value or one per axis), e.g.
        ``0.25`` hides a box a quarter of the width and height (1/16 of the area in 2D).
    size:
        Side of the box in pixels (one value or one per axis); instead of ``box_fraction``.
    center:
        Box centre in pixel indices (one per axis); ``None`` puts it at the image centre
        (index ``n // 2``); ``"random"`` draws it uniformly so the box lies inside the image.

    Example
    -------
    >>> mask = BoxMask(size=2)((4, 4))
    >>> mask.int().tolist()
    [[1, 1, 1, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 1, 1, 1]]
    """

    min_dims, max_dims = 1, None

    def __init__(
        self,
        box_fraction: float | Sequence[float] | None = None,
        *,
        size: int | Sequence[int] | None = None,
        center: Sequence[int] | str | None = None,
    ):
        if (box_fraction is None) == (size is None):
            raise InvalidInputError("give exactly one of box_fraction and size")
        if isinstance(center, str) and center != "random":
            raise InvalidInputError(f"center must be None, 'random' or indices, got {center!r}")
        self.box_fraction = box_fraction
        self.size = size
        self.center = center

    def box_sides(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Side of the box in pixels for an image of ``shape`` (clipped to the image)."""
        if self.size is not None:
            sides = _per_axis(self.size, len(shape), "size")
        else:
            fractions = _per_axis(self.box_fraction, len(shape), "box_fraction")
            for fraction in fractions:
                _check_fraction("box_fraction", fraction)
            sides = tuple(f * n for f, n in zip(fractions, shape, strict=True))
        return tuple(min(max(round(s), 0), n) for s, n in zip(sides, shape, strict=True))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        sides = self.box_sides(shape)
        starts = self._box_starts(shape, sides, generator)
        mask = torch.ones(shape, dtype=torch.bool, device=_draw_device(generator))
        box = tuple(slice(s, s + side) for s, side in zip(starts, sides, strict=True))
        mask[box] = False
        return mask

    def _box_starts(self, shape, sides, generator) -> tuple[int, ...]:
        if self.center == "random":
            device = _draw_device(generator)
            return tuple(
                int(torch.randint(0, n - side + 1, (1,), generator=generator, device=device))
                for n, side in zip(shape, sides, strict=True)
            )
        center = [n // 2 for n in shape] if self.center is None else list(self.center)
        if len(center) != len(shape):
            raise InvalidInputError(f"center {tuple(center)} has to give one index per axis")
        # The box is centred at index `c` as `n // 2` centres a box of side n (numpy style),
        # then clipped so it stays inside the image.
        return tuple(
            min(max(int(c) - side // 2, 0), n - side)
            for c, side, n in zip(center, sides, shape, strict=True)
        )


class RandomPixelMask(MaskGenerator):
    """Observe exactly ``round(fraction_observed * N)`` of the ``N`` locations, uniformly.

    Works for any shape (2D image, 3D volume, or with leading batch axes: the fraction is
    then exact over the whole tensor).

    Example
    -------
    >>> import torch
    >>> mask = RandomPixelMask(0.25)((8, 8), generator=torch.Generator().manual_seed(1))
    >>> int(mask.sum())
    16
    """

    min_dims, max_dims = 1, None

    def __init__(self, fraction_observed: float):
        self.fraction_observed = _check_fraction("fraction_observed", fraction_observed)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        total = math.prod(shape)
        n_observed = round(self.fraction_observed * total)
        device = _draw_device(generator)
        order = torch.randperm(total, generator=generator, device=device)
        mask = torch.zeros(total, dtype=torch.bool, device=device)
        mask[order[:n_observed]] = True
        return mask.reshape(shape)


class BrushStrokeMask(MaskGenerator):
    """Observe everything except free-form brush strokes (irregular holes, as in DeepFill).

    Each stroke is a random walk of ``2..max_vertices`` vertices; every segment is painted
    with a round brush of diameter ``width`` pixels (all pixels within ``width / 2`` of the
    segment). Steps have a random direction and a length up to ``max_step_fraction`` of the
    smallest image side.

    3D shapes ``(D, H, W)`` follow ``volume_mode``:

    * ``"extrude"``: one 2D stroke pattern in ``(H, W)`` repeated over all ``D`` slices
      (a region missing through the whole slab);
    * ``"per_slice"``: independent 2D strokes in every slice;
    * ``"tubes"``: strokes are 3D random walks painted with a ball (tubes in the volume).

    Parameters
    ----------
    n_strokes:
        Number of strokes.
    width:
        Brush diameter in pixels; default ``max(2, 0.06 * smallest side)``.
    max_vertices:
        Most vertices per stroke (at least 2).
    max_step_fraction:
        Longest step as a fraction of the smallest side.

    Example
    -------
    >>> import torch
    >>> mask = BrushStrokeMask(n_strokes=3)((32, 32), generator=torch.Generator().manual_seed(0))
    >>> 0.0 < 1 - mask.float().mean().item() < 1.0  # some, not all, pixels are missing
    True
    """

    min_dims, max_dims = 2, 3
    volume_modes = ("extrude", "per_slice", "tubes")

    def __init__(
        self,
        n_strokes: int = 4,
        width: float | None = None,
        *,
        max_vertices: int = 6,
        max_step_fraction: float = 0.25,
        volume_mode: str = "extrude",
    ):
        if n_strokes < 0:
            raise InvalidInputError(f"n_strokes must be >= 0, got {n_strokes}")
        if width is not None and not width > 0:
            raise InvalidInputError(f"width must be > 0 pixels, got {width}")
        if max_vertices < 2:
            raise InvalidInputError(f"max_vertices must be >= 2, got {max_vertices}")
        if volume_mode not in self.volume_modes:
            raise InvalidInputError(
                f"unknown volume_mode {volume_mode!r}", fix=f"use one of {self.volume_modes}"
            )
        self.n_strokes = int(n_strokes)
        self.width = width
        self.max_vertices = int(max_vertices)
        self.max_step_fraction = _check_fraction("max_step_fraction", max_step_fraction)
        self.volume_mode = volume_mode

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        if len(shape) == 2 or self.volume_mode == "tubes":
            return ~self._strokes(shape, generator)
        n_slices, plane = shape[0], shape[1:]
        if self.volume_mode == "extrude":
            return ~self._strokes(plane, generator).expand(shape).clone()
        slices = [self._strokes(plane, generator) for _ in range(n_slices)]
        return ~torch.stack(slices)

    def _strokes(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        """Bool tensor of ``shape``, True on the painted strokes."""
        device = _draw_device(generator)
        sizes = torch.tensor(shape, dtype=torch.float64, device=device)
        width = self.width if self.width is not None else max(2.0, 0.06 * min(shape))
        max_step = self.max_step_fraction * min(shape)
        grid = torch.stack(
            torch.meshgrid(
                *[torch.arange(n, dtype=torch.float64, device=device) for n in shape],
                indexing="ij",
            ),
            dim=-1,
        ).reshape(-1, len(shape))
        painted = torch.zeros(grid.shape[0], dtype=torch.bool, device=device)
        for _ in range(self.n_strokes):
            vertices = self._random_walk(sizes, max_step, generator)
            for start, end in itertools.pairwise(vertices):
                painted |= _distance_to_segment(grid, start, end) <= width / 2
        return painted.reshape(shape)

    def _random_walk(
        self, sizes: torch.Tensor, max_step: float, generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        device = sizes.device
        n_vertices = int(
            torch.randint(2, self.max_vertices + 1, (1,), generator=generator, device=device)
        )
        point = torch.rand(len(sizes), generator=generator, dtype=torch.float64, device=device)
        vertices = [point * (sizes - 1)]
        for _ in range(n_vertices - 1):
            direction = torch.randn(
                len(sizes), generator=generator, dtype=torch.float64, device=device
            )
            direction = direction / direction.norm().clamp_min(1e-12)
            fraction = torch.rand(1, generator=generator, dtype=torch.float64, device=device)
            length = max_step * float(fraction)
            step = vertices[-1] + length * direction
            vertices.append(torch.minimum(torch.clamp(step, min=0), sizes - 1))
        return vertices


def _distance_to_segment(points: torch.Tensor, start: torch.Tensor, end: torch.Tensor):
    """Euclidean distance from each row of ``points`` (N, k) to the segment start-end."""
    direction = end - start
    length_sq = float((direction * direction).sum())
    if length_sq == 0:
        return (points - start).norm(dim=-1)
    along = ((points - start) @ direction / length_sq).clamp(0, 1)
    closest = start + along[:, None] * direction
    return (points - closest).norm(dim=-1)


# --- MRI masks ------------------------------------------------------------------------
class _LineMask(MaskGenerator):
    """fastMRI's ``MaskFunc`` logic: whole phase-encode lines along the last axis (W).

    ``n_center = round(W * center_fraction)`` lines in the middle are always sampled (the
    autocalibration region); the rest are chosen so that about ``W / acceleration`` lines
    are sampled in all. The 1D line pattern is repeated over every other axis (readout H,
    and slices D for a 3D shape).
    """

    min_dims, max_dims = 1, None

    def __init__(self, acceleration: float, center_fraction: float | None = None):
        if not acceleration >= 1:
            raise InvalidInputError(f"acceleration must be >= 1, got {acceleration}")
        if center_fraction is None:
            center_fraction = FASTMRI_CENTER_FRACTION_TIMES_ACCELERATION / acceleration
        self.acceleration = float(acceleration)
        self.center_fraction = _check_fraction("center_fraction", center_fraction)

    def n_center_lines(self, n_lines: int) -> int:
        """Number of fully sampled centre lines (fastMRI's ``num_low_frequencies``)."""
        return round(n_lines * self.center_fraction)

    def center_lines(self, n_lines: int) -> torch.Tensor:
        """Bool (n_lines,) marking the centre block, placed as fastMRI does."""
        n_center = self.n_center_lines(n_lines)
        lines = torch.zeros(n_lines, dtype=torch.bool)
        start = (n_lines - n_center + 1) // 2
        lines[start : start + n_center] = True
        return lines

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        n_lines = shape[-1]
        device = _draw_device(generator)
        outer = self.outer_lines(n_lines, self.n_center_lines(n_lines), generator)
        lines = self.center_lines(n_lines).to(device) | outer.to(device)
        return lines.expand(shape).clone()

    def outer_lines(
        self, n_lines: int, n_center: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        raise NotImplementedError


class RandomLineMask(_LineMask):
    """Random phase-encode lines with a fully sampled centre (fastMRI ``RandomMaskFunc``).

    Each line outside the centre is sampled independently with probability
    ``(W / acceleration - n_center) / (W - n_center)``, so the *expected* number of lines is
    ``W / acceleration``; the exact count varies with the seed, as in fastMRI.

    Parameters
    ----------
    acceleration:
        Undersampling factor, e.g. 4 or 8.
    center_fraction:
        Fraction of lines in the fully sampled centre; default ``0.32 / acceleration``
        (fastMRI's 0.08 at 4x, 0.04 at 8x).

    Example
    -------
    >>> import torch
    >>> make_mask = RandomLineMask(acceleration=8)
    >>> mask = make_mask((32, 100), generator=torch.Generator().manual_seed(3))
    >>> bool(mask[:, 48:52].all())  # round(100 * 0.04) = 4 centre lines always sampled
    True
    """

    def outer_lines(self, n_lines, n_center, generator):
        if n_lines == n_center:
            return torch.zeros(n_lines, dtype=torch.bool)
        probability = (n_lines / self.acceleration - n_center) / (n_lines - n_center)
        draws = torch.rand(n_lines, generator=generator, device=_draw_device(generator))
        return draws < probability


class EquispacedLineMask(_LineMask):
    """Equispaced phase-encode lines with a fully sampled centre (fastMRI
    ``EquispacedMaskFractionFunc``).

    The spacing is adjusted for the centre lines,
    ``a' = acceleration (n_center - W) / (n_center acceleration - W)``, so the total is
    about ``W / acceleration``; the offset of the first line is random in ``[0, round(a'))``.

    Parameters
    ----------
    acceleration:
        Undersampling factor, e.g. 4 or 8.
    center_fraction:
        Fraction of lines in the fully sampled centre; default ``0.32 / acceleration``.

    Example
    -------
    >>> import torch
    >>> mask = EquispacedLineMask(4, 0.08)((1, 320), generator=torch.Generator().manual_seed(0))
    >>> int(mask.sum())  # 320 / 4
    80
    """

    def outer_lines(self, n_lines, n_center, generator):
        lines = torch.zeros(n_lines, dtype=torch.bool)
        denominator = n_center * self.acceleration - n_lines
        if denominator >= 0:  # the centre alone already reaches the acceleration
            return lines
        adjusted = self.acceleration * (n_center - n_lines) / denominator
        offset = int(
            torch.randint(
                0,
                max(round(adjusted), 1),
                (1,),
                generator=generator,
                device=_draw_device(generator),
            )
        )
        positions = torch.arange(offset, n_lines - 1, adjusted, dtype=torch.float64)
        # numpy.around rounds half to even, as torch.round does: same lines as fastMRI.
        lines[torch.round(positions).long()] = True
        return lines


class VariableDensityMask2D(MaskGenerator):
    """Gaussian variable-density sampling of the two phase-encode axes, for 3D Cartesian MRI.

    The phase-encode plane is the last two axes ``(ky, kz)``; the pattern is repeated over
    any leading axis (the fully sampled readout). A centred calibration box of side
    ``round(center_fraction * n)`` per axis is always sampled; the remaining
    ``round(n_ky n_kz / acceleration) - n_calibration`` points are drawn without replacement
    with probability ``exp(-r^2 / (2 density_width^2))``, ``r`` the distance from the
    centre in coordinates scaled to [-1, 1] per axis. The acceleration is therefore exact.

    Parameters
    ----------
    acceleration:
        Undersampling factor of the phase-encode plane.
    center_fraction:
        Side of the calibration box as a fraction of each phase-encode axis.
    density_width:
        Standard deviation of the Gaussian density (1 = the half-width of the plane).

    Example
    -------
    >>> import torch
    >>> make_mask = VariableDensityMask2D(acceleration=4, center_fraction=0.125)
    >>> mask = make_mask((8, 32, 32), generator=torch.Generator().manual_seed(0))
    >>> int(mask[0].sum()), bool(mask[:, 14:18, 14:18].all()), bool((mask == mask[0]).all())
    (256, True, True)
    """

    min_dims, max_dims = 2, None

    def __init__(
        self, acceleration: float, center_fraction: float = 0.1, density_width: float = 0.4
    ):
        if not acceleration >= 1:
            raise InvalidInputError(f"acceleration must be >= 1, got {acceleration}")
        if not density_width > 0:
            raise InvalidInputError(f"density_width must be > 0, got {density_width}")
        self.acceleration = float(acceleration)
        self.center_fraction = _check_fraction("center_fraction", center_fraction, allow_zero=True)
        self.density_width = float(density_width)

    def calibration_box(self, plane: tuple[int, int]) -> tuple[slice, slice]:
        """Slices of the fully sampled calibration box in the ``(ky, kz)`` plane."""
        sides = [round(self.center_fraction * n) for n in plane]
        return tuple(
            slice((n - side + 1) // 2, (n - side + 1) // 2 + side)
            for n, side in zip(plane, sides, strict=True)
        )

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        plane = shape[-2:]
        device = _draw_device(generator)
        sampled = torch.zeros(plane, dtype=torch.bool, device=device)
        sampled[self.calibration_box(plane)] = True
        n_target = round(math.prod(plane) / self.acceleration)
        n_extra = max(n_target - int(sampled.sum()), 0)
        if n_extra > 0:
            weights = self._density(plane, device).masked_fill(sampled, 0).flatten()
            chosen = torch.multinomial(weights, n_extra, replacement=False, generator=generator)
            sampled.view(-1)[chosen] = True
        return sampled.expand(shape).clone()

    def _density(self, plane: tuple[int, int], device: torch.device) -> torch.Tensor:
        axes = [
            (torch.arange(n, dtype=torch.float64, device=device) - n // 2) / max(n / 2, 1)
            for n in plane
        ]
        ky, kz = torch.meshgrid(*axes, indexing="ij")
        density = torch.exp(-(ky**2 + kz**2) / (2 * self.density_width**2))
        # A floor keeps every location possible, so any acceleration >= 1 can be reached.
        return density.clamp_min(1e-6)
