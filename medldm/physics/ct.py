"""Parallel-beam CT: a sparse system matrix with an exact transpose, FBP, transmission noise.

Geometry (the conventions of ``skimage.transform.radon``/``iradon``)
--------------------------------------------------------------------
* Pixel ``(row r, column c)`` of an ``H x W`` image sits at its index; the rotation centre
  is pixel ``(H // 2, W // 2)``; pixels are unit squares (lengths are in pixels).
* The view at angle ``theta`` (degrees) integrates along the lines
  ``(c - W//2) cos(theta) - (r - H//2) sin(theta) = s``; detector bin ``j`` is at
  ``s = j - n_detectors // 2 - centre_offset`` (unit spacing). At 0 degrees bin ``j`` sums
  column ``j`` (with ``centre_offset = 0``).
* ``centre_offset`` (bins, may be fractional; default 0) is where the rotation axis
  projects onto the detector, relative to bin ``n_detectors // 2``: measured data whose
  axis sits at detector position ``c`` (0-based, pixel centres at integers) has
  ``centre_offset = c - n_detectors // 2``. It shifts the detector, not the image, so the
  projector, its transpose and FBP stay exact for any offset.
* Sinograms are ``(..., n_detectors, n_views)``: one column per view, like skimage, so
  ``sinogram[0, 0].numpy()`` compares directly with ``radon(image, angles_deg)``.
* ``circle=True`` (default) assumes the object lies inside the inscribed circle and uses
  ``n_detectors = min(H, W)``; ``circle=False`` covers the whole square with
  ``n_detectors = ceil(sqrt(2) max(H, W))``.

The projector is Joseph's method (Joseph 1982): each ray steps one pixel at a time along
the image axis closest to its direction and interpolates linearly between the two pixels it
passes between, weighted by the step length ``1 / max(|cos|, |sin|)``. It is stored as a
sparse CSR matrix ``(n_detectors * n_views, H * W)``, built once per geometry and kept in
an LRU cache (:data:`SYSTEM_MATRIX_CACHE`), so ``A_adjoint`` is its exact transpose.

Example
-------
>>> import torch
>>> ct = ParallelBeamCT(32, sparse_view_angles(16))
>>> x = torch.zeros(1, 1, 32, 32); x[..., 12:20, 12:20] = 1
>>> y = ct.A(x)
>>> y.shape  # (B, C, n_detectors, n_views)
torch.Size([1, 1, 32, 16])
>>> round(float(y[0, 0, :, 0].sum()), 3)  # every view sees the total mass
64.0
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import scipy.sparse
import torch

from medldm.errors import InvalidInputError
from medldm.physics.base import FILTERED_BACKPROJECTION, LinearPhysics
from medldm.physics.noise import NoiseModel

#: Largest number of geometries whose system matrices are kept in memory.
SYSTEM_MATRIX_CACHE_SIZE = 8
#: ``(kind, *geometry key) -> matrices`` (CPU float32 CSR tensors), least recent first;
#: kind is ``"projector"`` (matrix, transpose).
SYSTEM_MATRIX_CACHE: OrderedDict[tuple, object] = OrderedDict()
_CACHE_LOCK = threading.Lock()

FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", None)


# --- geometries -----------------------------------------------------------------------
def sparse_view_angles(n_views: int, arc: float = 180.0, start: float = 0.0) -> np.ndarray:
    """``n_views`` angles in degrees evenly spread over ``[start, start + arc)``.

    >>> sparse_view_angles(4).tolist()
    [0.0, 45.0, 90.0, 135.0]
    """
    if n_views < 1:
        raise InvalidInputError(f"n_views must be >= 1, got {n_views}")
    if not arc > 0:
        raise InvalidInputError(f"arc must be > 0 degrees, got {arc}")
    return start + np.linspace(0.0, float(arc), int(n_views), endpoint=False)


def limited_angle(arc_deg: float, n_views: int | None = None, start: float = 0.0) -> np.ndarray:
    """Angles over a limited arc ``[start, start + arc_deg)``, by default one per degree.

    A 90-degree arc leaves a 90-degree missing wedge in Fourier space.

    >>> limited_angle(90).shape, limited_angle(90, 30)[:3].tolist()
    ((90,), [0.0, 3.0, 6.0])
    """
    if not 0 < arc_deg <= 180:
        raise InvalidInputError(f"arc_deg must be in (0, 180], got {arc_deg}")
    n_views = max(1, round(arc_deg)) if n_views is None else n_views
    return sparse_view_angles(n_views, arc=arc_deg, start=start)


# --- system matrix --------------------------------------------------------------------
def default_n_detectors(height: int, width: int, circle: bool) -> int:
    """skimage's sinogram height: ``min(H, W)`` inside the circle, else the diagonal."""
    return min(height, width) if circle else math.ceil(math.sqrt(2) * max(height, width))


def joseph_system_matrix(
    height: int,
    width: int,
    angles_deg: Sequence[float],
    n_detectors: int,
    centre_offset: float = 0.0,
) -> scipy.sparse.csr_matrix:
    """The Joseph projector as a SciPy CSR matrix ``(n_detectors * n_views, H * W)``.

    Row ``j * n_views + v`` is the ray of detector bin ``j`` at view ``v`` (so a flat
    result reshapes to ``(n_detectors, n_views)``); column ``r * W + c`` is pixel
    ``(r, c)``. Weights are in pixel lengths. ``centre_offset``: see the module docstring.
    """
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    n_views = len(angles)
    offsets = np.arange(n_detectors, dtype=np.float64) - n_detectors // 2 - centre_offset
    centre_r, centre_c = height // 2, width // 2
    rows, cols, values = [], [], []
    for view, theta in enumerate(angles):
        cos_t, sin_t = math.cos(theta), math.sin(theta)
        if abs(sin_t) >= abs(cos_t):
            # Mostly vertical ray: one sample per column, interpolate between two rows.
            steps = np.arange(width, dtype=np.float64)
            crossing = centre_r + ((steps - centre_c) * cos_t - offsets[:, None]) / sin_t
            step_length = 1.0 / abs(sin_t)
            major, n_minor = np.broadcast_to(steps, crossing.shape), height
        else:
            # Mostly horizontal ray: one sample per row, interpolate between two columns.
            steps = np.arange(height, dtype=np.float64)
            crossing = centre_c + (offsets[:, None] + (steps - centre_r) * sin_t) / cos_t
            step_length = 1.0 / abs(cos_t)
            major, n_minor = np.broadcast_to(steps, crossing.shape), width
        lower = np.floor(crossing)
        upper_weight = crossing - lower
        ray = np.broadcast_to(np.arange(n_detectors)[:, None] * n_views + view, crossing.shape)
        for minor, weight in ((lower, 1 - upper_weight), (lower + 1, upper_weight)):
            inside = (minor >= 0) & (minor < n_minor) & (weight > 0)
            minor_index = minor[inside].astype(np.int64)
            major_index = major[inside].astype(np.int64)
            if abs(sin_t) >= abs(cos_t):
                pixel = minor_index * width + major_index
            else:
                pixel = major_index * width + minor_index
            rows.append(ray[inside])
            cols.append(pixel)
            values.append(weight[inside] * step_length)
    matrix = scipy.sparse.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_detectors * n_views, height * width),
    )
    return matrix.tocsr()


def pixel_driven_backprojection(
    sinogram: torch.Tensor,
    angles_deg: Sequence[float],
    image_shape: tuple[int, int],
    centre_offset: float = 0.0,
) -> torch.Tensor:
    """The back-projection of FBP, as ``iradon`` does it: ``(..., n_detectors, n_views)`` to
    ``(..., H, W)``, computed view by view without a matrix.

    Each pixel takes, from each view, the sinogram value at its detector position
    ``s = (c - W//2) cos - (r - H//2) sin`` by linear interpolation between the two nearest
    bins (zero beyond the detector), and the views are summed (unscaled). This is not
    ``P^T``: pixel-driven interpolation is the standard discretisation of the
    back-projection integral in FBP, while ``P^T`` is the exact adjoint of the ray-driven
    projector (they differ by a few percent at high frequencies, which the ramp filter
    amplifies). ``centre_offset``: see the module docstring. Memory is the image and one
    view's interpolation indices (a 512 x 512 image from 181 views would need a 1 GB
    sparse matrix).

    Example
    -------
    >>> import torch
    >>> sinogram = torch.zeros(1, 1, 9, 2); sinogram[0, 0, 4] = 1  # the central bin, 2 views
    >>> image = pixel_driven_backprojection(sinogram, [0.0, 90.0], (9, 9))
    >>> image[0, 0, 4].tolist()  # the central row: the 90-degree view's line
    [1.0, 1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    """
    height, width = image_shape
    n_detectors, n_views = sinogram.shape[-2:]
    leading = sinogram.shape[:-2]
    # (views, bins, batch) with one zero bin before and two after the detector, so that
    # clamped positions read zeros; the batch is the contiguous axis of each gathered row
    data = sinogram.reshape(-1, n_detectors, n_views)
    data = torch.nn.functional.pad(data, (0, 0, 1, 2)).permute(2, 1, 0).contiguous()
    slope = data[:, 1:] - data[:, :-1]
    device = sinogram.device
    rows = (torch.arange(height, dtype=torch.float64, device=device) - height // 2)[:, None]
    cols = (torch.arange(width, dtype=torch.float64, device=device) - width // 2)[None, :]
    image = torch.zeros(height * width, data.shape[2], dtype=sinogram.dtype, device=device)
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    shift = n_detectors // 2 + centre_offset + 1  # + 1: the zero bin before the detector
    for view, theta in enumerate(angles):
        position = (cols * math.cos(theta) + (shift - rows * math.sin(theta))).reshape(-1)
        position = position.clamp_(0, n_detectors + 1)
        lower = position.long()  # floor, as positions are not negative
        weight = (position - lower).to(sinogram.dtype)[:, None]
        image += torch.index_select(data[view], 0, lower)
        image.addcmul_(torch.index_select(slope[view], 0, lower), weight)
    return image.T.reshape(*leading, height, width)


def _to_torch_csr(matrix: scipy.sparse.csr_matrix) -> torch.Tensor:
    matrix.sort_indices()
    with warnings.catch_warnings():
        # torch flags sparse CSR as beta on first use; the operations used here are stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data.astype(np.float32)),
            size=matrix.shape,
            check_invariants=False,
        )


def geometry_key(
    height: int,
    width: int,
    angles_deg: Sequence[float],
    n_detectors: int,
    centre_offset: float = 0.0,
) -> tuple:
    """Hashable key of a geometry (angles rounded to 1e-9 degree, offset to 1e-9 bin)."""
    angles = tuple(round(float(a), 9) for a in angles_deg)
    return (int(height), int(width), angles, int(n_detectors), round(float(centre_offset), 9))


def _cached(kind: str, key: tuple, build):
    """Look ``(kind, key)`` up in the LRU cache, building and storing it when missing."""
    full_key = (kind, *key)
    with _CACHE_LOCK:
        if full_key in SYSTEM_MATRIX_CACHE:
            SYSTEM_MATRIX_CACHE.move_to_end(full_key)
            return SYSTEM_MATRIX_CACHE[full_key]
    value = build()
    with _CACHE_LOCK:
        value = SYSTEM_MATRIX_CACHE.setdefault(full_key, value)
        SYSTEM_MATRIX_CACHE.move_to_end(full_key)
        while len(SYSTEM_MATRIX_CACHE) > SYSTEM_MATRIX_CACHE_SIZE:
            SYSTEM_MATRIX_CACHE.popitem(last=False)
    return value


def cached_system_matrix(
    height: int,
    width: int,
    angles_deg: Sequence[float],
    n_detectors: int,
    centre_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(matrix, transpose)`` for a geometry, built once and kept in the LRU cache."""
    geometry = (height, width, angles_deg, n_detectors, centre_offset)

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        matrix = joseph_system_matrix(*geometry)
        return _to_torch_csr(matrix), _to_torch_csr(matrix.T.tocsr())

    return _cached("projector", geometry_key(*geometry), build)


# --- FBP filter -----------------------------------------------------------------------
def fbp_filter(size: int, filter: str | None = "ramp") -> torch.Tensor:
    """Frequency response ``(size,)`` of the FBP filter, as ``skimage.transform.iradon``.

    The ramp is the DFT of the band-limited spatial ramp kernel (Kak & Slaney 1988, ch. 3,
    eq. 61), which avoids the DC offset of a sampled ``|f|``; ``shepp-logan``, ``cosine``,
    ``hamming`` and ``hann`` multiply it by a window; ``None`` is no filtering.
    """
    if filter not in FBP_FILTERS:
        raise InvalidInputError(f"unknown FBP filter {filter!r}", fix=f"use one of {FBP_FILTERS}")
    n = np.concatenate(
        (np.arange(1, size / 2 + 1, 2, dtype=int), np.arange(size / 2 - 1, 0, -2, dtype=int))
    )
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1 / (np.pi * n) ** 2
    response = 2 * np.real(np.fft.fft(kernel))
    if filter == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        response[1:] *= np.sin(omega) / omega
    elif filter == "cosine":
        response *= np.fft.fftshift(np.sin(np.linspace(0, np.pi, size, endpoint=False)))
    elif filter == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif filter == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    elif filter is None:
        response[:] = 1
    return torch.from_numpy(response)


def apply_matrix(matrix: torch.Tensor, data: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """``matrix @ data`` over the last two axes of ``data`` (``in_shape``), batched over all
    leading axes; returns ``(..., *out_shape)``. A matrix on another device or dtype is
    copied for the call (move operators with ``.to()`` to avoid that)."""
    leading = data.shape[:-2]
    columns = data.reshape(-1, in_shape[0] * in_shape[1]).T
    if matrix.dtype != data.dtype or matrix.device != data.device:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            matrix = matrix.to(device=data.device, dtype=data.dtype)
    result = (matrix @ columns.contiguous()).T
    return result.reshape(*leading, *out_shape)


def fbp_detector_count(n_detectors: int, circle: bool) -> int:
    """Detector bins after FBP's zero extension: the image diagonal with ``circle=True``."""
    return math.ceil(math.sqrt(2) * n_detectors) if circle else n_detectors


def median_angular_step_rad(angles_deg: Sequence[float]) -> float:
    """Median spacing of the (sorted, modulo 180 degrees) view angles, in radians."""
    if len(angles_deg) == 1:
        return math.pi
    angles = np.sort(np.mod(angles_deg, 180.0))
    steps = np.diff(angles)
    return float(np.deg2rad(np.median(steps[steps > 0]))) if (steps > 0).any() else math.pi


def inscribed_circle(image_shape: tuple[int, int]) -> torch.Tensor:
    """Bool ``(H, W)``: pixels inside the inscribed circle (radius ``min(H, W) // 2``)."""
    height, width = image_shape
    rows = torch.arange(height)[:, None] - height // 2
    cols = torch.arange(width)[None, :] - width // 2
    return rows**2 + cols**2 <= (min(height, width) // 2) ** 2


def filtered_backprojection(
    sinogram: torch.Tensor,
    angles_deg: Sequence[float],
    image_shape: tuple[int, int],
    *,
    centre_offset: float = 0.0,
    circle: bool = True,
    filter: str | None = "ramp",
) -> torch.Tensor:
    """Filtered back-projection of ``(..., n_detectors, n_views)`` onto ``image_shape``
    (see :meth:`ParallelBeamCT.fbp` for the steps), without building the projector.

    The image need not cover the whole detector: with ``circle=False`` a small image of
    the region around the rotation axis is reconstructed from the whole (filtered)
    detector.
    """
    n_det = sinogram.shape[-2]
    n_extended = fbp_detector_count(n_det, circle)
    # keeps the rotation axis at n // 2 + centre_offset of the extended detector
    before = n_extended // 2 - n_det // 2
    extended = torch.nn.functional.pad(sinogram, (0, 0, before, n_extended - n_det - before))
    padded_size = max(64, 2 ** math.ceil(math.log2(2 * n_extended)))
    response = fbp_filter(padded_size, filter).to(sinogram.device, sinogram.dtype)
    spectrum = torch.fft.fft(extended, n=padded_size, dim=-2) * response[:, None]
    filtered = torch.fft.ifft(spectrum, dim=-2).real[..., :n_extended, :]
    image = pixel_driven_backprojection(filtered, angles_deg, image_shape, centre_offset)
    image = image * (median_angular_step_rad(angles_deg) / 2)
    if circle:
        image = image * inscribed_circle(image_shape).to(image.device, image.dtype)
    return image


# --- operator -------------------------------------------------------------------------
class ParallelBeamCT(LinearPhysics):
    """Parallel-beam CT, ``y = P x``: line integrals of ``x`` along each view's rays.

    ``P`` is the Joseph system matrix of the geometry (see the module docstring), and
    ``A^H = P^T`` exactly. Units: ``y`` is ``x`` times a length in pixels (``x`` in
    attenuation per pixel gives line integrals ``p``; ``exp(-p)`` is the transmitted
    fraction). ``A_dagger`` is CG least squares (inherited); :meth:`fbp` is filtered
    back-projection, and the direct reconstruction (:meth:`x_init`) solvers start from.

    Shapes: 2D ``x`` ``(B, C, H, W)`` -> ``y`` ``(B, C, n_detectors, n_views)``; 3D
    (slice-wise: every axial slice projected with the same 2D geometry) ``x``
    ``(B, C, D, H, W)`` -> ``y`` ``(B, C, D, n_detectors, n_views)``.

    Parameters
    ----------
    image_size:
        ``N`` for ``N x N`` slices, or ``(H, W)``.
    angles_deg:
        Projection angles in degrees, e.g. :func:`sparse_view_angles` or
        :func:`limited_angle`.
    n_detectors:
        Detector bins; default ``min(H, W)`` (``circle=True``) or the diagonal.
    spatial_dims:
        2, or 3 for slice-wise projection of volumes.
    circle:
        The object lies inside the inscribed circle (skimage's ``circle``): sets the default
        detector count and the support of :meth:`fbp`.
    centre_offset:
        Position of the rotation axis on the detector relative to bin ``n_detectors // 2``,
        in bins (fractional allowed): measured data whose axis is at detector position
        ``c`` takes ``c - n_detectors // 2`` (see :mod:`medldm.physics.ct_centre` to find
        ``c``). The image stays centred on the axis.
    noise_model:
        ``TransmissionPoissonNoise(I0)`` (photon counts) or ``GaussianNoise(sigma)``.

    Example
    -------
    >>> import torch
    >>> ct = ParallelBeamCT(16, limited_angle(90, 10))
    >>> x, y = torch.rand(2, 1, 16, 16, dtype=torch.float64), torch.rand(2, 1, 16, 10)
    >>> ct.adjointness_error(x, y.double()) < 1e-10
    True
    """

    capabilities = frozenset({FILTERED_BACKPROJECTION})

    def __init__(
        self,
        image_size: int | Sequence[int],
        angles_deg: Sequence[float] | np.ndarray | torch.Tensor,
        n_detectors: int | None = None,
        spatial_dims: int = 2,
        *,
        circle: bool = True,
        centre_offset: float = 0.0,
        noise_model: NoiseModel | None = None,
    ):
        if spatial_dims not in (2, 3):
            raise InvalidInputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        super().__init__(spatial_dims=spatial_dims, noise_model=noise_model)
        sizes = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(sizes) != 2 or min(sizes) < 1:
            raise InvalidInputError(f"image_size must be N or (H, W), got {image_size}")
        angles = np.asarray(torch.as_tensor(angles_deg).cpu(), dtype=np.float64).reshape(-1)
        if angles.size == 0 or not np.isfinite(angles).all():
            raise InvalidInputError("angles_deg must hold at least one finite angle")
        self.image_shape = (int(sizes[0]), int(sizes[1]))
        self.angles_deg = tuple(float(a) for a in angles)
        self.circle = bool(circle)
        self.n_detectors = int(n_detectors or default_n_detectors(*self.image_shape, circle))
        if not math.isfinite(centre_offset):
            raise InvalidInputError(f"centre_offset must be finite, got {centre_offset}")
        self.centre_offset = float(centre_offset)
        matrix, transpose = cached_system_matrix(*self._geometry())
        # Not persistent: a state_dict should not carry megabytes that the geometry rebuilds.
        self.register_buffer("system_matrix", matrix, persistent=False)
        self.register_buffer("system_matrix_t", transpose, persistent=False)

    # Sparse CSR tensors can be neither deep-copied nor reliably pickled, so copies carry
    # the geometry only and take the matrices from the cache (or rebuild them).
    _MATRIX_BUFFERS = ("system_matrix", "system_matrix_t")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        buffers = dict(state["_buffers"])
        matrix = buffers["system_matrix"]
        state["_matrix_placement"] = (matrix.device, matrix.dtype)
        for name in self._MATRIX_BUFFERS:
            buffers.pop(name, None)
        state["_buffers"] = buffers
        return state

    def __setstate__(self, state: dict) -> None:
        device, dtype = state.pop("_matrix_placement")
        super().__setstate__(state)
        matrix, transpose = cached_system_matrix(*self._geometry())
        self._buffers["system_matrix"] = matrix.to(device=device, dtype=dtype)
        self._buffers["system_matrix_t"] = transpose.to(device=device, dtype=dtype)

    def _geometry(self, n_detectors: int | None = None) -> tuple:
        """``(H, W, angles_deg, n_detectors, centre_offset)``, the system matrices' key."""
        n_detectors = self.n_detectors if n_detectors is None else n_detectors
        return (*self.image_shape, self.angles_deg, n_detectors, self.centre_offset)

    @property
    def n_views(self) -> int:
        return len(self.angles_deg)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return (self.n_detectors, self.n_views)

    def extra_repr(self) -> str:
        offset = f", centre_offset={self.centre_offset:g}" if self.centre_offset else ""
        return (
            f"image_shape={self.image_shape}, n_views={self.n_views}, "
            f"n_detectors={self.n_detectors}, spatial_dims={self.spatial_dims}{offset}"
        )

    def _matmul(self, matrix: torch.Tensor, data: torch.Tensor, in_shape, out_shape):
        """``matrix @ data`` over the last two axes, batched over all leading axes."""
        if data.ndim != self.spatial_dims + 2 or tuple(data.shape[-2:]) != tuple(in_shape):
            raise InvalidInputError(
                f"CT input of shape {tuple(data.shape)}; expected {self.spatial_dims + 2} axes "
                f"ending in {tuple(in_shape)}"
            )
        if data.is_complex():
            raise InvalidInputError("CT takes real images and sinograms")
        return apply_matrix(matrix, data, in_shape, out_shape)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return self._matmul(self.system_matrix, x, self.image_shape, self.sinogram_shape)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._matmul(self.system_matrix_t, y, self.sinogram_shape, self.image_shape)

    def x_init(self, y: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection (ramp filter) of the sinogram ``y``."""
        return self.fbp(y)

    def fbp(self, sinogram: torch.Tensor, filter: str | None = "ramp") -> torch.Tensor:
        """Filtered back-projection, the analytic inverse for full 180-degree data.

        Steps, as ``iradon``: with ``circle=True`` the detector is first extended with zeros
        to the image diagonal (the ramp filter spreads values beyond the object, and pixels
        near the circle's rim need them); each view is filtered along the detector axis in
        Fourier space (zero-padded to ``max(64, 2^ceil(log2(2 n)))``, filter of
        :func:`fbp_filter`); the result is back-projected pixel-driven
        (:func:`pixel_driven_backprojection`) and scaled by ``dtheta / 2``, ``dtheta`` the
        median angular step in radians (``pi / n_views`` for views spread over 180 degrees;
        ``iradon`` always uses ``pi / n_views``, so limited-angle scales differ). With
        ``circle=True`` pixels outside the inscribed circle are set to 0.

        ``sinogram`` is ``(B, C, [D,] n_detectors, n_views)``; returns ``(B, C, [D,] H, W)``
        in the units of ``x``.
        """
        n_det = self.n_detectors
        if sinogram.ndim != self.spatial_dims + 2 or tuple(sinogram.shape[-2:]) != (
            self.sinogram_shape
        ):
            raise InvalidInputError(
                f"sinogram of shape {tuple(sinogram.shape)}; expected (..., {n_det}, "
                f"{self.n_views})"
            )
        if sinogram.is_complex():
            raise InvalidInputError("CT takes real images and sinograms")
        return filtered_backprojection(
            sinogram,
            self.angles_deg,
            self.image_shape,
            centre_offset=self.centre_offset,
            circle=self.circle,
            filter=filter,
        )

    def angular_step_rad(self) -> float:
        """Median spacing of the (sorted, modulo 180 degrees) view angles, in radians."""
        return median_angular_step_rad(self.angles_deg)

    def circle_support(self) -> torch.Tensor:
        """Bool ``(H, W)``: pixels inside the inscribed circle (radius ``min(H, W) // 2``)."""
        return inscribed_circle(self.image_shape)


# --- noise ----------------------------------------------------------------------------
class TransmissionPoissonNoise(NoiseModel):
    """Photon-count noise on line integrals: ``N ~ Poisson(I0 exp(-p))``, ``p' = -log(N / I0)``.

    ``I0`` is the number of photons per detector bin without attenuation (e.g. 1e4 for
    low-dose, 1e5 to 1e6 for normal dose). ``line_integral_scale`` converts the operator's
    units to attenuation (``p = scale * y``; e.g. ``mu_water * pixel size`` when ``x`` is
    in units of water attenuation) and the result is divided by it again. Zero counts are
    set to 0.5 photon before the logarithm (the usual fix for photon starvation).

    ``sigma`` reports the noise standard deviation at zero attenuation,
    ``1 / (scale sqrt(I0))``; it grows as ``exp(p / 2)`` through dense material.

    Example
    -------
    >>> import torch
    >>> noise = TransmissionPoissonNoise(photons_per_ray=1e4)
    >>> p = torch.full((1, 1, 8, 4), 2.0)
    >>> a = noise(p, torch.Generator().manual_seed(0))
    >>> b = noise(p, torch.Generator().manual_seed(0))
    >>> bool(torch.equal(a, b)), bool((a - p).abs().mean() < 0.1)
    (True, True)
    """

    def __init__(self, photons_per_ray: float = 1e5, line_integral_scale: float = 1.0):
        super().__init__()
        if not photons_per_ray > 0:
            raise InvalidInputError(f"photons_per_ray must be > 0, got {photons_per_ray}")
        if not line_integral_scale > 0:
            raise InvalidInputError(f"line_integral_scale must be > 0, got {line_integral_scale}")
        self.photons_per_ray = float(photons_per_ray)
        self.line_integral_scale = float(line_integral_scale)

    @property
    def sigma(self) -> float:  # type: ignore[override]
        return float(1.0 / (self.line_integral_scale * self.photons_per_ray**0.5))

    def forward(self, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        expected = self.photons_per_ray * torch.exp(-self.line_integral_scale * y)
        device = generator.device if generator is not None else y.device
        counts = torch.poisson(expected.to(device), generator=generator).to(y.device)
        counts = counts.clamp_min(0.5)
        return -torch.log(counts / self.photons_per_ray) / self.line_integral_scale
