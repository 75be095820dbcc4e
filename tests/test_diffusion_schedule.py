"""The DDIM step and the noise-schedule arithmetic, written once in
medldm.models.schedule and used by Prior.sample and every latent solver; the prior
protocol the solvers are typed with; what latent solvers declare about their cost."""

from __future__ import annotations

import pytest
import torch

from medldm.errors import InvalidInputError
from medldm.models.prior_protocol import LatentPrior
from medldm.models.schedule import (
    ddim_sigma,
    ddim_step,
    forward_diffuse,
    gaussian_like,
    timestep_pairs,
    tweedie_x0,
)
from medldm.models.testing import tiny_prior
from medldm.physics.inpainting import Inpainting
from medldm.solvers import SOLVERS, LatentDAPS, LatentDDS, LatentDPS, ReSample
from medldm.solvers.ddim import ddim_update
from medldm.solvers.registry import LATENT


def _levels(dtype=torch.float64):
    return torch.tensor(0.3, dtype=dtype), torch.tensor(0.8, dtype=dtype)


def test_ddim_step_from_the_tweedie_estimate_is_the_ddim_update_with_the_predicted_noise():
    generator = torch.Generator().manual_seed(0)
    z_t, eps, noise = (
        torch.randn(2, 4, 3, 3, generator=generator, dtype=torch.float64) for _ in "abc"
    )
    a_t, a_prev = _levels()
    z0 = tweedie_x0(z_t, eps, a_t)
    sigma = ddim_sigma(a_t, a_prev, 0.7)
    expected = a_prev.sqrt() * z0 + (1 - a_prev - sigma**2).sqrt() * eps + sigma * noise
    assert torch.allclose(ddim_step(z_t, z0, a_t, a_prev, eta=0.7, noise=noise), expected)
    assert torch.allclose(forward_diffuse(z0, a_t, eps), z_t)


def test_ddim_step_to_the_clean_level_returns_z0_and_eta_one_is_ddpm():
    z_t, z0 = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    a_t, a_prev = _levels(torch.float32)
    assert torch.equal(ddim_step(z_t, z0, a_t, torch.tensor(1.0)), z0)
    # eta = 1: the posterior standard deviation of DDPM's ancestral step.
    beta = 1 - a_t / a_prev
    expected = ((1 - a_prev) / (1 - a_t) * beta).sqrt()
    assert torch.allclose(ddim_sigma(a_t, a_prev, 1.0), expected)


def test_a_stochastic_ddim_step_without_noise_is_refused():
    a_t, a_prev = _levels()
    with pytest.raises(InvalidInputError, match="needs standard normal noise"):
        ddim_step(torch.zeros(1), torch.zeros(1), a_t, a_prev, eta=0.5)


def test_timestep_pairs_end_with_none():
    assert timestep_pairs([9, 5, 0]) == [(9, 5), (5, 0), (0, None)]


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_prior_sample_is_predict_x0_then_the_shared_ddim_step(eta):
    prior = tiny_prior()
    sampled = prior.sample(2, n_steps=4, generator=torch.Generator().manual_seed(3), eta=eta)

    generator = torch.Generator().manual_seed(3)
    z = gaussian_like(torch.empty(2, *prior.latent_shape()), generator)
    for t, t_prev in timestep_pairs(prior.ddim_timesteps(4)):
        z0 = prior.predict_x0(z, t)
        a_prev = prior.alpha_bar(t_prev) if t_prev is not None else torch.tensor(1.0)
        noise = gaussian_like(z, generator)
        z = ddim_step(z, z0, prior.alpha_bar(t), a_prev, eta=eta, noise=noise)
    assert torch.equal(sampled, prior.decode(z))


def test_the_solvers_ddim_update_is_the_shared_step_on_the_priors_schedule():
    prior = tiny_prior()
    z_t, z0 = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    got = ddim_update(prior, z_t, z0, 800, 400, eta=0.5, generator=torch.Generator().manual_seed(1))
    noise = gaussian_like(z_t, torch.Generator().manual_seed(1))
    expected = ddim_step(z_t, z0, prior.alpha_bar(800), prior.alpha_bar(400), eta=0.5, noise=noise)
    assert torch.equal(got, expected)
    assert torch.equal(ddim_update(prior, z_t, z0, 10, None), z0)


def test_the_shipped_prior_class_satisfies_the_protocol_and_other_objects_are_refused():
    prior = tiny_prior()
    assert isinstance(prior, LatentPrior) and prior.has_diffusion_model
    assert not tiny_prior(with_unet=False).has_diffusion_model
    physics = Inpainting(torch.ones(16, 16, dtype=torch.bool))
    y = physics.A(torch.rand(1, 1, 16, 16))
    with pytest.raises(InvalidInputError, match="needs a trained LDM prior"):
        LatentDDS(n_steps=2).solve(y, physics, object())  # type: ignore[arg-type]


def test_latent_solvers_declare_their_network_evaluations_and_backpropagation():
    assert {cls.name for cls in LATENT} <= set(SOLVERS)
    assert LatentDDS(n_steps=12).nfe_per_sample == 12
    assert LatentDAPS(n_anneal=7, n_ode=3).nfe_per_sample == 21
    # the option a dry run varies to time the outer loop
    assert LatentDDS.schedule_option == "n_steps" and LatentDAPS.schedule_option == "n_anneal"
    assert all(hasattr(cls(), cls.schedule_option) for cls in LATENT)
    assert not LatentDDS().backpropagates and LatentDPS().backpropagates
    assert LatentDAPS().backpropagates and SOLVERS["psld"]().backpropagates
    assert ReSample(mode="both").backpropagates and not ReSample(mode="pixel").backpropagates
