"""Stage 2: train the latent diffusion UNet (MONAI ``DiffusionModelUNet``).

The autoencoder of a stage-1 prior checkpoint is frozen; latents are its posterior means,
normalised to zero mean and unit variance on the training latents (fitted once, stored in
the checkpoint): with one ``scale_factor = 1 / std`` (``latent_normalization="global"``,
the classic LDM) or a mean and std per channel (``"per_channel"``, as EDM2;
:mod:`medldm.models.latent_normalization`); a fine-tune may keep its source prior's instead
(``"from_init"``). The UNet learns the DDPM noise prediction over
1000 steps::

    z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps,   L = |eps_theta(z_t, t) - eps|^2,

with EMA, gradient clipping, bf16 autocast where the hardware runs it natively
(``precision="auto"``; the frozen encoder in channels_last on CPU), a validation loss at fixed noise
and timesteps, a PNG grid of DDIM samples at each validation, resumable state, and the
full prior (autoencoder + EMA UNet) exported to ``<run>/prior``.

With ``noise_offset = s > 0`` the training noise is ``eps = n + s * m`` with ``n`` white and
``m`` one N(0, 1) value per image and channel (offset noise; Guttenberg 2023). The
scaled-linear schedule leaves signal at t = T (``alpha_bar_T`` = 1.4e-4 for the
beta 0.0015-0.0195 presets, a signal amplitude of 0.012): a model trained on
white noise reads each image's mean (its brightness, in the block-mean channel) from that
residual signal, and at sampling takes the mean of its initial noise for it, so the seed
sets the brightness of a sample. The offset drowns that residual in noise it cannot use
(Lin et al. 2024 give the full fix, a zero-terminal-SNR schedule with v-prediction, which
needs a retrain). Sampling keeps white noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from medldm.errors import InvalidInputError
from medldm.models.checkpoint import load_prior_checkpoint, save_prior_checkpoint
from medldm.models.config import LDMConfig, UNetConfig, build_scheduler, build_unet
from medldm.models.latent_normalization import LatentNormalization
from medldm.models.precision import autocast, resolve_precision
from medldm.models.prior import Prior
from medldm.train.data import ImageDataset, build_training_data
from medldm.train.loop import (
    EMA,
    BatchSampler,
    StopRequest,
    TrainingLog,
    barrier,
    broadcast_float,
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
class DiffusionTraining:
    """Hyper-parameters of stage 2 (the Hydra config ``configs/train/diffusion.yaml``)."""

    autoencoder: str = ""
    steps: int = 20_000
    batch_size: int = 32
    lr: float = 1e-4
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    precision: str = "auto"
    seed: int = 0
    log_every: int = 50
    validate_every: int = 1_000
    checkpoint_every: int = 500
    n_validation: int = 64
    n_sample_grid: int = 16
    sample_steps: int = 50
    resume: bool = True
    init_from: str | None = None
    # a new prior's starting weights: this stage's network of another prior (shipped name
    # or folder), at step 0 (transfer learning; init_from, a run's own milestone, wins)
    init_weights: str | None = None
    device: str = "auto"
    half_weights: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    # "global" (one scale_factor), "per_channel" (a shift and scale per latent channel), both
    # fitted on this prior's training crops, or "from_init": init_weights' own, kept (a
    # fine-tune whose crops differ from the source's: its UNet was trained for that one)
    latent_normalization: str = "global"
    # offset noise: std of the extra per-(image, channel) constant added to the noise (0 = off)
    noise_offset: float = 0.0
    # the last lr_cooldown_steps steps before ``steps`` decay the learning rate linearly to 0
    # (the decay phase of a warmup-stable-decay schedule; 0 = constant lr throughout)
    lr_cooldown_steps: int = 0
    # the sample grid's image shape (default the model's image_size): a prior trained on
    # crops with position channels is sampled on a whole slice, e.g. [256, 256]
    sample_shape: tuple[int, ...] | None = None
    # 0: the plain epsilon loss; > 0: each image's loss weighted by min(1 + 1/SNR(t), this)
    # (the v-prediction loss's weighting, capped), so the high-noise steps where a slice's
    # layout is decided carry more of the gradient (high_noise_weights)
    high_noise_weight_max: float = 0.0
    # a stack-aware UNet (unet.neighbour_slices): the chance that a slice is shown itself in
    # place of each of its neighbours, as at a stack's ends and for a slice alone
    neighbour_dropout: float = 0.15

    def __post_init__(self) -> None:
        if not 0 <= self.neighbour_dropout <= 1:
            raise ValueError(f"neighbour_dropout must be in [0, 1], got {self.neighbour_dropout}")
        if self.noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {self.noise_offset}")
        if self.high_noise_weight_max and self.high_noise_weight_max < 1:
            raise ValueError(
                f"high_noise_weight_max must be 0 (off) or >= 1, got {self.high_noise_weight_max}"
            )
        if not 0 <= self.lr_cooldown_steps <= self.steps:
            raise ValueError(
                f"lr_cooldown_steps must be in [0, steps={self.steps}], "
                f"got {self.lr_cooldown_steps}"
            )


def cooldown_lr(lr: float, step: int, steps: int, cooldown: int) -> float:
    """Learning rate of the update that takes the run from ``step`` to ``step + 1``: ``lr``
    until the last ``cooldown`` updates before ``steps``, then a linear decay that reaches 0
    after the last one (Hägele et al. 2024, "Scaling laws and compute-optimal training
    beyond fixed training durations": a short decay phase after a constant rate matches a
    cosine schedule, and it can be appended to a finished constant-rate run).

    >>> [round(cooldown_lr(1.0, s, 10, 4), 2) for s in (0, 5, 6, 7, 8, 9)]
    [1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    >>> cooldown_lr(1.0, 9, 10, 0)
    1.0
    """
    if cooldown <= 0:
        return lr
    return lr * min(1.0, (steps - step) / cooldown)


def training_noise(z0: torch.Tensor, offset: float) -> torch.Tensor:
    """White noise shaped like ``z0`` (B, C, *spatial) plus ``offset`` times one N(0, 1)
    constant per image and channel (offset noise; 0 gives plain white noise).

    >>> z0 = torch.zeros(64, 4, 16, 16)
    >>> means = training_noise(z0, 0.5).mean(dim=(2, 3))
    >>> 0.35 < float(means.std()) < 0.65
    True
    """
    noise = torch.randn_like(z0)
    if offset > 0:
        shape = (*z0.shape[:2], *([1] * (z0.ndim - 2)))
        noise = noise + offset * torch.randn(shape, device=z0.device, dtype=z0.dtype)
    return noise


def high_noise_weights(alphas_cumprod: torch.Tensor, t: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-image weights of the epsilon loss at timesteps ``t``: ``min(1 + 1/SNR(t), cap)``
    (SNR = a_t / (1 - a_t); ``1 + 1/SNR`` turns the epsilon loss into the v-prediction loss,
    which weighs the noisiest steps far more), divided by their mean over all timesteps so
    the learning rate keeps its scale. ``cap`` <= 0: all ones.

    >>> a = torch.linspace(0.999, 0.001, 1000)
    >>> w = high_noise_weights(a, torch.tensor([0, 999]), 5.0)
    >>> bool(w[1] > 3 * w[0])
    True
    """
    if cap <= 0:
        return torch.ones(len(t), device=t.device)
    snr = alphas_cumprod / (1.0 - alphas_cumprod)
    weights = torch.clamp(1.0 + 1.0 / snr, max=cap)
    return (weights / weights.mean())[t.cpu()].to(t.device, torch.float32)


@torch.no_grad()
def fit_latent_normalization(
    autoencoder, images: torch.Tensor, mode: str = "global", batch_size: int = 32
) -> LatentNormalization:
    """The normalisation that gives the latent means of ``images`` zero mean and unit
    variance (``mode``: ``"global"`` or ``"per_channel"``)."""
    device = next(autoencoder.parameters()).device
    latents = [
        autoencoder.encode(images[i : i + batch_size].to(device))[0].cpu()
        for i in range(0, len(images), batch_size)
    ]
    return LatentNormalization.fit(torch.cat(latents), mode)


#: ``latent_normalization`` value: keep the normalisation of ``init_weights``' prior.
FROM_INIT = "from_init"


def init_normalization(prior: str | Path, channels: int) -> LatentNormalization:
    """The latent normalisation stored with ``prior`` (a shipped name or a folder)."""
    from medldm.models.prior import prior_folder

    return LatentNormalization.from_meta(load_prior_checkpoint(prior_folder(prior)).meta, channels)


def _broadcast_normalization(
    norm: LatentNormalization, channels: int, context: Any
) -> LatentNormalization:
    """Rank 0's normalisation on every rank."""
    values = [broadcast_float(float(v), context) for v in (*norm.shift, *norm.scale)]
    return LatentNormalization(
        torch.tensor(values[:channels], dtype=torch.float64),
        torch.tensor(values[channels:], dtype=torch.float64),
    )


def save_sample_grid(images: torch.Tensor, path: Path) -> None:
    """A square PNG grid of images ``(N, 1, *spatial)`` (3D: the central slice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arrays = images[:, 0].float().cpu().numpy()
    if arrays.ndim == 4:
        arrays = arrays[:, :, :, arrays.shape[3] // 2]
    n = len(arrays)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, array in zip(np.atleast_1d(axes).ravel(), arrays, strict=False):
        ax.imshow(array, cmap="gray", vmin=0, vmax=1)
    fig.tight_layout(pad=0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def split_positions(
    x: torch.Tensor, factor: int, slice_position: bool = False, neighbour_slices: bool = False
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A training batch ``(B, 1 [+ 2] [+ 1], H, W)`` -> the image ``(B, 1, H, W)`` and the
    UNet's extra arguments: ``{"positions": maps at the latent's resolution}`` when the
    batch carries position channels (:class:`~medldm.train.data.ImageDataset`
    ``positions``) and ``{"slice_position": (B,)}`` from its last channel when
    ``slice_position`` (``slice_positions``), else none. With ``neighbour_slices`` the two
    channels after the image are the slices below and above: ``{"neighbour_images":
    (B, 2, H, W)}`` (encoded, noised and given as :func:`neighbour_input`).

    >>> image, extra = split_positions(torch.zeros(2, 3, 8, 8), 4)
    >>> tuple(image.shape), tuple(extra["positions"].shape)
    ((2, 1, 8, 8), (2, 2, 2, 2))
    >>> image, extra = split_positions(torch.full((2, 2, 8, 8), 0.25), 4, slice_position=True)
    >>> tuple(image.shape), extra["slice_position"].tolist()
    ((2, 1, 8, 8), [0.25, 0.25])
    """
    extra: dict[str, torch.Tensor] = {}
    if slice_position:
        extra["slice_position"] = x[:, -1].mean(dim=(-2, -1))
        x = x[:, :-1]
    if neighbour_slices:
        extra["neighbour_images"] = x[:, 1:3]
        x = x[:, :1]
    if x.shape[1] > 1:
        from medldm.models.positions import latent_coordinates

        extra["positions"] = latent_coordinates(x[:, 1:], factor)
    return x[:, :1], extra


def neighbour_input(
    noisy: torch.Tensor, z_t: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """The UNet's ``neighbours`` input ``(B, 2 C, h, w)`` from the noisy latents of the
    slices below and above ``(B, 2, C, h, w)``; where ``keep`` ``(B, 2)`` is false, the
    image's own noisy latent ``z_t`` instead (a missing neighbour, as at inference).

    >>> noisy, z_t = torch.zeros(1, 2, 1, 1, 1), torch.ones(1, 1, 1, 1)
    >>> neighbour_input(noisy, z_t, torch.tensor([[True, False]])).flatten().tolist()
    [0.0, 1.0]
    """
    if keep is not None:
        mask = keep.reshape(*keep.shape, *[1] * (noisy.ndim - 2))
        noisy = torch.where(mask, noisy, z_t[:, None])
    return noisy.flatten(1, 2)


def encode_neighbours(encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor):
    """Latents ``(B, 2, C, h, w)`` of neighbour images ``(B, 2, H, W)``."""
    b = images.shape[0]
    z = encode(images.reshape(2 * b, 1, *images.shape[2:]))
    return z.reshape(b, 2, *z.shape[1:])


def check_conditions(unet_config: UNetConfig, dataset: ImageDataset) -> None:
    """A conditioned UNet needs training data that carries its condition, and only it."""
    conditions = (
        ("a position-conditioned", "position_channels", bool(unet_config.position_channels),
         dataset.positions, "position maps (data.positions: true)"),
        ("a slice-conditioned", "slice_position", unet_config.slice_position,
         dataset.slice_positions is not None, "slice positions (data.slice_positions: true)"),
        ("a stack-aware", "neighbour_slices", unet_config.neighbour_slices,
         dataset.neighbours is not None, "neighbour slices (data.neighbour_slices: true)"),
    )  # fmt: skip
    for kind, option, wanted, carried, what in conditions:
        if wanted != carried:
            raise InvalidInputError(
                f"{kind} UNet (unet.{option}) needs training data with {what}, and only it",
                fix="set both or neither",
            )


def train_diffusion(
    unet_config: UNetConfig,
    training: DiffusionTraining,
    run_dir: str | Path,
    stop: StopRequest | None = None,
    on_checkpoint: Callable[[Path, int, bool], None] | None = None,
) -> Path:
    """Train stage 2 on top of the stage-1 checkpoint ``training.autoencoder``; return the
    exported prior folder (``<run_dir>/prior``).

    With ``stop``, the run ends early at a checkpoint when a stop is requested;
    ``on_checkpoint(prior_dir, step, final)`` is called after each export (rank 0). Without
    a saved state, ``training.init_from`` (a full prior checkpoint) gives the starting
    UNet weights, step and latent normalisation (a warm start with a fresh optimizer);
    else ``training.init_weights`` (another prior) gives starting UNet weights at step 0."""
    run_dir = Path(run_dir)
    if training.latent_normalization == FROM_INIT and not training.init_weights:
        raise InvalidInputError(
            "latent_normalization: from_init keeps init_weights' normalisation, and none is set",
            fix="set diffusion_training.init_weights, or use per_channel or global",
        )
    context = init_distributed(training.device)
    numpy_rng = seed_everything(training.seed, context)
    device = context.device
    stage1 = load_prior_checkpoint(training.autoencoder, device=device)
    autoencoder = stage1.autoencoder.requires_grad_(False)
    model = LDMConfig(
        stage1.config.autoencoder, unet_config, stage1.config.scheduler, stage1.config.image_size
    )
    data = build_training_data(**training.data)
    check_conditions(unet_config, data.train)
    slice_conditioned = unet_config.slice_position
    stack_aware = unet_config.neighbour_slices
    factor = model.autoencoder.downsampling_factor

    unet = build_unet(unet_config, model.autoencoder.latent_channels).to(device)
    precision = resolve_precision(training.precision, device)
    if precision == "bf16" and device.type == "cpu" and unet_config.spatial_dims == 2:
        # the frozen encoder in oneDNN's fast bf16 layout: 4x faster than fp32 (batch 16,
        # this project's AMD EPYC); the UNet's bf16 training step is faster in the default
        # layout there (861-906 ms vs 1084-1101 ms channels_last, batch 16, one thread)
        autoencoder = autoencoder.to(memory_format=torch.channels_last)
    ema = EMA(unet, training.ema_decay)
    ddp_unet = wrap_ddp(unet, context)
    optimizer = torch.optim.Adam(unet.parameters(), lr=training.lr)
    scheduler = build_scheduler(model.scheduler, "ddpm")
    schedule = scheduler.alphas_cumprod.float()
    modules = {"unet": unet, "ema": ema.module}
    optimizers = {"unet": optimizer}
    sampler = BatchSampler(len(data.train), training.batch_size, training.seed, context)

    channels = model.autoencoder.latent_channels
    step, norm = 0, None
    state = load_training_state(run_dir) if training.resume else None
    if state is not None:
        step = restore_training_state(
            state, modules=modules, optimizers=optimizers, sampler=sampler, numpy_rng=numpy_rng
        )
        norm = LatentNormalization.from_meta(state["extra"], channels)
    elif training.init_from:
        step = warm_start(training.init_from, "diffusion", unet, ema)
        warm_meta = load_prior_checkpoint(training.init_from).meta
        norm = LatentNormalization.from_meta(warm_meta, channels)
    elif training.init_weights:  # the latent normalisation is fitted on this prior's data
        start_from_prior(training.init_weights, "diffusion", unet, ema)
        if training.latent_normalization == FROM_INIT:
            norm = init_normalization(training.init_weights, channels)
    if norm is None:
        fit_rng = np.random.default_rng(training.seed)
        count = min(len(data.train), 512)
        fit_images = data.train.batch(
            fit_rng.choice(len(data.train), count, replace=False), fit_rng
        )[:, :1]
        norm = fit_latent_normalization(autoencoder, fit_images, training.latent_normalization)
        norm = _broadcast_normalization(norm, channels, context)

    n_val = min(training.n_validation, len(data.validation))
    val_images, val_extra = split_positions(
        data.validation.batch(
            np.linspace(0, len(data.validation) - 1, n_val).astype(int),
            np.random.default_rng(12345),
        ),
        factor,
        slice_conditioned,
        stack_aware,
    )
    val_extra = {k: v.to(device) for k, v in val_extra.items()}

    def encode_clean(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(device, precision):  # the frozen encoder: bf16 too
            return norm.forward(autoencoder.encode(images)[0].float())

    def add_noise_pairs(clean: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
        """Neighbour latents ``(B, 2, C, h, w)`` noised to their image's timestep."""
        flat = scheduler.add_noise(clean.flatten(0, 1), noise.flatten(0, 1), t.repeat_interleave(2))
        return flat.view_as(clean)

    with torch.no_grad():
        val_latents = norm.forward(autoencoder.encode(val_images.to(device))[0])
    val_gen = torch.Generator().manual_seed(4321)
    val_noise = torch.randn(val_latents.shape, generator=val_gen).to(device)
    val_t = torch.randint(0, model.scheduler.num_train_timesteps, (n_val,), generator=val_gen).to(
        device
    )
    if stack_aware:  # the validation neighbours: all present, their own fixed noise
        with torch.no_grad():
            val_next = encode_neighbours(
                lambda v: norm.forward(autoencoder.encode(v)[0]),
                val_extra.pop("neighbour_images"),
            )
        val_next_noise = torch.randn(val_next.shape, generator=val_gen).to(device)
        val_extra["neighbours"] = add_noise_pairs(val_next, val_next_noise, val_t).flatten(1, 2)

    log = TrainingLog(run_dir, context.is_main)
    prior_dir = run_dir / "prior"
    meta = stage1.meta

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
            extra={
                "scale_factor": norm.scale_factor,
                "latent_normalization": norm.to_meta(),
                "metrics": metrics,
            },
        )
        training_info = dict(meta.get("training", {}))
        training_info.update(
            {
                "diffusion_steps": step_now,
                "diffusion": asdict(training),
                "diffusion_precision": precision,
                "diffusion_validation": metrics,
                "diffusion_data": data.description,
            }
        )
        save_prior_checkpoint(
            prior_dir,
            config=model,
            autoencoder=autoencoder,
            unet=ema.module,
            scale_factor=norm.scale_factor,
            latent_normalization=None if norm.is_global else norm.to_meta(),
            normalization=meta.get("normalization"),
            data_card=meta.get("data_card"),
            split=meta.get("split"),
            training=training_info,
            half=training.half_weights,
            overwrite=True,
        )
        if on_checkpoint is not None:
            on_checkpoint(prior_dir, step_now, step_now >= training.steps)

    @torch.no_grad()
    def validate() -> dict[str, float]:
        z_t = scheduler.add_noise(val_latents, val_noise, val_t)
        loss = F.mse_loss(ema.module(z_t, timesteps=val_t, **val_extra), val_noise)
        return {"val_loss": float(loss)}

    progress = tqdm(
        total=training.steps,
        initial=step,
        disable=not context.is_main,
        desc="diffusion",
        dynamic_ncols=True,
    )
    metrics: dict[str, float] = {}
    tic, seen = time.perf_counter(), 0
    while step < training.steps:
        x, extra = split_positions(
            data.train.batch(sampler.next(), numpy_rng).to(device),
            factor,
            slice_conditioned,
            stack_aware,
        )
        z0 = encode_clean(x)
        noise = training_noise(z0, training.noise_offset)
        t = torch.randint(0, model.scheduler.num_train_timesteps, (len(z0),), device=device)
        z_t = scheduler.add_noise(z0, noise, t)
        if stack_aware:
            next_z0 = encode_neighbours(encode_clean, extra.pop("neighbour_images"))
            next_noise = training_noise(next_z0.flatten(0, 1), training.noise_offset)
            keep = torch.rand(len(z0), 2, device=device) >= training.neighbour_dropout
            noisy = add_noise_pairs(next_z0, next_noise.view_as(next_z0), t)
            extra["neighbours"] = neighbour_input(noisy, z_t, keep)
        with autocast(device, precision):
            predicted = ddp_unet(z_t, timesteps=t, **extra).float()
        per_image = (predicted - noise).pow(2).flatten(1).mean(1)
        loss = (per_image * high_noise_weights(schedule, t, training.high_noise_weight_max)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), training.grad_clip)
        for group in optimizer.param_groups:
            group["lr"] = cooldown_lr(training.lr, step, training.steps, training.lr_cooldown_steps)
        optimizer.step()
        ema.update(unet, step)
        step += 1
        seen += len(x) * context.world_size
        progress.update(1)
        if step % training.log_every == 0 or step == training.steps:
            rate = seen / (time.perf_counter() - tic)
            progress.set_postfix(loss=f"{loss.item():.4f}", img_s=f"{rate:.1f}")
            lr_now = optimizer.param_groups[0]["lr"]
            log.log(step, {"loss": loss.item(), "images_per_s": rate, "lr": lr_now})
            tic, seen = time.perf_counter(), 0
        if context.is_main and (step % training.validate_every == 0 or step == training.steps):
            metrics = validate()
            log.log(step, metrics, kind="validation")
            progress.write(f"step {step}: val_loss {metrics['val_loss']:.4f}")
        stopping = stop is not None and stop.agreed(context)
        if step % training.checkpoint_every == 0 or step == training.steps or stopping:
            export(step, metrics)
            if context.is_main and (step % training.validate_every == 0 or step == training.steps):
                prior = Prior(load_prior_checkpoint(prior_dir, device=device), device=device)
                # a slice-conditioned grid runs from the inferior to the superior end
                where = torch.linspace(0, 1, training.n_sample_grid) if slice_conditioned else None
                with prior.at_slice_positions(where):
                    grid = prior.sample(
                        training.n_sample_grid,
                        n_steps=training.sample_steps,
                        generator=torch.Generator().manual_seed(0),
                        image_shape=training.sample_shape,
                    )
                save_sample_grid(grid.clamp(0, 1), run_dir / "samples" / f"step_{step:07d}.png")
            barrier(context)
        if stopping:
            progress.write(f"stopped at step {step} ({stop.reason}); rerun to resume")
            break
    progress.close()
    log.close()
    check_replicas_identical(unet, context, run_dir)
    barrier(context)
    return prior_dir
