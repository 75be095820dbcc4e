"""The latent-diffusion solvers on every operator, in 2D and 3D, with tiny untrained priors
(medldm.models.testing): these test the machinery (shapes, phase, padding, slicing,
samples/std, data consistency, NFE, errors), not reconstruction quality — that is measured
with the trained priors in benchmarks/."""

from __future__ import annotations

import pytest
import torch

from medldm.errors import InvalidInputError, MedLDMError
from medldm.models.testing import save_tiny_prior, tiny_prior
from medldm.physics.factory import (
    CTFactory,
    InpaintingFactory,
    MRIPhysicsFactory,
)
from medldm.physics.inpainting import Inpainting
from medldm.solvers import (
    PSLD,
    LatentDAPS,
    LatentDDS,
    LatentDPS,
    ReSample,
    get_solver,
    needs_prior,
)
from medldm.solvers.latent_problem import LatentProblem

FAST = {
    "latent_dds": lambda: LatentDDS(n_steps=3, n_samples=2),
    "latent_dps": lambda: LatentDPS(n_steps=3, n_samples=2),
    "psld": lambda: PSLD(n_steps=3, n_samples=2),
    "resample": lambda: ReSample(
        n_steps=4, skip=1, dc_window=(0.0, 1.0), latent_iter=2, cg_iter=3, n_samples=2
    ),
    "latent_daps": lambda: LatentDAPS(n_anneal=3, n_ode=2, n_langevin=2, n_samples=2),
}


def _phantom(shape: tuple[int, ...]) -> torch.Tensor:
    """A smooth positive blob image in [0, 1], ``(1, 1, *shape)``."""
    axes = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    radius2 = sum(a**2 for a in axes)
    return (0.8 * torch.exp(-3 * radius2) + 0.1 * (axes[0] > 0)).reshape(1, 1, *shape)


def _case(factory, shape, seed=0):
    generator = torch.Generator().manual_seed(seed)
    physics = factory.build(shape, generator, "cpu")
    x = factory.prepare_object(_phantom(shape), generator)
    return physics, physics(x, generator), x


OPERATORS = {
    "mri": MRIPhysicsFactory(acceleration=4, center_fraction=0.15, noise_sigma=0.005),
    "ct": CTFactory(n_views=12),
    "inpaint": InpaintingFactory(kind="box", box_fraction=0.3),
}


@pytest.mark.parametrize("name", sorted(FAST))
@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_every_latent_solver_runs_on_every_operator(name, operator):
    physics, y, _ = _case(OPERATORS[operator], (16, 16))
    rec = FAST[name]().solve(y, physics, tiny_prior(), generator=torch.Generator().manual_seed(1))
    assert rec.estimate.shape == (1, 1, 16, 16)
    assert rec.estimate.is_complex() == y.is_complex()  # MRI gets its phase back
    assert rec.samples.shape == (2, 1, 1, 16, 16) and rec.std.shape == (1, 1, 16, 16)
    assert torch.isfinite(rec.estimate).all() and torch.isfinite(rec.std).all()
    assert 1 <= rec.nfe <= 8 and rec.seconds > 0 and rec.info["n_samples"] == 2
    assert rec.residual == pytest.approx(physics.residual(rec.estimate, y))


@pytest.mark.parametrize("name", sorted(FAST))
def test_same_generator_seed_gives_the_same_reconstruction(name):
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    runs = [
        FAST[name]().solve(y, physics, tiny_prior(), generator=torch.Generator().manual_seed(3))
        for _ in range(2)
    ]
    assert torch.allclose(runs[0].estimate, runs[1].estimate, atol=1e-5)


def test_final_data_consistency_fits_the_measured_pixels():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    solver = LatentDDS(n_steps=2, n_samples=1, final_dc_weight=1e-4)
    rec = solver.solve(y, physics, tiny_prior())
    without = LatentDDS(n_steps=2, n_samples=1, final_dc=False, dc_weight=10.0)
    loose = without.solve(y, physics, tiny_prior())
    assert rec.residual < 0.01 < loose.residual


def test_std_is_higher_inside_the_box_than_on_measured_pixels():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    rec = LatentDDS(n_steps=4, n_samples=4, final_dc_weight=1e-3).solve(
        y, physics, tiny_prior(), generator=torch.Generator().manual_seed(0)
    )
    mask = physics.mask.expand_as(rec.std) > 0
    assert rec.std[~mask].mean() > 10 * rec.std[mask].mean()


def test_image_sizes_that_are_not_a_multiple_of_the_downsampling_factor_are_padded():
    physics, y, _ = _case(OPERATORS["mri"], (18, 22))
    rec = LatentDDS(n_steps=2, n_samples=1).solve(y, physics, tiny_prior())
    assert rec.estimate.shape == (1, 1, 18, 22)


def test_a_volume_with_a_2d_prior_is_solved_slice_by_slice_and_coupled():
    factory = MRIPhysicsFactory(acceleration=4, center_fraction=0.2, noise_sigma=0.0)
    physics, y, _ = _case(factory, (8, 16, 16))
    problem = LatentProblem(y, physics, tiny_prior(), slice_axis=0)
    u = torch.rand(1, 1, 8, 16, 16)
    batch = problem.to_prior_batch(u)
    assert batch.shape == (8, 1, 16, 16)
    assert torch.equal(problem.from_prior_batch(batch), u)
    for axis in (0, 1, 2):
        other = LatentProblem(y, physics, tiny_prior(), slice_axis=axis)
        assert torch.equal(other.from_prior_batch(other.to_prior_batch(u)), u)
    rec = LatentDDS(n_steps=2, n_samples=2, slice_weight=0.5, slice_axis=0).solve(
        y, physics, tiny_prior()
    )
    assert rec.estimate.shape == (1, 1, 8, 16, 16) and rec.std.shape == (1, 1, 8, 16, 16)


def test_slice_coupling_smooths_along_the_slice_axis():
    mask = torch.zeros(1, 1, 4, 8, 8, dtype=torch.bool)
    mask[..., -1, -1, -1] = True  # one corner pixel: the anchor and the coupling do the rest
    physics = Inpainting(mask, spatial_dims=3)
    anchor = torch.zeros(1, 1, 4, 8, 8)
    anchor[:, :, 1] = 1.0
    problem = LatentProblem(
        physics(torch.zeros(1, 1, 4, 8, 8)), physics, slice_axis=0, downsampling_factor=4
    )
    plain = problem.data_consistency(anchor, 1.0, n_iter=50)
    coupled = problem.data_consistency(anchor, 1.0, n_iter=50, slice_weight=1.0)
    assert torch.allclose(plain[..., :3, :, :], anchor[..., :3, :, :], atol=1e-5)
    assert coupled[:, :, 0].mean() > 0.1 and coupled[:, :, 1].mean() < 0.9


def test_native_3d_prior_on_a_volume():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16, 16))
    rec = LatentDDS(n_steps=2, n_samples=1).solve(y, physics, tiny_prior(spatial_dims=3))
    assert rec.estimate.shape == (1, 1, 16, 16, 16)


def test_slicewise_ct_volume_with_a_2d_prior():
    physics, y, _ = _case(CTFactory(n_views=10), (3, 16, 16))
    rec = LatentDDS(n_steps=2, n_samples=1, slice_axis=0, slice_weight=0.1).solve(
        y, physics, tiny_prior()
    )
    assert rec.estimate.shape == (1, 1, 3, 16, 16) and torch.isfinite(rec.estimate).all()


def test_a_3d_prior_refuses_a_2d_image():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    with pytest.raises(InvalidInputError, match="3D prior"):
        LatentDDS(n_steps=2).solve(y, physics, tiny_prior(spatial_dims=3))


@pytest.mark.parametrize("name", sorted(FAST))
def test_latent_solvers_need_a_prior_with_a_diffusion_model(name):
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    assert needs_prior(name) and not needs_prior("tv")
    with pytest.raises(InvalidInputError, match="needs a trained LDM prior"):
        get_solver(name).solve(y, physics, None)
    with pytest.raises(InvalidInputError, match="no diffusion model"):
        get_solver(name).solve(y, physics, tiny_prior(with_unet=False))


def test_a_diverging_solver_stops_with_a_clear_error():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    with pytest.raises(MedLDMError, match="NaN/Inf"):
        LatentDPS(n_steps=6, step_size=1e30, n_samples=1).solve(y, physics, tiny_prior())


def test_nan_measurements_are_reported_not_propagated():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    y = y.clone()
    y[..., 0, 0] = float("nan")
    with pytest.raises(MedLDMError, match="NaN/Inf"):
        LatentDDS(n_steps=2, n_samples=1).solve(y, physics, tiny_prior())


def test_fit_normalization_undoes_the_intensity_scale():
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    prior = tiny_prior()
    scaled = LatentProblem(1000 * y, physics, prior, normalization="fit")
    plain = LatentProblem(y, physics, prior, normalization="none")
    assert scaled.span > 100 and plain.span == 1.0
    with pytest.raises(InvalidInputError, match="normalization"):
        LatentProblem(y, physics, prior, normalization="zscore")


@pytest.mark.parametrize("name", sorted(FAST))
def test_solver_presets_instantiate_their_solver(name):
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from medldm.solvers import SOLVERS

    configs = Path(__file__).resolve().parents[1] / "configs" / "solver"
    for preset in sorted(configs.glob(f"{name}*.yaml")):
        solver = instantiate(OmegaConf.load(preset))
        assert isinstance(solver, SOLVERS[name]), preset.name


def test_bench_runs_a_latent_solver_with_a_prior_folder(tmp_path):
    from medldm.bench.cli import load_bench_prior

    folder = save_tiny_prior(tmp_path / "tiny")
    loaded = load_bench_prior(str(folder), "cpu")
    physics, y, _ = _case(OPERATORS["inpaint"], (16, 16))
    rec = get_solver("latent_dds", n_steps=2, n_samples=1).solve(y, physics, loaded)
    assert rec.nfe == 2
    assert load_bench_prior(None, "cpu") is None
    with pytest.raises(MedLDMError, match="no prior named"):
        load_bench_prior("no_such_prior", "cpu")


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_tv_regularised_final_step_fits_data_and_keeps_shapes(operator):
    physics, y, _ = _case(OPERATORS[operator], (16, 16))
    prior = tiny_prior()
    # the same samples in both solves, so that only the final TV step differs
    plain = LatentDDS(n_steps=2, n_samples=2).solve(
        y, physics, prior, generator=torch.Generator().manual_seed(0)
    )
    with_tv = LatentDDS(n_steps=2, n_samples=2, final_tv_weight=0.002).solve(
        y, physics, prior, generator=torch.Generator().manual_seed(0)
    )
    assert with_tv.estimate.shape == plain.estimate.shape
    assert with_tv.info["final_tv_weight"] == 0.002
    assert torch.isfinite(with_tv.estimate).all()

    def total_variation(image: torch.Tensor) -> float:
        image = image.abs()
        return float(image.diff(dim=-1).abs().sum() + image.diff(dim=-2).abs().sum())

    assert total_variation(with_tv.estimate) < total_variation(plain.estimate)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_wavelet_final_step_fits_data_and_changes_the_estimate(operator):
    """The anchored wavelet step runs on every operator, is reported, keeps the data fit
    and changes the posterior mean (its haze removal itself: the module's doctest)."""
    physics, y, _ = _case(OPERATORS[operator], (16, 16))
    prior = tiny_prior()

    def solve(**options):
        solver = LatentDDS(n_steps=2, n_samples=2, **options)
        return solver.solve(y, physics, prior, generator=torch.Generator().manual_seed(3))

    plain, sparse = solve(), solve(final_wavelet_weight=0.01)
    assert sparse.estimate.shape == plain.estimate.shape
    assert sparse.info["final_wavelet_weight"] == 0.01 and sparse.info["final_tv_weight"] == 0
    assert torch.isfinite(sparse.estimate).all()
    assert not torch.allclose(sparse.estimate, plain.estimate)
    assert sparse.residual < 0.1  # relative: the data still fit to 10 %


def test_the_final_step_takes_tv_or_wavelets_not_both():
    with pytest.raises(MedLDMError, match="TV or wavelets"):
        LatentDDS(final_tv_weight=0.001, final_wavelet_weight=0.001)
    for bad in (-1.0, float("nan")):
        with pytest.raises(MedLDMError, match="must be >= 0"):
            LatentDDS(final_wavelet_weight=bad)


def test_anchored_physics_adjoint_is_exact_and_starts_from_the_anchor():
    from medldm.physics.anchored import AnchoredPhysics

    physics, y, _ = _case(OPERATORS["ct"], (16, 16))
    anchor = torch.rand(2, 1, 16, 16)
    anchored = AnchoredPhysics(physics, 0.3, anchor, (2, *y.shape[1:]))
    x = torch.rand(2, 1, 16, 16)
    r = anchored.measurement(torch.rand(2, *y.shape[1:]))
    lhs = (anchored.A(x) * r).sum()
    rhs = (x * anchored.A_adjoint(r)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-4)
    assert torch.equal(anchored.x_init(r), anchor)
    assert anchored.residual_over_noise(x, r) is None


def test_starting_from_the_noised_direct_reconstruction():
    physics, y, _ = _case(OPERATORS["mri"], (16, 16))
    rec = LatentDDS(n_steps=3, n_samples=1, start_fraction=0.4).solve(y, physics, tiny_prior())
    assert rec.nfe == 3 and rec.info["start_fraction"] == 0.4
    with pytest.raises(InvalidInputError, match="start_fraction"):
        LatentDDS(start_fraction=0.0)


@pytest.mark.parametrize("operator", ["mri", "ct"])
def test_tv_reconstruction_of_the_problem_is_the_tv_solver_on_its_real_physics(operator):
    """The TV start image: real and non-negative in image space (MRI through the phase
    constraint), and closer to the object than the direct reconstruction."""
    from medldm.solvers.tv import TotalVariation

    physics, y, x = _case(OPERATORS[operator], (16, 16))
    problem = LatentProblem(y, physics, tiny_prior())
    start = problem.tv_reconstruction(0.01, n_iter=200)
    expected = TotalVariation(0.01, 200, constraint="nonnegative").solve(y, problem.physics)
    assert not start.is_complex() and start.shape == problem.x_init.shape
    assert torch.allclose(start, expected.estimate) and bool((start >= 0).all())
    truth = x.abs()
    assert (start - truth).norm() < (problem.x_init - truth).norm()


def test_starting_from_the_noised_tv_reconstruction(monkeypatch):
    """start_tv_weight > 0 with start_fraction < 1 encodes the TV reconstruction (once per
    solve, repeated over the samples) instead of the direct one; ignored from pure noise."""
    physics, y, _ = _case(OPERATORS["ct"], (16, 16))
    calls = []
    original = LatentProblem.tv_reconstruction

    def spy(self, tv_weight, **kwargs):
        calls.append(tv_weight)
        return original(self, tv_weight, **kwargs)

    monkeypatch.setattr(LatentProblem, "tv_reconstruction", spy)
    solver = LatentDDS(n_steps=3, n_samples=2, start_fraction=0.4, start_tv_weight=0.02)
    rec = solver.solve(y, physics, tiny_prior(), generator=torch.Generator().manual_seed(0))
    assert calls == [0.02] and rec.info["start_tv_weight"] == 0.02
    assert rec.samples.shape == (2, 1, 1, 16, 16)
    LatentDDS(n_steps=3, n_samples=1, start_tv_weight=0.02).solve(y, physics, tiny_prior())
    assert calls == [0.02]  # start_fraction 1: from noise, no TV start
    with pytest.raises(InvalidInputError, match="start_tv_weight"):
        LatentDDS(start_tv_weight=-1.0)


def test_shipped_prior_std_is_higher_inside_an_inpainted_box_on_a_real_brain():
    """The trained brain_t1_2d prior on a real brain slice (MNI152, nilearn): the posterior
    std inside the missing box exceeds the std on measured pixels several times over."""
    import numpy as np

    from medldm.io import load
    from medldm.models import load_prior
    from medldm.problems.grid import GridPlan
    from medldm.recon.examples import example_input

    volume = load(example_input("mni152_t1_2mm"))
    array = np.asarray(volume.array, np.float32)
    stack = array[:, :, array.shape[2] // 2].T[None] / np.percentile(array, 99.5)
    working = GridPlan.make(stack.shape, (2.0, 2.0), size=(128, 128), spacing_mm=2.0)
    x = torch.from_numpy(working.to_working(stack))[:, None]
    factory = InpaintingFactory(kind="box", box_fraction=0.3)
    generator = torch.Generator().manual_seed(0)
    physics = factory.build((128, 128), generator, "cpu")
    y = physics(x, generator)
    rec = LatentDDS(n_steps=10, n_samples=3).solve(
        y, physics, load_prior("brain_t1_2d", device="cpu"), generator=generator
    )
    mask = physics.mask.expand_as(rec.std) > 0
    inside, outside = rec.std[~mask].mean(), rec.std[mask].mean()
    assert inside > 5 * outside, (float(inside), float(outside))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_dpm_solver_sampler_runs_with_one_network_call_per_step(eta):
    physics, y, _ = _case(OPERATORS["mri"], (16, 16))
    solver = LatentDDS(n_steps=4, n_samples=2, sampler="dpm++2m", eta=eta)
    rec = solver.solve(y, physics, tiny_prior(), generator=torch.Generator().manual_seed(0))
    assert rec.nfe == 4 and rec.info["sampler"] == "dpm++2m"
    assert torch.isfinite(rec.estimate).all()


def test_the_dpm_solver_sampler_differs_from_ddim_after_its_first_step():
    physics, y, _ = _case(OPERATORS["mri"], (16, 16))

    def estimate(sampler: str, steps: int) -> torch.Tensor:
        solver = LatentDDS(n_steps=steps, n_samples=1, sampler=sampler, eta=0.0)
        generator = torch.Generator().manual_seed(0)
        return solver.solve(y, physics, tiny_prior(), generator=generator).estimate

    # one step: both return the data-consistent Tweedie estimate; later the second-order
    # correction from the previous step's clean latent moves DPM-Solver++ away from DDIM
    assert torch.allclose(estimate("ddim", 1), estimate("dpm++2m", 1))
    assert not torch.allclose(estimate("ddim", 4), estimate("dpm++2m", 4))


def test_an_unknown_sampler_is_refused_with_the_choices():
    with pytest.raises(InvalidInputError, match="unknown sampler"):
        LatentDDS(sampler="euler")
