"""The measured MRI operator seen from the prior's working grid (:class:`PriorGridMRI`):
what the LDM solver of a measured run solves with (:mod:`medldm.recon.kspace_methods`), so
that its data term is the measured k-space itself.

The working grid's zero padding is cut, the image Fourier-resampled to the k-space's
matrix (k-space cropped or zero-padded, exact for band-limited images) and turned back
into the k-space's layout (rows reversed); the adjoint does the reverse, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from medldm.physics.base import LinearPhysics
from medldm.physics.mri import fftnc, ifftnc
from medldm.problems.grid import GridPlan


def _centred_resize(k: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop or zero-pad the last two axes of centred k-space to ``shape``, keeping the DC
    sample at index ``n // 2`` (so a crop and the pad back are each other's adjoint)."""
    for axis, target in zip((-2, -1), shape, strict=True):
        n, target = k.shape[axis], int(target)
        if n > target:
            k = k.narrow(axis, n // 2 - target // 2, target)
        elif n < target:
            before = target // 2 - n // 2
            pad = [0, 0, 0, 0]
            index = 0 if axis == -1 else 2
            pad[index], pad[index + 1] = before, target - n - before
            k = torch.nn.functional.pad(k, pad)
    return k


def _fourier_resample(x: torch.Tensor, shape: Sequence[int], gain: float) -> torch.Tensor:
    """``gain * F^H resize(F x)`` over the last two axes (complex result)."""
    return gain * ifftnc(_centred_resize(fftnc(x, 2), shape), 2)


def _crop_or_pad(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Centre-crop or zero-pad the last two axes (the offsets of
    :func:`medldm.data.slices.crop_or_pad_in_plane`, as the grid plan uses)."""
    for axis, target in zip((-2, -1), shape, strict=True):
        n, target = x.shape[axis], int(target)
        if n > target:
            x = x.narrow(axis, (n - target) // 2, target)
        elif n < target:
            before = (target - n) // 2
            pad = [0, 0, 0, 0]
            index = 0 if axis == -1 else 2
            pad[index], pad[index + 1] = before, target - n - before
            x = torch.nn.functional.pad(x, pad)
    return x


class PriorGridMRI(LinearPhysics):
    """A measured MRI operator seen from the prior's working grid.

    ``A' x = A(P(x))`` with ``P``: cut the working grid's zero padding, Fourier-resample
    to the k-space's matrix (``c F^H R F``, ``R`` a centred k-space crop/zero-pad,
    ``c = sqrt(N_native / N_resampled)`` so that intensities are kept) and turn the model
    view back into the k-space's layout (rows reversed). ``A'^H = P^H A^H`` exactly, so
    solvers see an ordinary linear operator whose measurement is the measured k-space.

    Parameters
    ----------
    physics:
        The operator on the k-space's own grid (single- or multi-coil MRI).
    plan:
        The grid plan (``input_shape`` = the k-space matrix in the model view).

    Example
    -------
    >>> import torch
    >>> from medldm.physics.mri import SingleCoilMRI
    >>> plan = GridPlan.make((1, 20, 16), (1.0, 1.0), size=(16, 16), spacing_mm=2.0)
    >>> op = PriorGridMRI(SingleCoilMRI(torch.ones(20, 16, dtype=torch.bool)), plan)
    >>> x = torch.randn(1, 1, 16, 16, dtype=torch.complex128)
    >>> y = torch.randn(1, 1, 20, 16, dtype=torch.complex128)
    >>> op.adjointness_error(x, y) < 1e-12
    True
    """

    def __init__(self, physics: LinearPhysics, plan: GridPlan):
        super().__init__(physics.spatial_dims, physics.noise_model)
        self.physics = physics
        self.working_shape = tuple(plan.working_shape)
        self.resampled_shape = tuple(plan.resampled_shape)
        self.native_shape = tuple(plan.input_shape)
        self.gain = math.sqrt(math.prod(self.native_shape) / math.prod(self.resampled_shape))

    @property
    def mask(self) -> torch.Tensor:
        return self.physics.mask

    def to_native(self, x: torch.Tensor) -> torch.Tensor:
        """Working grid -> the k-space's image grid and layout (complex)."""
        x = _crop_or_pad(x, self.resampled_shape)
        if self.resampled_shape != self.native_shape:
            x = _fourier_resample(x, self.native_shape, self.gain)
        return torch.flip(x, dims=(-2,))

    def from_native(self, image: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`to_native`."""
        image = torch.flip(image, dims=(-2,))
        if self.resampled_shape != self.native_shape:
            image = _fourier_resample(image, self.resampled_shape, self.gain)
        return _crop_or_pad(image, self.working_shape)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self.physics.A(self.to_native(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.from_native(self.physics.A_adjoint(y))
