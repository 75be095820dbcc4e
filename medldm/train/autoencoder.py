"""Stage 1: train the KL autoencoder (MONAI ``AutoencoderKL``).

Loss per step, on images ``x`` in ``[0, 1]``::

    L = |x_hat - x|_1 + w_ssim (1 - SSIM) + w_freq |F x_hat - F x|_1 + w_kl KL(q(z|x) || N(0, I))
        + w_adv * least-squares PatchGAN loss (MONAI PatchDiscriminator), from ``adv_start``

with EMA of the weights, gradient clipping, bf16 autocast where the hardware runs it natively
(CUDA, or a CPU with AVX512-BF16/AMX: ``precision="auto"``), validation PSNR/SSIM
on validation subjects (data range = ground truth max - min, EMA weights), resumable
state every ``checkpoint_every`` steps and the EMA autoencoder exported as a prior
checkpoint (``<run>/prior``) that stage 2 starts from.

With the block-PCA shortcut (``AutoencoderConfig.shortcut = "block_pca"``), a fresh run
first fits the shortcut on the (unaugmented) training images, so step 0 is the linear codec.
A :class:`~medldm.train.loop.StopRequest` (SIGTERM/SIGINT or a deadline) ends the run at
the next step with a checkpoint, ready to resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from medldm.errors import InvalidInputError
from medldm.models.checkpoint import save_prior_checkpoint
from medldm.models.config import LDMConfig, build_autoencoder
from medldm.models.precision import autocast, resolve_precision
from medldm.train.data import build_training_data
from medldm.train.loop import (
    EMA,
    BatchSampler,
    StopRequest,
    TrainingLog,
    barrier,
    check_replicas_identical,
    init_distributed,
    load_training_state,
    restore_training_state,
    save_training_state,
    seed_everything,
    start_from_prior,
    warm_start,
    wrap_ddp,
)


@dataclass
class AutoencoderTraining:
    """Hyper-parameters of stage 1 (the Hydra config ``configs/train/autoencoder.yaml``)."""

    steps: int = 20_000
    batch_size: int = 16
    lr: float = 2e-4
    kl_weight: float = 1e-6
    ssim_weight: float = 0.0
    frequency_weight: float = 0.0
    adv_weight: float = 0.0
    adv_start: int = 5_000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    precision: str = "auto"
    seed: int = 0
    log_every: int = 50
    validate_every: int = 1_000
    checkpoint_every: int = 500
    n_validation: int = 64
    resume: bool = True
    init_from: str | None = None
    # a new prior's starting weights: this stage's network of another prior (shipped name
    # or folder), at step 0 (transfer learning; init_from, a run's own milestone, wins)
    init_weights: str | None = None
    device: str = "auto"
    data_card: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def kl_divergence(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) summed over latent elements, averaged over the batch."""
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1.0)
    return kl.flatten(1).sum(dim=1).mean()


def frequency_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """L1 distance of the orthonormal spectra: penalises lost high frequencies (blur)."""
    dims = tuple(range(2, x.ndim))
    return (
        (torch.fft.fftn(x_hat, dim=dims, norm="ortho") - torch.fft.fftn(x, dim=dims, norm="ortho"))
        .abs()
        .mean()
    )


@torch.no_grad()
def validate_autoencoder(
    autoencoder, images: torch.Tensor, batch_size: int = 16
) -> dict[str, float]:
    """Mean PSNR/SSIM of reconstructions (posterior mean) of ``images`` (N, 1, *spatial),
    data range = each ground truth's max - min (medldm.metrics convention)."""
    from medldm.metrics import psnr, ssim

    device = next(autoencoder.parameters()).device
    psnrs, ssims = [], []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        mu, _ = autoencoder.encode(x)
        x_hat = autoencoder.decode(mu).clamp(0, 1).cpu().numpy()
        for estimate, truth in zip(x_hat[:, 0], x.cpu().numpy()[:, 0], strict=True):
            if truth.max() > truth.min():
                psnrs.append(psnr(estimate, truth))
                ssims.append(ssim(estimate, truth))
    return {"val_psnr": float(np.mean(psnrs)), "val_ssim": float(np.mean(ssims))}


def train_autoencoder(
    model: LDMConfig,
    training: AutoencoderTraining,
    run_dir: str | Path,
    stop: StopRequest | None = None,
    on_checkpoint: Callable[[Path, int, bool], None] | None = None,
) -> Path:
    """Train stage 1; return the exported prior folder (``<run_dir>/prior``).

    With ``stop``, the run ends early at a checkpoint when a stop is requested;
    ``on_checkpoint(prior_dir, step, final)`` is called after each export (rank 0). Without
    a saved state, ``training.init_from`` (a prior checkpoint folder) gives the starting
    weights and step (a warm start with a fresh optimizer); else ``training.init_weights``
    (another prior) gives starting weights at step 0."""
    run_dir = Path(run_dir)
    context = init_distributed(training.device)
    numpy_rng = seed_everything(training.seed, context)
    data = build_training_data(**training.data)
    if data.train.positions:
        raise InvalidInputError(
            "position maps (data.positions: true) are for the diffusion stage only",
            fix="train the autoencoder without them, or take another prior's (autoencoder_from)",
        )
    device = context.device

    autoencoder = build_autoencoder(model.autoencoder)
    if hasattr(autoencoder, "fit_shortcut"):  # fresh weights; a resumed state overwrites them
        autoencoder.fit_shortcut(data.train.images)
    autoencoder = autoencoder.to(device)
    ema = EMA(autoencoder, training.ema_decay)
    ddp_autoencoder = wrap_ddp(autoencoder, context)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=training.lr)
    modules: dict[str, torch.nn.Module] = {"autoencoder": autoencoder, "ema": ema.module}
    optimizers: dict[str, torch.optim.Optimizer] = {"autoencoder": optimizer}
    discriminator = None
    if training.adv_weight > 0:
        from monai.losses import PatchAdversarialLoss
        from monai.networks.nets import PatchDiscriminator

        discriminator = PatchDiscriminator(
            spatial_dims=model.autoencoder.spatial_dims,
            channels=32,
            in_channels=1,
            num_layers_d=3,
            norm="INSTANCE",
        ).to(device)
        ddp_discriminator = wrap_ddp(discriminator, context)
        adversarial = PatchAdversarialLoss(criterion="least_squares")
        disc_optimizer = torch.optim.Adam(discriminator.parameters(), lr=training.lr)
        modules["discriminator"] = discriminator
        optimizers["discriminator"] = disc_optimizer
    ssim_loss = None
    if training.ssim_weight > 0:
        from monai.losses import SSIMLoss

        ssim_loss = SSIMLoss(spatial_dims=model.autoencoder.spatial_dims, data_range=1.0)

    sampler = BatchSampler(len(data.train), training.batch_size, training.seed, context)
    step = 0
    state = load_training_state(run_dir) if training.resume else None
    if state is not None:
        step = restore_training_state(
            state, modules=modules, optimizers=optimizers, sampler=sampler, numpy_rng=numpy_rng
        )
    elif training.init_from:
        step = warm_start(training.init_from, "autoencoder", autoencoder, ema)
    elif training.init_weights:
        start_from_prior(training.init_weights, "autoencoder", autoencoder, ema)
    precision = resolve_precision(training.precision, device)
    log = TrainingLog(run_dir, context.is_main)
    val_rng = np.random.default_rng(12345)
    n_val = min(training.n_validation, len(data.validation))
    val_images = data.validation.batch(
        np.linspace(0, len(data.validation) - 1, n_val).astype(int), val_rng
    )
    prior_dir = run_dir / "prior"

    def export(step_now: int, metrics: dict[str, float]) -> None:
        if not context.is_main:
            return
        save_training_state(
            run_dir,
            step=step_now,
            modules=modules,
            optimizers=optimizers,
            sampler=sampler,
            numpy_rng=numpy_rng,
            extra={"metrics": metrics},
        )
        save_prior_checkpoint(
            prior_dir,
            config=model,
            autoencoder=ema.module,
            data_card=training.data_card,
            split={"train": "train", "validation": "validation"},
            normalization=_card_normalization(training.data_card),
            training={
                "autoencoder_steps": step_now,
                "autoencoder": asdict(training),
                "autoencoder_precision": precision,
                "autoencoder_validation": metrics,
                "data": data.description,
            },
            overwrite=True,
        )
        if on_checkpoint is not None:
            on_checkpoint(prior_dir, step_now, step_now >= training.steps)

    progress = tqdm(
        total=training.steps,
        initial=step,
        disable=not context.is_main,
        desc="autoencoder",
        dynamic_ncols=True,
    )
    last_metrics: dict[str, float] = {}
    if step == 0 and context.is_main and hasattr(autoencoder, "fit_shortcut"):
        # where a residual autoencoder starts: the linear codec, the baseline of its curve
        last_metrics = validate_autoencoder(ema.module, val_images)
        log.log(0, last_metrics, kind="validation")
        if training.steps == 0:
            # nothing to train: the shortcut alone is the codec (with as many components
            # as a block has pixels, lossless); exported as fitted
            export(0, last_metrics)
    tic, seen = time.perf_counter(), 0
    while step < training.steps:
        x = data.train.batch(sampler.next(), numpy_rng).to(device)
        with autocast(device, precision):
            x_hat, mu, sigma = ddp_autoencoder(x)
            x_hat = x_hat.float()
            l1 = (x_hat - x).abs().mean()
            kl = kl_divergence(mu.float(), sigma.float())
            loss = l1 + training.kl_weight * kl
            terms = {"l1": l1.item(), "kl": kl.item()}
            if ssim_loss is not None:
                s = ssim_loss(x_hat.clamp(0, 1), x)
                loss = loss + training.ssim_weight * s
                terms["ssim_loss"] = s.item()
            if training.frequency_weight > 0:
                f = frequency_loss(x_hat, x)
                loss = loss + training.frequency_weight * f
                terms["frequency"] = f.item()
            adversarial_on = discriminator is not None and step >= training.adv_start
            if adversarial_on:
                fake_logits = ddp_discriminator(x_hat.contiguous())[-1]
                g_adv = adversarial(fake_logits, target_is_real=True, for_discriminator=False)
                loss = loss + training.adv_weight * g_adv
                terms["g_adv"] = g_adv.item()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(autoencoder.parameters(), training.grad_clip)
        optimizer.step()
        if adversarial_on:
            with autocast(device, precision):
                fake = ddp_discriminator(x_hat.detach().contiguous())[-1]
                real = ddp_discriminator(x.contiguous())[-1]
                d_loss = 0.5 * (
                    adversarial(fake, target_is_real=False, for_discriminator=True)
                    + adversarial(real, target_is_real=True, for_discriminator=True)
                )
            disc_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            disc_optimizer.step()
            terms["d_loss"] = d_loss.item()
        ema.update(autoencoder, step)
        step += 1
        seen += len(x) * context.world_size
        progress.update(1)
        if step % training.log_every == 0 or step == training.steps:
            rate = seen / (time.perf_counter() - tic)
            progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
            log.log(step, {**terms, "loss": loss.item(), "images_per_s": rate})
            tic, seen = time.perf_counter(), 0
        if context.is_main and (step % training.validate_every == 0 or step == training.steps):
            last_metrics = validate_autoencoder(ema.module, val_images)
            log.log(step, last_metrics, kind="validation")
            progress.write(
                f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in last_metrics.items())
            )
        stopping = stop is not None and stop.agreed(context)
        if step % training.checkpoint_every == 0 or step == training.steps or stopping:
            export(step, last_metrics)
            barrier(context)
        if stopping:
            progress.write(f"stopped at step {step} ({stop.reason}); rerun to resume")
            break
    progress.close()
    log.close()
    check_replicas_identical(autoencoder, context, run_dir)
    barrier(context)
    return prior_dir


def _card_normalization(card_id: str | None) -> dict[str, Any] | None:
    if not card_id:
        return None
    from medldm.data.cards import load_card

    return load_card(card_id).normalizer().to_dict()
