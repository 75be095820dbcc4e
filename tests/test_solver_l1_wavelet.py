"""The l1-wavelet solver (FISTA): its wavelet transform is orthonormal, the shrinkage is
complex soft-thresholding, FISTA reaches the closed-form minimiser where one exists, and
it reconstructs single-coil MRI, multi-coil MRI and sparse-view CT better than the direct
reconstruction. Presets for the MRI and CT operators exist and instantiate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from medldm.bench.compatibility import is_applicable
from medldm.errors import InvalidInputError
from medldm.metrics import psnr
from medldm.physics.base import LinearPhysics
from medldm.problems.configs import load_physics, solver_for_operator
from medldm.problems.simulate import simulate
from medldm.solvers import L1Wavelet, ZeroFilled, get_solver
from medldm.solvers.l1_wavelet import OrthonormalWavelet, soft_threshold, wavelet_l1_norm

ROOT = Path(__file__).resolve().parents[1]
TUNED_OPERATORS = [
    "mri_4x",
    "mri_8x",
    "mri_multicoil_4x",
    "mri_multicoil_8x",
    "ct_sparse_30",
    "ct_sparse_60",
]


class Identity(LinearPhysics):
    def A(self, x):
        return x

    def A_adjoint(self, y):
        return y


@pytest.fixture(scope="module")
def phantom() -> torch.Tensor:
    """Shepp-Logan phantom, 64 x 64, in [0, 1], as (1, 1, 64, 64) float32."""
    image = resize(shepp_logan_phantom(), (64, 64), anti_aliasing=True)
    return torch.from_numpy(image / image.max()).float()[None, None]


def energy(bands: list[torch.Tensor]) -> float:
    return float(sum((band**2).sum() for band in bands))


@pytest.mark.parametrize(
    ("shape", "complex_input"),
    [((2, 1, 32, 32), False), ((1, 1, 32, 32), True), ((1, 1, 16, 16, 16), True)],
)
def test_wavelet_transform_is_orthonormal_for_real_complex_2d_and_3d(shape, complex_input):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    if complex_input:
        x = torch.complex(x, torch.randn(shape, generator=generator, dtype=torch.float64))
    transform = OrthonormalWavelet("db4", 4, len(shape) - 2, shape[2:])
    bands = transform.forward(x)
    assert sum(band[0].numel() for band in bands) == x[0:1].numel() * x.shape[0]
    assert energy(bands) == pytest.approx(float((x.abs() ** 2).sum()), rel=1e-10)
    back = transform.inverse(bands, x)
    assert back.dtype == x.dtype and torch.allclose(back, x, atol=1e-10)


def test_wavelet_levels_are_capped_and_odd_sizes_stay_isometric():
    x = torch.randn(1, 1, 46, 36, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    transform = OrthonormalWavelet("db4", 10, 2, (46, 36))
    assert transform.levels == 2  # pywt.dwt_max_level(36, 8)
    bands = transform.forward(x)
    assert energy(bands) == pytest.approx(float((x**2).sum()), rel=1e-10)
    assert torch.allclose(transform.inverse(bands, x), x, atol=1e-10)


def test_complex_soft_threshold_shrinks_the_modulus_and_keeps_the_phase():
    coefficient = 2.0 * torch.exp(torch.tensor(0.7j, dtype=torch.complex128))
    band = torch.stack((coefficient.real, coefficient.imag)).reshape(2, 1, 1)
    coarse = band.clone()
    shrunk = soft_threshold([coarse, band], 0.5, skip_first=True)
    assert torch.equal(shrunk[0], coarse)  # the approximation band is kept
    value = torch.complex(shrunk[1][0], shrunk[1][1]).squeeze()
    assert abs(value) == pytest.approx(1.5) and torch.angle(value) == pytest.approx(0.7)
    assert float(soft_threshold([band], 3.0, skip_first=False)[0].abs().max()) == 0.0
    assert wavelet_l1_norm([coarse, band], skip_first=True) == pytest.approx(2.0)


def test_fista_on_the_identity_reaches_the_closed_form_denoiser(phantom):
    """For A = I and an orthonormal W the minimiser is W^T S_lambda(W y)."""
    noisy = phantom + 0.05 * torch.randn(phantom.shape, generator=torch.Generator().manual_seed(2))
    weight = 0.05
    solver = L1Wavelet(weight, n_iter=30, wavelet="db2", random_shift=False)
    rec = solver.solve(noisy, Identity())
    transform = OrthonormalWavelet("db2", 4, 2, (64, 64))
    expected = transform.inverse(soft_threshold(transform.forward(noisy), weight, True), noisy)
    assert torch.allclose(rec.estimate, expected, atol=1e-5)
    assert psnr(rec.estimate, phantom) > psnr(noisy, phantom) + 2.0


def test_zero_weight_on_fully_sampled_mri_returns_the_image(phantom):
    physics = load_physics("mri_4x").build((64, 64), torch.Generator().manual_seed(0), "cpu")
    physics.mask.fill_(1.0)
    x = phantom.to(torch.complex64)
    rec = L1Wavelet(0.0, n_iter=5).solve(physics.A(x), physics)
    assert torch.allclose(rec.estimate, x, atol=1e-5)


def test_fista_lowers_the_objective_on_undersampled_mri(phantom):
    physics, y = simulate(phantom, load_physics("mri_4x"), seed=0)
    start = physics.x_init(y)
    solver = L1Wavelet(0.002, n_iter=60, random_shift=False)
    rec = solver.solve(y, physics)
    transform = OrthonormalWavelet("db4", 4, 2, (64, 64))

    def objective(x: torch.Tensor) -> float:
        misfit = 0.5 * float(torch.linalg.vector_norm(physics.A(x) - y)) ** 2
        return misfit + 0.002 * wavelet_l1_norm(transform.forward(x), True)

    assert rec.info["objective"] == pytest.approx(objective(rec.estimate), rel=1e-4)
    assert rec.info["objective"] < objective(start)
    assert rec.iterations == 60 and rec.nfe == 0 and rec.seconds > 0


@pytest.mark.parametrize(
    ("operator", "options", "gain_db"),
    [
        ("mri_4x", {"weight": 0.001, "phase": "lowres"}, 1.0),
        ("mri_multicoil_8x", {"weight": 0.001, "phase": "lowres", "n_iter": 50}, 1.0),
        ("ct_sparse_30", {"weight": 0.3, "n_iter": 100, "constraint": "nonnegative"}, 3.0),
    ],
)
def test_l1_wavelet_beats_the_direct_reconstruction(phantom, operator, options, gain_db):
    physics, y = simulate(phantom, load_physics(operator), seed=0)
    solver = get_solver("l1_wavelet", **options)
    assert is_applicable(solver, physics)
    rec = solver.solve(y, physics, generator=torch.Generator().manual_seed(0))
    direct = ZeroFilled().solve(y, physics).estimate
    assert rec.estimate.shape == direct.shape
    assert psnr(rec.estimate.abs(), phantom) > psnr(direct.abs(), phantom) + gain_db


def test_phase_constrained_estimate_is_a_non_negative_magnitude_behind_the_lowres_phase(
    phantom,
):
    from medldm.physics.phase import lowres_phase

    physics, y = simulate(phantom, load_physics("mri_4x"), seed=3)
    rec = L1Wavelet(0.001, n_iter=20, phase="lowres").solve(y, physics)
    phase_map = lowres_phase(y, physics)
    magnitude = rec.estimate / phase_map
    assert rec.estimate.is_complex() and rec.info["phase"] == "lowres"
    assert float(magnitude.imag.abs().max()) < 1e-5 and float(magnitude.real.min()) >= -1e-6


def test_random_shifts_come_from_the_generator(phantom):
    physics, y = simulate(phantom, load_physics("mri_4x"), seed=0)
    solver = L1Wavelet(0.002, n_iter=10)

    def run(seed: int) -> torch.Tensor:
        return solver.solve(y, physics, generator=torch.Generator().manual_seed(seed)).estimate

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert torch.equal(solver.solve(y, physics).estimate, solver.solve(y, physics).estimate)


def test_callback_is_called_each_iteration_and_tol_stops_early(phantom):
    steps: list[int] = []
    L1Wavelet(0.01, n_iter=7).solve(phantom, Identity(), callback=lambda k, x: steps.append(k))
    assert steps == list(range(7))
    rec = L1Wavelet(0.01, n_iter=500, random_shift=False, tol=1e-4).solve(phantom, Identity())
    assert rec.iterations < 500


@pytest.mark.parametrize(
    "options",
    [
        {"weight": -1.0},
        {"wavelet": "bior2.2"},  # biorthogonal, not orthonormal
        {"wavelet": "morl"},  # continuous
        {"constraint": "positive"},
        {"phase": "highres"},
        {"levels": 0},
    ],
)
def test_bad_options_raise_a_medldm_error(options):
    with pytest.raises(InvalidInputError):
        L1Wavelet(**options)


def test_registry_builds_it_and_it_declares_no_requirements():
    solver = get_solver("l1_wavelet", weight=0.003, wavelet="haar")
    assert isinstance(solver, L1Wavelet) and solver.weight == 0.003 and solver.wavelet == "haar"
    assert L1Wavelet.requires == frozenset()


@pytest.mark.parametrize("operator", TUNED_OPERATORS)
def test_every_mri_and_ct_operator_has_a_tuned_preset(operator):
    path = ROOT / "configs" / "solver" / f"l1_wavelet_{operator}.yaml"
    assert path.is_file(), f"run benchmarks/tune_classical.py --solvers l1_wavelet ({path})"
    solver, preset = solver_for_operator("l1_wavelet", operator)
    assert isinstance(solver, L1Wavelet) and preset == f"l1_wavelet_{operator}"
    header = path.read_text()
    assert "Tuned on training cases only" in header and "chosen: transform" in header
    if operator.startswith("mri"):
        assert solver.phase == "lowres"
    else:
        assert solver.constraint == "nonnegative"


def test_float64_input_stays_float64():
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 32, 32)))
    rec = L1Wavelet(0.01, n_iter=3).solve(x, Identity())
    assert rec.estimate.dtype == torch.float64
