"""Classical solvers on small real images, with small operators defined here (a masked
centred FFT, a pixel mask, a dense matrix, circular and zero-padded blurs) so the solvers
are tested independently of medldm.physics; tests with the package's own operators are in
tests/test_solvers_with_physics.py."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.data import camera, coins
from skimage.restoration import inpaint_biharmonic, richardson_lucy

from medldm.errors import InvalidInputError
from medldm.metrics import psnr
from medldm.physics.base import (
    FILTERED_BACKPROJECTION,
    OBSERVED_MASK,
    LinearPhysics,
    largest_eigenvalue,
)
from medldm.solvers import (
    SOLVERS,
    Biharmonic,
    ConjugateGradient,
    RichardsonLucy,
    Solver,
    TotalVariation,
    ZeroFilled,
    get_solver,
)
from medldm.solvers.finite_differences import (
    axis_weights,
    gradient,
    gradient_adjoint,
    gradient_norm_bound,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "solver"


# --- small operators ---------------------------------------------------------------------
def fft2c(x: torch.Tensor) -> torch.Tensor:
    shifted = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(shifted, norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    shifted = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(shifted, norm="ortho"), dim=(-2, -1))


class MaskedFFT(LinearPhysics):
    """Single-coil Cartesian MRI: ``y = M F x`` with an orthonormal centred FFT."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask

    def A(self, x):
        return self.mask * fft2c(x)

    def A_adjoint(self, y):
        return ifft2c(self.mask * y)


class PixelMask(LinearPhysics):
    """Inpainting: ``y = m * x`` with ``m`` = 1 on observed pixels."""

    capabilities = frozenset({OBSERVED_MASK})

    def __init__(self, mask: torch.Tensor, spatial_dims: int = 2):
        super().__init__(spatial_dims)
        self.mask = mask

    def A(self, x):
        return self.mask * x

    def A_adjoint(self, y):
        return self.mask * y


class DenseMatrix(LinearPhysics):
    """``y = M vec(x)`` for images of one fixed shape."""

    def __init__(self, matrix: torch.Tensor, image_shape: tuple[int, ...]):
        super().__init__()
        self.matrix, self.image_shape = matrix, image_shape

    def A(self, x):
        return (x.reshape(x.shape[0], -1) @ self.matrix.T)[:, None]

    def A_adjoint(self, y):
        return (y[:, 0] @ self.matrix).reshape((y.shape[0], *self.image_shape))


class CircularBlur(LinearPhysics):
    """Periodic convolution with a centred PSF of the image's size (via FFT)."""

    def __init__(self, psf: torch.Tensor):
        super().__init__()
        self.otf = torch.fft.fft2(torch.fft.ifftshift(psf))

    def A(self, x):
        return torch.fft.ifft2(torch.fft.fft2(x) * self.otf).real

    def A_adjoint(self, y):
        return torch.fft.ifft2(torch.fft.fft2(y) * self.otf.conj()).real


class SameConvolution(LinearPhysics):
    """Zero-padded ``'same'`` convolution with an odd PSF (scipy's ``convolve``)."""

    def __init__(self, psf: torch.Tensor):
        super().__init__()
        self.kernel = torch.flip(psf, (0, 1))[None, None]
        self.padding = psf.shape[0] // 2

    def A(self, x):
        return F.conv2d(x, self.kernel, padding=self.padding)

    def A_adjoint(self, y):
        return F.conv_transpose2d(y, self.kernel, padding=self.padding)


def gaussian_psf(size: int, sigma: float, dtype=torch.float64) -> torch.Tensor:
    axis = torch.arange(size, dtype=dtype) - size // 2
    psf = torch.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2))
    return psf / psf.sum()


def line_mask(n: int, acceleration: int, centre_lines: int, seed: int) -> torch.Tensor:
    """fastMRI-like random phase-encode lines (columns) with a fully sampled centre."""
    generator = torch.Generator().manual_seed(seed)
    probability = (n / acceleration - centre_lines) / (n - centre_lines)
    columns = torch.rand(n, generator=generator) < probability
    columns[n // 2 - centre_lines // 2 : n // 2 + centre_lines - centre_lines // 2] = True
    return columns[None, :].expand(n, n).float()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: extra threads only contend for the shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- real images -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def breast_mri(data_root: Path) -> torch.Tensor:
    """Four real 64x64 MedNIST breast MRI slices in [0, 1], complex, (4, 1, 64, 64)."""
    with np.load(data_root / "mednist" / "BreastMRI.npz") as archive:
        images = archive["images"][200:204].astype(np.float32) / 255.0
    return torch.from_numpy(images)[:, None].to(torch.complex64)


@pytest.fixture(scope="module")
def camera_small() -> torch.Tensor:
    """The camera photograph at 128x128 in [0, 1], float64, (1, 1, 128, 128)."""
    return torch.from_numpy(camera()[::4, ::4] / 255.0)[None, None]


# --- helpers: finite differences and the operator norm -------------------------------------
@pytest.mark.parametrize("shape", [(2, 1, 6, 7), (1, 2, 4, 5, 6)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_gradient_adjoint_identity_2d_and_3d(shape, dtype):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=dtype)
    weights = axis_weights(len(shape) - 2, weight_z=0.5)
    g = torch.randn((len(shape) - 2, *shape), generator=generator, dtype=dtype)
    lhs = torch.vdot(gradient(x, weights).flatten(), g.flatten())
    rhs = torch.vdot(x.flatten(), gradient_adjoint(g, weights).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-10)
    # The bound used for the step sizes holds.
    squared_norm = largest_eigenvalue(
        lambda v: gradient_adjoint(gradient(v, weights), weights), torch.zeros(shape, dtype=dtype)
    )
    assert squared_norm**0.5 <= gradient_norm_bound(weights) + 1e-6


def test_operator_norm_is_the_largest_singular_value_and_is_cached():
    matrix = torch.randn(30, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    physics = DenseMatrix(matrix, (1, 4, 4))
    expected = float(torch.linalg.matrix_norm(matrix, ord=2))
    like = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    assert physics.norm(like) == pytest.approx(expected, rel=1e-3)
    physics.matrix = 2 * matrix  # changed in place: the cache answers (documented)
    assert physics.norm(like) == pytest.approx(expected, rel=1e-3)
    assert DenseMatrix(2 * matrix, (1, 4, 4)).norm(like) == pytest.approx(2 * expected, rel=1e-3)


# --- zero-filled -------------------------------------------------------------------------
def test_zero_filled_is_the_adjoint_and_keeps_the_complex_dtype(breast_mri):
    physics = MaskedFFT(line_mask(64, 4, 6, seed=0))
    y = physics.A(breast_mri)
    rec = ZeroFilled().solve(y, physics)
    assert rec.estimate.dtype == torch.complex64
    assert torch.equal(rec.estimate, physics.A_adjoint(y))
    assert rec.nfe == 0 and rec.iterations == 0 and rec.info["method"] == "adjoint"
    assert rec.residual == pytest.approx(0.0, abs=1e-5)  # A A^H = I on the sampled lines


def test_zero_filled_uses_fbp_when_the_physics_declares_one(camera_small):
    class WithFBP(PixelMask):
        capabilities = frozenset({FILTERED_BACKPROJECTION})

        def x_init(self, y):
            return 2 * y

    physics = WithFBP(torch.ones_like(camera_small))
    rec = ZeroFilled().solve(camera_small, physics)
    assert torch.equal(rec.estimate, 2 * camera_small) and rec.info["method"] == "fbp"


# --- CG ------------------------------------------------------------------------------------
def test_cg_recovers_the_least_squares_solution_of_a_dense_system():
    generator = torch.Generator().manual_seed(2)
    matrix = torch.randn(200, 64, generator=generator, dtype=torch.float64)
    physics = DenseMatrix(matrix, (1, 8, 8))
    y = torch.randn(3, 1, 200, generator=generator, dtype=torch.float64)  # inconsistent data
    rec = ConjugateGradient(n_iter=200, tol=1e-10).solve(y, physics)
    expected = torch.linalg.lstsq(matrix, y[:, 0].T).solution.T.reshape(3, 1, 8, 8)
    assert torch.allclose(rec.estimate, expected, atol=1e-8)
    assert rec.iterations <= 64 + 1  # CG converges in at most n steps


def test_cg_with_l2_weight_solves_the_tikhonov_normal_equations():
    generator = torch.Generator().manual_seed(3)
    matrix = torch.randn(40, 64, generator=generator, dtype=torch.float64)  # underdetermined
    physics = DenseMatrix(matrix, (1, 8, 8))
    y = torch.randn(1, 1, 40, generator=generator, dtype=torch.float64)
    rec = ConjugateGradient(n_iter=300, tol=1e-12, l2_weight=0.5).solve(y, physics)
    normal = matrix.T @ matrix + 0.5 * torch.eye(64, dtype=torch.float64)
    expected = torch.linalg.solve(normal, matrix.T @ y[0, 0]).reshape(1, 1, 8, 8)
    assert torch.allclose(rec.estimate, expected, atol=1e-8)


def test_cg_data_residual_decreases_on_a_blurred_real_image(camera_small):
    physics = CircularBlur(gaussian_psf(128, 2.0))
    y = physics.A(camera_small)
    steps = []
    rec = ConjugateGradient(n_iter=25, tol=0).solve(
        y, physics, callback=lambda k, x: steps.append(k)
    )
    history = rec.info["residual_history"]
    assert len(history) == 26 and steps == list(range(25))
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(history))
    assert history[-1] < 0.01 * history[0]
    assert rec.residual == pytest.approx(history[-1], rel=1e-6)


# --- TV ------------------------------------------------------------------------------------
def test_tv_beats_zero_filled_on_undersampled_mri_of_real_slices(breast_mri):
    physics = MaskedFFT(line_mask(64, 4, 6, seed=0))
    y = physics.A(breast_mri)
    zero_filled = ZeroFilled().solve(y, physics).estimate
    rec = TotalVariation(weight=0.01, n_iter=200).solve(y, physics)
    gains = [
        psnr(rec.estimate[i, 0], breast_mri[i, 0], data_range=1.0)
        - psnr(zero_filled[i, 0], breast_mri[i, 0], data_range=1.0)
        for i in range(4)
    ]
    assert min(gains) > 0.3 and np.mean(gains) > 1.0
    assert rec.residual < 0.1  # still close to the data
    assert rec.estimate.dtype == torch.complex64 and rec.nfe == 0 and rec.seconds > 0


def test_tv_with_a_tiny_weight_is_data_consistent_inpainting(camera_small):
    mask = (torch.rand(camera_small.shape, generator=torch.Generator().manual_seed(4)) < 0.5).to(
        camera_small.dtype
    )
    physics = PixelMask(mask)
    rec = TotalVariation(weight=1e-4, n_iter=100).solve(physics.A(camera_small), physics)
    assert rec.residual < 0.01


def test_tv_3d_with_weight_z_zero_equals_slicewise_2d_tv(camera_small):
    volume = torch.stack([camera_small[..., :32, :32], camera_small[..., 32:64, 40:72]], dim=2)
    noisy = volume + 0.1 * torch.randn(volume.shape, generator=torch.Generator().manual_seed(5))
    identity_3d = PixelMask(torch.ones(()), spatial_dims=3)
    identity_2d = PixelMask(torch.ones(()))
    rec_3d = TotalVariation(weight=0.05, n_iter=100, weight_z=0.0).solve(noisy, identity_3d)
    # Slice-wise: the 2D solver on the D slices as a batch (same step sizes: ||grad|| for
    # weight_z = 0 equals the 2D bound).
    slices = noisy[:, :, :, :, :].permute(0, 2, 1, 3, 4).reshape(-1, 1, 32, 32)
    rec_2d = TotalVariation(weight=0.05, n_iter=100).solve(slices, identity_2d)
    assert torch.allclose(
        rec_3d.estimate.permute(0, 2, 1, 3, 4).reshape(-1, 1, 32, 32), rec_2d.estimate, atol=1e-10
    )
    coupled = TotalVariation(weight=0.05, n_iter=100, weight_z=1.0).solve(noisy, identity_3d)
    assert not torch.allclose(coupled.estimate, rec_3d.estimate)


def test_tv_nonnegative_constraint_gives_real_nonnegative_estimates(breast_mri):
    physics = MaskedFFT(line_mask(64, 4, 6, seed=1))
    rec = TotalVariation(weight=0.01, n_iter=50, constraint="nonnegative").solve(
        physics.A(breast_mri), physics
    )
    assert rec.estimate.dtype == torch.complex64
    assert torch.all(rec.estimate.imag == 0) and torch.all(rec.estimate.real >= 0)


def test_tv_diagonal_and_scalar_steps_reach_the_same_minimiser():
    generator = torch.Generator().manual_seed(6)
    matrix = torch.rand(40, 64, generator=generator, dtype=torch.float64)  # non-negative
    physics = DenseMatrix(matrix, (1, 8, 8))
    truth = torch.rand(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    y = physics.A(truth)
    results = {
        mode: TotalVariation(weight=0.05, n_iter=4000, preconditioning=mode).solve(y, physics)
        for mode in ("scalar", "diagonal", "auto")
    }
    assert results["auto"].info["preconditioning"] == "diagonal"
    # An all-positive matrix has one dominant singular value: scalar steps converge more
    # slowly there, which is what the diagonal preconditioners are for.
    objective = {mode: rec.info["objective"] for mode, rec in results.items()}
    assert objective["diagonal"] <= objective["scalar"] + 1e-9
    assert objective["scalar"] == pytest.approx(objective["diagonal"], rel=1e-3)
    assert torch.allclose(results["scalar"].estimate, results["diagonal"].estimate, atol=0.03)


def test_tv_diagonal_preconditioning_refuses_complex_operators(breast_mri):
    physics = MaskedFFT(line_mask(64, 4, 6, seed=0))
    solver = TotalVariation(n_iter=5, preconditioning="diagonal")
    with pytest.raises(InvalidInputError, match="scalar"):
        solver.solve(physics.A(breast_mri), physics)
    assert (
        TotalVariation(n_iter=5).solve(physics.A(breast_mri), physics).info["preconditioning"]
        == "scalar"
    )


def test_tv_rejects_bad_parameters():
    with pytest.raises(InvalidInputError, match="constraint"):
        TotalVariation(constraint="positive")
    with pytest.raises(InvalidInputError, match=">= 0"):
        TotalVariation(weight=-1.0)


# --- Richardson-Lucy -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def microscopy_crop(microscopy_dir: Path) -> np.ndarray:
    """A 96x96 crop of the real BPAE nuclei image, scaled to [0, 1], float64."""
    import tifffile

    image = tifffile.imread(microscopy_dir / "BPAE_nuclei.tif")[300:396, 500:596]
    image = image.astype(np.float64)
    return (image - image.min()) / (image.max() - image.min())


@pytest.mark.parametrize("source", ["coins", "microscopy"])
def test_richardson_lucy_matches_skimage(source, request):
    image = (
        coins()[::3, ::3] / 255.0
        if source == "coins"
        else request.getfixturevalue("microscopy_crop")
    )
    psf = gaussian_psf(9, 1.5)
    physics = SameConvolution(psf)
    blurred = physics.A(torch.from_numpy(image)[None, None])
    ours = RichardsonLucy(n_iter=20, normalize=False).solve(blurred, physics).estimate
    theirs = richardson_lucy(blurred[0, 0].numpy(), psf.numpy(), num_iter=20, clip=False)
    assert np.allclose(ours[0, 0].numpy(), theirs, rtol=1e-8, atol=1e-10)


def test_richardson_lucy_normalisation_is_exact_for_a_circular_blur(camera_small):
    physics = CircularBlur(gaussian_psf(128, 1.5))
    y = physics.A(camera_small)
    normalised = RichardsonLucy(n_iter=10).solve(y, physics)
    plain = RichardsonLucy(n_iter=10, normalize=False).solve(y, physics)
    assert torch.allclose(normalised.estimate, plain.estimate, rtol=1e-10)
    assert normalised.estimate.min() >= 0
    assert psnr(normalised.estimate, camera_small, data_range=1.0) > psnr(
        y, camera_small, data_range=1.0
    )


def test_richardson_lucy_rejects_complex_measurements(breast_mri):
    physics = MaskedFFT(line_mask(64, 4, 6, seed=0))
    with pytest.raises(InvalidInputError, match="complex"):
        RichardsonLucy().solve(physics.A(breast_mri), physics)


# --- biharmonic ----------------------------------------------------------------------------
def test_biharmonic_fills_a_box_and_keeps_the_observed_pixels(camera_small):
    mask = torch.ones_like(camera_small)
    mask[..., 50:70, 60:80] = 0
    physics = PixelMask(mask)
    y = physics.A(camera_small)
    rec = Biharmonic().solve(y, physics)
    box = (slice(None), slice(None), slice(50, 70), slice(60, 80))
    error_filled = (rec.estimate[box] - camera_small[box]).abs().mean()
    error_zero = camera_small[box].abs().mean()
    assert error_filled < 0.6 * error_zero
    assert rec.residual == pytest.approx(0.0, abs=1e-12)
    expected = inpaint_biharmonic(y[0, 0].numpy(), (mask[0, 0] == 0).numpy())
    assert np.allclose(rec.estimate[0, 0].numpy(), expected)


def test_biharmonic_rejects_physics_without_a_mask(camera_small):
    physics = CircularBlur(gaussian_psf(128, 1.5))
    with pytest.raises(InvalidInputError, match="mask"):
        Biharmonic().solve(physics.A(camera_small), physics)


# --- common behaviour ----------------------------------------------------------------------
def test_same_seed_gives_the_same_result(breast_mri):
    physics = MaskedFFT(line_mask(64, 8, 4, seed=2))
    y = physics.A(breast_mri[:1])
    runs = [
        TotalVariation(weight=0.01, n_iter=30).solve(
            y, physics, generator=torch.Generator().manual_seed(0)
        )
        for _ in range(2)
    ]
    assert torch.equal(runs[0].estimate, runs[1].estimate)


def test_callbacks_are_called_each_iteration(camera_small):
    physics = CircularBlur(gaussian_psf(128, 1.5))
    y = physics.A(camera_small)
    for solver in (TotalVariation(n_iter=7), RichardsonLucy(n_iter=7)):
        steps: list[int] = []
        rec = solver.solve(y, physics, callback=lambda k, x, steps=steps: steps.append(k))
        assert steps == list(range(7)) and rec.iterations == 7


def test_registry_builds_every_solver_and_rejects_unknown_names():
    assert {"zero_filled", "cg", "tv", "biharmonic", "richardson_lucy"} <= set(SOLVERS)
    for name, cls in SOLVERS.items():
        solver = get_solver(name)
        assert isinstance(solver, cls) and isinstance(solver, Solver) and solver.name == name
    with pytest.raises(InvalidInputError, match="unknown solver"):
        get_solver("admm")
    with pytest.raises(InvalidInputError, match="bad parameters"):
        get_solver("tv", lambda_=3)


@pytest.mark.parametrize("name", ["zero_filled", "cg", "tv", "biharmonic", "richardson_lucy"])
def test_solver_configs_instantiate_their_solver(name):
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    solver = instantiate(OmegaConf.load(CONFIGS / f"{name}.yaml"))
    assert isinstance(solver, SOLVERS[name])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_tv_and_richardson_lucy_run_on_gpu_like_on_cpu(camera_small):
    physics = CircularBlur(gaussian_psf(128, 1.5))
    y = physics.A(camera_small)
    for solver in (TotalVariation(weight=0.01, n_iter=50), RichardsonLucy(n_iter=10)):
        on_cpu = solver.solve(y, physics).estimate
        physics_gpu = CircularBlur(gaussian_psf(128, 1.5))
        physics_gpu.otf = physics_gpu.otf.cuda()
        on_gpu = solver.solve(y.cuda(), physics_gpu).estimate
        assert on_gpu.is_cuda
        assert torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-8)
