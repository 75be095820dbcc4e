"""The peers (BART, SigPy) run on medldm's measurements and agree with medldm's solvers.

On a small case (Shepp-Logan 64 x 64 with a smooth phase, the ``mri_multicoil_4x`` and
``mri_4x`` presets' simulation: noise, random lines, the same coil maps for everyone):

* conventions: ``bart fft -u`` is medldm's ``fft2c``; a BART ``.cfl`` round-trips;
* the same problem gives the same answer: Tikhonov-regularised SENSE (a unique, smooth
  minimiser) from BART ``pics -l2`` and SigPy ``SenseRecon`` equals medldm's CG-SENSE to
  1 % NRMSE; BART's isotropic TV (ADMM) approaches medldm's TV minimiser (PDHG) at the
  same weight (NRMSE below 8 %, PSNR within 0.5 dB);
* the l1-wavelet and TV peers with different wavelets or TV definitions (BART's Haar
  with random shifts, SigPy's Daubechies-4 with zero-padded borders and anisotropic TV)
  score within a stated margin of ours at the same weight.

They skip with the reason when BART or SigPy is missing, and fail under ``CI=true`` (where
``make test`` installs both).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medldm.metrics.scoring import score
from medldm.physics.mri import fft2c
from medldm.problems.configs import load_physics
from medldm.problems.simulate import simulate
from medldm.solvers import ConjugateGradient, L1Wavelet, TotalVariation

PEERS = Path(__file__).resolve().parents[1] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))
import methods  # noqa: E402
from cfl import read_cfl, write_cfl  # noqa: E402

sys.path.remove(str(PEERS))


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: `make test` installs the peers)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def bart() -> None:
    if not methods.bart_available():
        _missing("BART is not installed: apt-get install bart (as root; `make test` does it)")


@pytest.fixture(scope="module")
def sigpy_app():
    try:
        import sigpy.mri.app as app
    except ImportError:
        _missing("SigPy is not installed: pip install 'medldm[peers]' (`make test` does it)")
    return app


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    image = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    return (image / image.max()).astype(np.float32)


def measured(phantom: np.ndarray, operator: str):
    physics, y = simulate(torch.from_numpy(phantom)[None, None], load_physics(operator), seed=0)
    return physics, y, methods.case_from_physics("phantom", physics, y, phantom, operator)


def bart_pics(case, *options: str) -> np.ndarray:
    """``bart pics -w 1`` (no data scaling: the weight is in medldm's units)."""
    return methods.bart_pics(case, ["-w", "1", *options])


def nrmse(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    return score(np.abs(estimate), truth)["psnr"]


def ours(solver, physics, y) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    return solver.solve(y, physics, generator=generator).estimate[0, 0].numpy()


def test_cfl_files_round_trip_in_fortran_order(tmp_path):
    data = (np.arange(24).reshape(2, 3, 4) * (1 - 2j)).astype(np.complex64)
    write_cfl(tmp_path / "x", data)
    assert (tmp_path / "x.hdr").read_text().splitlines()[1] == "2 3 4"
    raw = np.fromfile(tmp_path / "x.cfl", np.complex64)
    assert raw[0] == data[0, 0, 0] and raw[1] == data[1, 0, 0] and raw[2] == data[0, 1, 0]
    assert np.array_equal(read_cfl(tmp_path / "x"), data)


def test_bart_unitary_fft_is_our_centred_orthonormal_fft(bart, tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.standard_normal((64, 48)) + 1j * rng.standard_normal((64, 48))).astype(
        np.complex64
    )
    write_cfl(tmp_path / "image", image)
    subprocess.run(
        ["bart", "fft", "-u", "3", str(tmp_path / "image"), str(tmp_path / "kspace")], check=True
    )
    expected = fft2c(torch.from_numpy(image)).numpy()
    assert nrmse(read_cfl(tmp_path / "kspace"), expected) < 1e-5


@pytest.mark.parametrize("operator", ["mri_4x", "mri_multicoil_4x"])
def test_bart_and_sigpy_sense_equal_our_cg_sense(bart, sigpy_app, phantom, operator):
    physics, y, case = measured(phantom, operator)
    weight = 0.01  # min 1/2 ||Ax - y||^2 + weight/2 ||x||^2 in every tool
    cg = ours(ConjugateGradient(n_iter=100, tol=1e-6, l2_weight=weight), physics, y)
    bart_image = bart_pics(case, "-l2", "-r", str(weight), "-i", "100")
    sigpy_image = sigpy_app.SenseRecon(
        case.kspace, case.coil_maps, weight, max_iter=100, show_pbar=False
    ).run()
    assert nrmse(bart_image, cg) < 0.01
    assert nrmse(np.asarray(sigpy_image), cg) < 0.01


def test_bart_tv_approaches_our_tv_minimiser(bart, phantom):
    physics, y, case = measured(phantom, "mri_multicoil_4x")
    weight = 0.01
    tv = ours(TotalVariation(weight, 600), physics, y)
    bart_short = bart_pics(case, "-R", f"T:3:0:{weight}", "-i", "100")
    bart_long = bart_pics(case, "-R", f"T:3:0:{weight}", "-i", "1000")
    assert nrmse(bart_long, tv) < 0.08
    assert nrmse(bart_long, tv) < nrmse(bart_short, tv)  # BART's ADMM converges to ours
    assert abs(psnr(bart_long, phantom) - psnr(tv, phantom)) < 0.5


def test_bart_l1_wavelet_scores_like_ours(bart, phantom):
    physics, y, case = measured(phantom, "mri_multicoil_4x")
    weight = 0.003
    wavelet = ours(L1Wavelet(weight, 300, wavelet="haar"), physics, y)
    bart_image = bart_pics(case, "-R", f"W:3:0:{weight}", "--wavelet", "haar", "-i", "300")
    zero_filled = physics.A_adjoint(y)[0, 0].numpy()
    assert psnr(wavelet, phantom) > psnr(zero_filled, phantom) + 5
    assert abs(psnr(bart_image, phantom) - psnr(wavelet, phantom)) < 1.0


def test_sigpy_l1_wavelet_and_tv_score_like_ours(sigpy_app, phantom):
    physics, y, case = measured(phantom, "mri_multicoil_4x")
    weight = 0.003
    wavelet = ours(L1Wavelet(weight, 300, wavelet="db4", random_shift=False), physics, y)
    sigpy_wavelet = sigpy_app.L1WaveletRecon(
        case.kspace, case.coil_maps, weight, max_iter=300, show_pbar=False
    ).run()
    assert abs(psnr(np.asarray(sigpy_wavelet), phantom) - psnr(wavelet, phantom)) < 0.5
    weight = 0.01
    tv = ours(TotalVariation(weight, 600), physics, y)
    sigpy_tv = sigpy_app.TotalVariationRecon(
        case.kspace, case.coil_maps, weight, max_iter=1000, show_pbar=False
    ).run()
    # SigPy's TV is anisotropic (sum of |D_x x| and |D_y x|): another minimiser
    assert abs(psnr(np.asarray(sigpy_tv), phantom) - psnr(tv, phantom)) < 1.5


def test_peer_table_methods_run_on_one_case(bart, sigpy_app, phantom):
    """Every method of the table, with its tuned-weight call, on one small case."""
    _, _, case = measured(phantom, "mri_4x")
    for method in methods.all_methods(peer_iters=20):
        weight = method.grid[len(method.grid) // 2] if method.tuned else None
        image, seconds = method.run(case, weight)
        assert image.shape == (64, 64) and np.all(np.isfinite(image)) and seconds > 0
        assert psnr(image, phantom) > 15, method.name
