"""The reconstructions compared in the peer table, all behind one call:
``method.run(case, weight) -> (complex image (H, W), seconds)``.

A :class:`KspaceCase` is everything a peer needs and nothing more: the measured k-space
``(coils, H, W)`` (centred, orthonormal FFT scaling: medldm's ``fft2c``; zeros where not
sampled), the sampling mask ``(H, W)`` and the coil maps ``(coils, H, W)`` (ones for one
coil). For simulated cases they are the very arrays medldm's physics used, so BART, SigPy
and medldm solve the same problem with the same coil maps and only the regulariser and the
algorithm differ.

Conventions checked here (``tests/test_peers.py``):

* BART: ``bart fft -u`` is medldm's centred orthonormal FFT for even sizes; ``pics`` scales
  the data by its own rule (p90 of the zero-filled image) before the iterations, and ``-S``
  scales the image back, so BART runs with its default algorithm settings and its output is
  in our units. Dimensions: ``(H, W, 1, coils)``, H on BART's first (readout) axis.
  ``pics -R W:3:0:lambda`` runs FISTA with random wavelet shifts (Daubechies-2), ``-R
  T:3:0:lambda`` ADMM on the 2D isotropic TV; BART's lambda is relative to its scaled data.
* SigPy: ``sigpy.fft(center=True, norm="ortho")`` is medldm's FFT; ``L1WaveletRecon``
  (Daubechies-4, accelerated proximal gradient) and ``TotalVariationRecon`` (PDHG,
  anisotropic TV of the complex image) weight the data term by the sampled points; lambda
  is in our units.
* medldm: the per-operator preset (``configs/solver/<solver>_<operator>.yaml``: phase
  handling, iterations, wavelet) with the weight being tuned; physics rebuilt from the
  case's arrays (``SingleCoilMRI`` / ``MultiCoilMRI``), so real data takes the same path.

Seconds are wall time on this machine with one thread (``OMP_NUM_THREADS=1``); BART's
include writing and reading its files and starting the process (tens of ms).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from cfl import read_cfl, write_cfl

from medldm.physics.mri import MultiCoilMRI, SingleCoilMRI
from medldm.problems.configs import solver_for_operator


@dataclass
class KspaceCase:
    """One measured slice.

    Attributes
    ----------
    name:
        A label (e.g. ``IXI603/slice043``).
    kspace:
        Complex ``(coils, H, W)``, centred, orthonormal FFT scaling, zeros off the mask.
    mask:
        Bool ``(H, W)``: sampled k-space locations.
    coil_maps:
        Complex ``(coils, H, W)`` (ones ``(1, H, W)`` for single-coil data).
    truth:
        Magnitude reference ``(H, W)`` for scoring, or ``None`` (real data without one).
    operator:
        The medldm operator preset whose solver presets apply (``mri_4x`` ...).
    """

    name: str
    kspace: np.ndarray
    mask: np.ndarray
    coil_maps: np.ndarray
    truth: np.ndarray | None
    operator: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_coils(self) -> int:
        return int(self.kspace.shape[0])


def case_from_physics(
    name: str, physics: Any, y: torch.Tensor, truth: np.ndarray, operator: str
) -> KspaceCase:
    """A :class:`KspaceCase` holding exactly what a medldm MRI physics measured."""
    kspace = y[0].detach().cpu().numpy().astype(np.complex64)
    mask = physics.mask[0, 0].detach().cpu().numpy() > 0
    if isinstance(physics, MultiCoilMRI):
        maps = physics.coil_sensitivities[0].detach().cpu().numpy().astype(np.complex64)
    else:
        maps = np.ones((1, *mask.shape), dtype=np.complex64)
    return KspaceCase(name, kspace, mask, maps, truth, operator)


def medldm_physics(case: KspaceCase) -> tuple[Any, torch.Tensor]:
    """medldm's operator and measurement rebuilt from the case's arrays."""
    mask = torch.from_numpy(case.mask)
    y = torch.from_numpy(case.kspace)[None]
    if case.n_coils == 1 and np.allclose(case.coil_maps, 1):
        return SingleCoilMRI(mask), y
    return MultiCoilMRI(mask, torch.from_numpy(case.coil_maps)), y


@dataclass
class Method:
    """A reconstruction with (optionally) one weight to tune.

    ``tool`` is ``medldm``, ``BART`` or ``SigPy``; ``regulariser`` is ``tv``,
    ``l1_wavelet`` or ``none``; ``grid`` the weights to try on validation cases.
    """

    name: str
    tool: str
    regulariser: str
    runner: Callable[[KspaceCase, float | None], np.ndarray]
    grid: tuple[float, ...] = ()
    note: str = ""

    @property
    def tuned(self) -> bool:
        return bool(self.grid)

    def run(self, case: KspaceCase, weight: float | None = None) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        image = self.runner(case, weight)
        return np.asarray(image).reshape(case.mask.shape), time.perf_counter() - started


# --- medldm ---------------------------------------------------------------------------------
def medldm_runner(solver_name: str, **overrides: Any) -> Callable:
    """Our solver with its per-operator preset; the tuned weight replaces the preset's."""

    def run(case: KspaceCase, weight: float | None) -> np.ndarray:
        options = dict(overrides)
        if weight is not None:
            options["weight"] = weight
        solver, _ = solver_for_operator(solver_name, case.operator, options or None)
        physics, y = medldm_physics(case)
        generator = torch.Generator().manual_seed(0)
        estimate = solver.solve(y, physics, generator=generator).estimate
        return estimate[0, 0].detach().cpu().numpy()

    return run


# --- BART -----------------------------------------------------------------------------------
BART_ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def bart_available() -> bool:
    try:
        subprocess.run(["bart", "version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def bart_pics(case: KspaceCase, options: Sequence[str]) -> np.ndarray:
    """``bart pics <options>`` on the case, with its sampling pattern and coil maps."""
    with tempfile.TemporaryDirectory(prefix="medldm_bart_") as folder:
        base = Path(folder)
        # medldm (coils, H, W) -> BART (H, W, 1, coils): readout on BART's first axis
        write_cfl(base / "kspace", np.moveaxis(case.kspace, 0, -1)[:, :, None, :])
        write_cfl(base / "maps", np.moveaxis(case.coil_maps, 0, -1)[:, :, None, :])
        write_cfl(base / "pattern", case.mask.astype(np.complex64)[:, :, None, None])
        command = ["bart", "pics", "-d", "0", *options, "-p", str(base / "pattern")]
        command += [str(base / "kspace"), str(base / "maps"), str(base / "image")]
        result = subprocess.run(command, capture_output=True, text=True, env=BART_ENV)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-500:]}")
        return read_cfl(base / "image").reshape(case.mask.shape)


def bart_runner(kind: str, n_iter: int) -> Callable:
    """``bart pics -S -i n_iter -R <kind>:3:0:<weight>``: BART's default data scaling,
    undone on the output by ``-S``."""

    def run(case: KspaceCase, weight: float | None) -> np.ndarray:
        return bart_pics(case, ["-S", "-i", str(n_iter), "-R", f"{kind}:3:0:{weight:g}"])

    return run


# --- SigPy ----------------------------------------------------------------------------------
def sigpy_available() -> bool:
    try:
        import sigpy.mri.app  # noqa: F401
    except ImportError:
        return False
    return True


def sigpy_runner(app_name: str, n_iter: int) -> Callable:
    def run(case: KspaceCase, weight: float | None) -> np.ndarray:
        import sigpy.mri.app as app

        recon = getattr(app, app_name)(
            case.kspace, case.coil_maps, weight, max_iter=n_iter, show_pbar=False
        )
        return np.asarray(recon.run())

    return run


# --- the set --------------------------------------------------------------------------------
def log_grid(low: float, high: float, n: int) -> tuple[float, ...]:
    return tuple(float(f"{w:.3g}") for w in np.geomspace(low, high, n))


def all_methods(peer_iters: int = 100, grid_points: int = 7) -> list[Method]:
    """Every method of the table; peers only where installed."""
    grid = log_grid(1e-4, 1e-2, grid_points)
    methods = [
        Method("zero_filled", "medldm", "none", medldm_runner("zero_filled")),
        Method("cg", "medldm", "none", medldm_runner("cg"), note="CG-SENSE, preset iterations"),
        Method("tv", "medldm", "tv", medldm_runner("tv"), grid),
        Method(
            "tv (no phase constraint)",
            "medldm",
            "tv",
            medldm_runner("tv", phase=None),
            grid,
            note="diagnostic: complex image, as the peers",
        ),
        Method("l1_wavelet", "medldm", "l1_wavelet", medldm_runner("l1_wavelet"), grid),
        Method(
            "l1_wavelet (no phase constraint)",
            "medldm",
            "l1_wavelet",
            medldm_runner("l1_wavelet", phase=None),
            grid,
            note="diagnostic: complex image, as the peers",
        ),
    ]
    if bart_available():
        methods += [
            Method("bart pics -R T", "BART", "tv", bart_runner("T", peer_iters), grid),
            Method("bart pics -R W", "BART", "l1_wavelet", bart_runner("W", peer_iters), grid),
        ]
    if sigpy_available():
        methods += [
            Method(
                "sigpy TotalVariationRecon",
                "SigPy",
                "tv",
                sigpy_runner("TotalVariationRecon", peer_iters),
                grid,
            ),
            Method(
                "sigpy L1WaveletRecon",
                "SigPy",
                "l1_wavelet",
                sigpy_runner("L1WaveletRecon", peer_iters),
                grid,
            ),
        ]
    return methods
