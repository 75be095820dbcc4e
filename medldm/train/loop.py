"""What both training loops share: devices, DDP, EMA, batches, resumable checkpoints, logs.

One code path for a single process and ``torchrun --nproc_per_node=N``: :func:`init_distributed`
reads torchrun's environment (gloo on CPU, NCCL on GPU), every rank draws its share of each
step's batch from one shared permutation per epoch (a distributed sampler), gradients are
averaged by ``DistributedDataParallel``, and rank 0 alone writes files.

Training state is saved atomically every N steps to ``<run>/state/`` (model, EMA and
optimizer weights, the step, and every random state: torch, NumPy and the sampler), so an
interrupted run resumes at the same step with the same random stream. The state loads with
``torch.load(weights_only=True)``: no code is executed.

Example
-------
>>> import torch
>>> model = torch.nn.Linear(2, 2)
>>> ema = EMA(model, decay=0.5)
>>> with torch.no_grad():
...     _ = model.weight.add_(1.0)
>>> ema.update(model)
>>> bool(torch.allclose(ema.module.weight, model.weight - 0.5))
True
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from medldm.errors import InvalidInputError
from medldm.models.prior import resolve_device


# --------------------------------------------------------------------------------------
# Distributed set-up
# --------------------------------------------------------------------------------------
@dataclass
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world_size > 1:
        resolved = torch.device("cuda", local_rank)
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, resolved)


def wrap_ddp(model: nn.Module, context: DistributedContext) -> nn.Module:
    """``DistributedDataParallel`` under torchrun, the model itself otherwise."""
    if not context.distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


def broadcast_float(value: float, context: DistributedContext) -> float:
    """Rank 0's ``value`` on every rank."""
    if not context.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


# --------------------------------------------------------------------------------------
# Stopping cleanly
# --------------------------------------------------------------------------------------
class StopRequest:
    """Asks a training loop to stop at its next step, with a checkpoint: on SIGTERM or
    SIGINT (after :meth:`install`), or once ``deadline`` (``time.time()`` seconds) passes.

    >>> import time
    >>> StopRequest(deadline=time.time() - 1).requested
    True
    >>> StopRequest().requested
    False
    """

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self.signal_name: str | None = None

    def install(self) -> StopRequest:
        """Catch SIGTERM and SIGINT (main thread only): the first one asks for a clean
        stop, a second SIGINT interrupts at once."""
        import signal

        def handler(signum, frame):
            if self.signal_name is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        return self

    @property
    def requested(self) -> bool:
        return self.signal_name is not None or (
            self.deadline is not None and time.time() >= self.deadline
        )

    @property
    def reason(self) -> str:
        return self.signal_name or ("time budget spent" if self.requested else "")

    def agreed(self, context: DistributedContext) -> bool:
        """Rank 0's answer on every rank, so all replicas stop at the same step."""
        return broadcast_float(float(self.requested), context) > 0.5


# --------------------------------------------------------------------------------------
# EMA and batches
# --------------------------------------------------------------------------------------
class EMA:
    """Exponential moving average of a model's parameters (buffers are copied).

    With ``step`` given, the decay warms up as ``min(decay, (1 + step) / (10 + step))``, so
    early averages are not dominated by the random initial weights (with 0.999 and no
    warm-up, 13% of the weights after 2000 steps would still be the initial ones)."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def decay_at(self, step: int | None) -> float:
        if step is None:
            return self.decay
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        source = unwrap(model)
        decay = self.decay_at(step)
        for ema_param, param in zip(self.module.parameters(), source.parameters(), strict=True):
            ema_param.lerp_(param.detach(), 1.0 - decay)
        for ema_buffer, buffer in zip(self.module.buffers(), source.buffers(), strict=True):
            ema_buffer.copy_(buffer)


class BatchSampler:
    """Step-based sampler: one shared permutation per epoch (same seed on every rank),
    each rank taking its own ``batch_size`` indices per step. Its whole state is three
    integers, so a resumed run continues the same sequence."""

    def __init__(self, n_items: int, batch_size: int, seed: int, context: DistributedContext):
        if n_items < 1:
            raise InvalidInputError("the training set is empty")
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.rank, self.world = context.rank, context.world_size
        self.epoch, self.position = 0, 0
        self._permutation = self._permute()

    def _permute(self) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n_items)
        needed = self.batch_size * self.world
        if len(order) < needed:
            order = np.resize(order, needed)
        return order

    def next(self) -> np.ndarray:
        global_batch = self.batch_size * self.world
        if self.position + global_batch > len(self._permutation):
            self.epoch += 1
            self.position = 0
            self._permutation = self._permute()
        chunk = self._permutation[self.position : self.position + global_batch]
        self.position += global_batch
        return chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load(self, state: dict[str, int]) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]
        self._permutation = self._permute()


# --------------------------------------------------------------------------------------
# Resumable training state
# --------------------------------------------------------------------------------------
STATE_DIR = "state"
STATE_FILE = "training_state.pt"


def _rng_state(numpy_rng: np.random.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": numpy_rng.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], numpy_rng: np.random.Generator) -> None:
    torch.set_rng_state(state["torch"])
    numpy_rng.bit_generator.state = state["numpy"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    run_dir: Path,
    *,
    step: int,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    sampler: BatchSampler,
    numpy_rng: np.random.Generator,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/state/`` atomically (a new folder renamed over the old one)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".state.", dir=run_dir))
    payload = {
        "step": int(step),
        "modules": {name: unwrap(m).state_dict() for name, m in modules.items()},
        "optimizers": {name: o.state_dict() for name, o in optimizers.items()},
        "sampler": sampler.state(),
        "rng": _rng_state(numpy_rng),
        "extra": extra or {},
    }
    try:
        torch.save(payload, staging / STATE_FILE)
        target = run_dir / STATE_DIR
        old = run_dir / ".state.old"
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return run_dir / STATE_DIR / STATE_FILE


def load_training_state(run_dir: Path) -> dict[str, Any] | None:
    """The saved state of a run (``None`` if there is none). Never executes code."""
    path = run_dir / STATE_DIR / STATE_FILE
    if not path.is_file():
        old = run_dir / ".state.old" / STATE_FILE  # a kill between the two renames
        if not old.is_file():
            return None
        path = old
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(
            f"training state is unreadable ({exc})",
            path=path,
            fix="delete the state folder to start afresh, or restore it",
        ) from exc


def restore_training_state(
    state: dict[str, Any],
    *,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer],
    sampler: BatchSampler,
    numpy_rng: np.random.Generator,
) -> int:
    """Load a saved state into live objects; return the step to continue from."""
    for name, module in modules.items():
        unwrap(module).load_state_dict(state["modules"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    sampler.load(state["sampler"])
    _set_rng_state(state["rng"], numpy_rng)
    return int(state["step"])


def warm_start(checkpoint: str | Path, stage: str, model: nn.Module, ema: EMA) -> int:
    """Load the ``stage`` network (``"autoencoder"`` or ``"diffusion"``: the UNet) of a prior
    checkpoint folder into ``model`` and its EMA; return the step it was saved at."""
    from medldm.models.checkpoint import load_prior_checkpoint

    loaded = load_prior_checkpoint(checkpoint)
    source = loaded.autoencoder if stage == "autoencoder" else loaded.unet
    if source is None:
        raise InvalidInputError(
            f"checkpoint has no {stage} network to start from", path=Path(checkpoint)
        )
    target = unwrap(model).state_dict()
    weights = widen_output_channels(widen_input_channels(source.state_dict(), target), target)
    unwrap(model).load_state_dict(weights)
    ema.module.load_state_dict(weights)
    return int(loaded.meta.get("training", {}).get(f"{stage}_steps", 0))


def widen_input_channels(
    weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``weights`` for a network whose first convolution takes more input channels than
    theirs (a position-conditioned UNet started from an unconditioned one): each weight
    that ``target`` has wider along the input-channel axis (1) gets zeros for the new
    channels, so the widened network computes what the source did until it learns to use
    them. Other weights pass unchanged (``load_state_dict`` checks them).

    >>> w = {"conv_in.weight": torch.ones(4, 2, 3, 3)}
    >>> wide = widen_input_channels(w, {"conv_in.weight": torch.empty(4, 3, 3, 3)})
    >>> tuple(wide["conv_in.weight"].shape), float(wide["conv_in.weight"][:, 2].abs().sum())
    ((4, 3, 3, 3), 0.0)
    """
    widened = dict(weights)
    for key, value in weights.items():
        want = target.get(key)
        if want is None or want.shape == value.shape or value.ndim < 2:
            continue
        if want.shape[0] == value.shape[0] and want.shape[2:] == value.shape[2:]:
            extra = want.shape[1] - value.shape[1]
            if extra > 0:
                zeros = value.new_zeros((value.shape[0], extra, *value.shape[2:]))
                widened[key] = torch.cat([value, zeros], dim=1)
    return widened


def widen_output_channels(
    weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``weights`` for a network whose last convolution gives more output channels than
    theirs (a UNet for a prior with more latent channels started from one with fewer): each
    weight or bias that ``target`` has longer along the output axis (0), and equal
    otherwise, gets zeros for the new channels (the new channels' prediction starts at 0).
    Other weights pass unchanged (``load_state_dict`` checks them).

    >>> w = {"out.weight": torch.ones(2, 4, 3, 3), "out.bias": torch.ones(2)}
    >>> wide = widen_output_channels(w, {"out.weight": torch.empty(3, 4, 3, 3),
    ...                                  "out.bias": torch.empty(3)})
    >>> tuple(wide["out.weight"].shape), float(wide["out.bias"][2])
    ((3, 4, 3, 3), 0.0)
    """
    widened = dict(weights)
    for key, value in weights.items():
        want = target.get(key)
        if want is None or want.shape == value.shape or want.ndim != value.ndim:
            continue
        extra = want.shape[0] - value.shape[0]
        if extra > 0 and want.shape[1:] == value.shape[1:]:
            zeros = value.new_zeros((extra, *value.shape[1:]))
            widened[key] = torch.cat([value, zeros], dim=0)
    return widened


def start_from_prior(prior: str | Path, stage: str, model: nn.Module, ema: EMA) -> None:
    """Copy the ``stage`` network of another prior (a shipped name such as
    ``"brain_t1_2d"`` or a checkpoint folder) into ``model`` and its EMA: transfer learning
    to a new prior, which starts at step 0 with its own data (unlike :func:`warm_start`,
    which continues a run of the same prior)."""
    from medldm.models.prior import prior_folder

    warm_start(prior_folder(prior), stage, model, ema)


# --------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------
class TrainingLog:
    """CSV logs, one per kind (``train_log.csv``, ``validation_log.csv``), plus TensorBoard
    when the ``tensorboard`` package is installed. Only rank 0 writes. A row with a new
    column (e.g. the adversarial loss once it starts) extends the file's header."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.run_dir = run_dir
        self.start = time.perf_counter()
        self._writer = None
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self._writer = None

    def log(self, step: int, values: dict[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        row = {"step": step, "elapsed_s": round(time.perf_counter() - self.start, 2), **values}
        path = self.run_dir / f"{kind}_log.csv"
        rows: list[dict[str, Any]] = []
        header: list[str] = []
        if path.exists():
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                if any(key not in header for key in row):
                    rows = list(reader)
        new_keys = [key for key in row if key not in header]
        if new_keys:  # (re)write with the extended header
            header += new_keys
            with open(path, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=header, restval="")
                writer.writeheader()
                writer.writerows(rows)
        with open(path, "a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=header, restval="").writerow(row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"{kind}/{key}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def seed_everything(seed: int, context: DistributedContext) -> np.random.Generator:
    """Seed torch (same on every rank: identical initial weights) and return a NumPy
    generator for augmentation (different per rank)."""
    torch.manual_seed(seed)
    return np.random.default_rng([seed, context.rank])


def check_replicas_identical(model: nn.Module, context: DistributedContext, run_dir: Path) -> None:
    """Under DDP, check every rank ends with bit-identical weights; rank 0 writes the
    per-rank SHA-256 to ``<run>/ddp_check.json`` and raises if they differ."""
    if not context.distributed:
        return
    import hashlib
    import json

    digest = hashlib.sha256()
    for tensor in unwrap(model).state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    hashes: list[str | None] = [None] * context.world_size
    dist.all_gather_object(hashes, digest.hexdigest())
    if context.is_main:
        (run_dir / "ddp_check.json").write_text(json.dumps({"rank_sha256": hashes}, indent=2))
        if len(set(hashes)) != 1:
            raise RuntimeError(f"DDP replicas diverged: {hashes}")
