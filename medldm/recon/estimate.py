"""Time and memory estimate printed before a reconstruction (and all ``dry_run`` does).

Time is *measured*, not guessed: one UNet evaluation, one decode and one encode are timed
on the actual device with the actual batch (slices x samples) and latent size, then
multiplied by the solver's number of steps; the baseline and the I/O are not included.
Memory: the largest of the network activations (measured on CUDA; on CPU approximated as
the batch's latent and image tensors times a factor) and the prior's weights.

Example
-------
>>> from medldm.models.testing import tiny_prior
>>> estimate = estimate_cost(tiny_prior(), n_images=2, image_shape=(16, 16), n_samples=2,
...                          n_steps=10, slice_batch=True)
>>> estimate.seconds > 0, estimate.nfe
(True, 10)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from medldm.solvers.latent_base import LatentSolverBase


@dataclass(frozen=True)
class CostEstimate:
    seconds: float
    memory_mb: float
    nfe: int
    batch: int

    def describe(self) -> str:
        return (
            f"estimated {self.seconds:.0f} s and about {self.memory_mb:.0f} MB for "
            f"{self.nfe} network evaluations on a batch of {self.batch} latents"
        )


def solver_nfe(solver: LatentSolverBase) -> int:
    """Network evaluations per sample of a configured LDM solver, as it declares them
    (:attr:`~medldm.solvers.latent_base.LatentSolverBase.nfe_per_sample`)."""
    return int(solver.nfe_per_sample)


@torch.no_grad()
def estimate_cost(
    prior: Any,
    *,
    n_images: int,
    image_shape: tuple[int, ...],
    n_samples: int,
    n_steps: int,
    slice_batch: bool = True,
    backprop: bool = False,
) -> CostEstimate:
    """Time one network evaluation + decode + encode on the real batch and scale it."""
    factor = prior.size_multiple
    padded = tuple(-(-s // factor) * factor for s in image_shape[-prior.spatial_dims :])
    batch = n_images * n_samples
    latent = torch.zeros((batch, *prior.latent_shape(padded)), device=prior.device)
    image = torch.zeros((batch, 1, *padded), device=prior.device)
    if prior.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(prior.device)
    nfe_before = prior.nfe
    start = time.perf_counter()
    prior.predict_eps(latent, prior.num_train_timesteps // 2)
    prior.encode(image)
    prior.decode(latent)
    if prior.device.type == "cuda":
        torch.cuda.synchronize(prior.device)
    per_step = time.perf_counter() - start
    prior.nfe = nfe_before
    seconds = per_step * n_steps * (3.0 if backprop else 1.0)
    weights = sum(p.numel() * p.element_size() for p in prior.autoencoder.parameters())
    if prior.unet is not None:
        weights += sum(p.numel() * p.element_size() for p in prior.unet.parameters())
    if prior.device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(prior.device)
    else:
        memory = weights + 40 * image.numel() * 4 * (3 if backprop else 1)
    return CostEstimate(seconds, memory / 2**20, int(n_steps), batch)
