"""The `Prior` that solvers call: one trained latent diffusion model.

Conventions: images in the model's range are ``[0, 1]`` tensors ``(B, 1, *spatial)``
(:meth:`Prior.fit_normalization` gives the map from physical units there and back);
latents are ``z = (mu(x) - shift) * scale`` with zero mean and unit variance on the training
data (one scale for all channels, or one shift and scale per channel:
:mod:`medldm.models.latent_normalization`); the
diffusion model predicts the noise ``eps`` of ``z_t = sqrt(a_t) z_0 + sqrt(1 - a_t) eps``.

Example
-------
>>> import tempfile, pathlib, torch
>>> from medldm.models.config import LDMConfig, AutoencoderConfig, UNetConfig
>>> from medldm.models.config import build_autoencoder, build_unet
>>> from medldm.models.checkpoint import save_prior_checkpoint
>>> cfg = LDMConfig(AutoencoderConfig(channels=(8, 8, 8), norm_num_groups=4),
...                 UNetConfig(channels=(8, 8, 8), num_head_channels=8, norm_num_groups=4),
...                 image_size=(16, 16))
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "tiny"
>>> _ = save_prior_checkpoint(folder, config=cfg, autoencoder=build_autoencoder(cfg.autoencoder),
...                           unet=build_unet(cfg.unet, 4), scale_factor=1.0)
>>> prior = load_prior(folder, device="cpu")
>>> z = prior.encode(torch.rand(1, 1, 16, 16))
>>> tuple(z.shape), tuple(prior.decode(z).shape)
((1, 4, 4, 4), (1, 1, 16, 16))
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medldm.data.normalize import Normalization, fit_to_image
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.models.checkpoint import LoadedPrior, load_prior_checkpoint
from medldm.models.config import build_scheduler
from medldm.models.latent_normalization import LatentNormalization
from medldm.models.precision import autocast, resolve_precision
from medldm.models.schedule import ddim_step, gaussian_like, tweedie_x0

SHIPPED_DIR = Path(__file__).parent / "weights"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` gives the GPU when one is present, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def shipped_priors() -> list[str]:
    """Names of the priors shipped inside the package."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / "config.json").is_file())


class Prior:
    """A trained LDM: autoencoder, diffusion UNet, noise schedule and normalisation.

    ``precision`` (``"fp32"``, ``"bf16"`` or ``"auto"``: bf16 where the hardware runs it
    natively, :mod:`medldm.models.precision`) applies to the network calls only (encoder,
    decoder, UNet); their outputs come back as float32, so the solvers' data consistency
    (FFTs, CG, TV) stays in fp32.

    Attributes
    ----------
    spatial_dims, image_size, latent_channels, downsampling_factor, latent_normalization
    (latent mean <-> diffusion latent, :mod:`medldm.models.latent_normalization`), device,
    precision (resolved: ``"fp32"`` or ``"bf16"``), nfe (network evaluations counted by
    :meth:`predict_eps`), meta (checkpoint description), slice_conditioned (whether the
    UNet takes each slice's position in the head: :meth:`at_slice_positions`), stack_aware
    (whether it also sees the slices below and above, told by ``adjacent=True`` there).
    """

    def __init__(
        self, loaded: LoadedPrior, device: str | torch.device = "auto", precision: str = "fp32"
    ):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.config = loaded.config
        self.meta = loaded.meta
        self.path = loaded.path
        self.autoencoder = loaded.autoencoder.to(self.device).eval().requires_grad_(False)
        self.unet = None if loaded.unet is None else loaded.unet.to(self.device).eval()
        if self.unet is not None:
            self.unet.requires_grad_(False)
        self.spatial_dims = self.config.autoencoder.spatial_dims
        self.image_size = tuple(self.config.image_size)
        self.latent_channels = self.config.autoencoder.latent_channels
        self.latent_normalization = LatentNormalization.from_meta(loaded.meta, self.latent_channels)
        self.downsampling_factor = self.config.autoencoder.downsampling_factor
        self.scheduler = build_scheduler(self.config.scheduler, "ddpm")
        self.alphas_cumprod = self.scheduler.alphas_cumprod.to(self.device, torch.float32)
        self.num_train_timesteps = self.config.scheduler.num_train_timesteps
        if self.precision == "bf16" and self.device.type == "cpu" and self.spatial_dims == 2:
            # oneDNN's fast bf16 layout for the autoencoder (decode 186 -> 141 ms, batch 4,
            # one thread, AMD EPYC); the UNet runs 5-13 % faster in the default layout
            self.autoencoder.to(memory_format=torch.channels_last)
        self.nfe = 0
        self.slice_conditioned = self.unet is not None and self.config.unet.slice_position
        self.stack_aware = self.slice_conditioned and self.config.unet.neighbour_slices
        self._slice_positions: torch.Tensor | None = None
        self._adjacent = False
        spec = loaded.meta.get("normalization")
        self.normalizer = None
        if spec:
            from medldm.data.normalize import normalizer_from_dict

            self.normalizer = normalizer_from_dict(spec)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def scale_factor(self) -> float | None:
        """The classic LDM latent scale (``None`` when the latents are normalised per
        channel: :attr:`latent_normalization`)."""
        return self.latent_normalization.scale_factor

    # --- intensities ------------------------------------------------------------------
    def fit_normalization(self, image: Any, unit: str = "unknown") -> Normalization:
        """The map physical units <-> the model's ``[0, 1]`` range for ``image``, the way
        its training data was scaled: a percentile rule fitted to this image (signed values,
        magnitude when complex: :func:`medldm.data.normalize.fit_to_image`), a fixed window
        (CT in HU, 8-bit) as is. ``.forward(image, clip=False)`` and ``.inverse(x)`` are
        exact inverses; nothing is kept on the prior between calls."""
        if self.normalizer is None:
            return Normalization(low=0.0, high=1.0, unit=unit)
        return fit_to_image(self.normalizer, image, unit=unit)

    # --- autoencoder ------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image ``(B, 1, *spatial)`` in ``[0, 1]`` -> scaled latent mean ``(B, C, *spatial/f)``."""
        self._check_image(x)
        with autocast(self.device, self.precision):
            mu, _ = self.autoencoder.encode(x.to(self.device, torch.float32))
        return self.latent_normalization.forward(mu.float())

    def decode(self, z: torch.Tensor, *, tile: Sequence[int] | None = None) -> torch.Tensor:
        """Scaled latent -> image. 3D latents larger than ``tile`` (default: the training
        latent size) are decoded in overlapping tiles (MONAI sliding-window inference), so
        memory stays bounded whatever the volume size. Differentiable."""
        z = self.latent_normalization.inverse(z.to(self.device))
        latent_size = [s // self.downsampling_factor for s in self.image_size]
        tile = list(tile or latent_size)
        with autocast(self.device, self.precision):
            if self.spatial_dims == 3 and any(
                s > t for s, t in zip(z.shape[2:], tile, strict=True)
            ):
                from monai.inferers import sliding_window_inference

                image = sliding_window_inference(
                    z,
                    roi_size=tile,
                    sw_batch_size=1,
                    predictor=self.autoencoder.decode,
                    overlap=0.25,
                    mode="gaussian",
                )
            else:
                image = self.autoencoder.decode(z)
        return image.float()

    # --- diffusion --------------------------------------------------------------------
    def _timesteps(self, t: int | torch.Tensor, batch: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device).long()
        return t.expand(batch) if t.ndim == 0 else t

    def predict_eps(self, z_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Noise predicted by the UNet at timestep ``t`` (counts one network evaluation)."""
        if self.unet is None:
            raise InvalidInputError(
                "this checkpoint has no diffusion model (autoencoder only)",
                path=self.path,
                fix="train the diffusion stage (medldm-train-diffusion) first",
            )
        self.nfe += 1
        extra = {}
        if self.slice_conditioned:
            extra["slice_position"] = self._slice_positions_for(z_t.shape[0])
        if self.stack_aware:
            extra["neighbours"] = self._neighbours(z_t)
        with autocast(self.device, self.precision):
            eps = self.unet(z_t, timesteps=self._timesteps(t, z_t.shape[0]), **extra)
        return eps.float()

    @contextmanager
    def at_slice_positions(
        self, positions: Sequence[float] | torch.Tensor | None, *, adjacent: bool = False
    ) -> Iterator[None]:
        """Within the block, a slice-conditioned prior's network calls are told where their
        slices lie in the head (:mod:`medldm.problems.model_view` positions, 0 inferior,
        1 superior): one number for the whole batch, or one per slice of the batch's
        ``S`` slices (a batch of ``k * S`` latents is ``k`` copies of them, slice fastest,
        as :meth:`~medldm.solvers.latent_problem.LatentProblem.to_prior_batch` stacks
        them). ``None``, and every call outside such a block, means the middle of the head.
        ``adjacent``: the ``S`` slices are a contiguous stack, inferior first (a volume, a
        slab), so a :attr:`stack_aware` prior shows each slice its neighbours; otherwise
        each slice stands alone. Other priors ignore it all."""
        previous = self._slice_positions, self._adjacent
        self._slice_positions = (
            None
            if positions is None
            else torch.as_tensor(positions, dtype=torch.float32, device=self.device).reshape(-1)
        )
        self._adjacent = bool(adjacent)
        try:
            yield
        finally:
            self._slice_positions, self._adjacent = previous

    def _neighbours(self, z_t: torch.Tensor) -> torch.Tensor:
        """Each latent's neighbours below and above in its stack (itself where unknown)."""
        from medldm.models.positions import stack_neighbours

        positions = self._slice_positions
        stack = positions.numel() if self._adjacent and positions is not None else None
        self._slice_positions_for(z_t.shape[0])  # the same batch check
        return stack_neighbours(z_t, stack)

    def _slice_positions_for(self, batch: int) -> torch.Tensor | None:
        positions = self._slice_positions
        if positions is None or positions.numel() == 1:
            return positions
        if batch % positions.numel():
            raise InvalidInputError(
                f"{positions.numel()} slice positions for a batch of {batch} latents",
                fix="give one position per slice of the batch (or one for all)",
            )
        return positions.repeat(batch // positions.numel())

    def alpha_bar(self, t: int | torch.Tensor) -> torch.Tensor:
        """Cumulative signal fraction ``a_t`` (scalar tensor, or one per batch item)."""
        return self.alphas_cumprod[torch.as_tensor(t, device=self.device).long()]

    def predict_x0(self, z_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Tweedie estimate of the clean latent: ``(z_t - sqrt(1-a_t) eps) / sqrt(a_t)``."""
        eps = self.predict_eps(z_t, t)
        return tweedie_x0(z_t, eps, self.alpha_bar(t).reshape(-1, *[1] * (z_t.ndim - 1)))

    @property
    def has_diffusion_model(self) -> bool:
        """Whether the checkpoint holds the diffusion UNet (not only the autoencoder)."""
        return self.unet is not None

    def ddim_timesteps(self, n_steps: int) -> list[int]:
        """``n_steps`` evenly spaced training timesteps, from noisiest to cleanest."""
        if not 1 <= n_steps <= self.num_train_timesteps:
            raise InvalidInputError(
                f"n_steps must be in 1..{self.num_train_timesteps}, got {n_steps}"
            )
        steps = np.linspace(self.num_train_timesteps - 1, 0, n_steps).round().astype(int)
        return [int(s) for s in steps]

    @property
    def size_multiple(self) -> int:
        """Image sizes must be multiples of this: the autoencoder's downsampling factor times
        the UNet's own downsampling (``2**(levels - 1)``)."""
        levels = len(self.config.unet.channels) if self.unet is not None else 1
        return self.downsampling_factor * 2 ** (levels - 1)

    def latent_shape(self, image_shape: Sequence[int] | None = None) -> tuple[int, ...]:
        """Latent shape (without batch) for an image of ``image_shape`` (default: training)."""
        size = image_shape or self.image_size
        return (self.latent_channels, *[s // self.downsampling_factor for s in size])

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        n_steps: int = 50,
        generator: torch.Generator | None = None,
        image_shape: Sequence[int] | None = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Unconditional DDIM samples, images ``(n, 1, *spatial)`` in ``[0, 1]``-ish range.

        One standard normal draw per step from ``generator`` whatever ``eta``, so a seed
        gives the same stream for every ``eta``."""
        shape = (n, *self.latent_shape(image_shape))
        z = gaussian_like(torch.empty(shape, device=self.device), generator)
        steps = self.ddim_timesteps(n_steps)
        for i, t in enumerate(steps):
            z0 = self.predict_x0(z, t)
            a_prev = self.alpha_bar(steps[i + 1]) if i + 1 < len(steps) else torch.tensor(1.0)
            noise = gaussian_like(z, generator)
            z = ddim_step(z, z0, self.alpha_bar(t), a_prev.to(self.device), eta=eta, noise=noise)
        return self.decode(z)

    def _check_image(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != 1:
            raise InvalidInputError(
                f"expected images (B, 1, {self.spatial_dims} spatial axes), got {tuple(x.shape)}",
                fix="add batch and channel axes: x[None, None]",
            )
        bad = [s for s in x.shape[2:] if s % self.downsampling_factor]
        if bad:
            raise InvalidInputError(
                f"image size {tuple(x.shape[2:])} is not a multiple of the downsampling "
                f"factor {self.downsampling_factor}",
                fix="pad the image (medldm.data.slices.crop_or_pad)",
            )


def prior_folder(name_or_path: str | Path) -> Path:
    """The checkpoint folder of a shipped prior's name (``"brain_t1_2d"``) or of a path.

    >>> prior_folder("brain_t1_2d").name
    'brain_t1_2d'
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    shipped = SHIPPED_DIR / str(name_or_path)
    if not shipped.is_dir():
        raise DataNotFoundError(
            f"no prior named {name_or_path!r}",
            fix=f"use a checkpoint folder path or one of the shipped priors: "
            f"{', '.join(shipped_priors()) or 'none installed'}",
        )
    return shipped


def load_prior(
    name_or_path: str | Path, device: str | torch.device = "auto", precision: str = "fp32"
) -> Prior:
    """Load a shipped prior by name (``"brain_t1_2d"``) or any checkpoint folder by path;
    ``precision`` of its network calls as in :class:`Prior`."""
    loaded = load_prior_checkpoint(prior_folder(name_or_path), device=resolve_device(device))
    return Prior(loaded, device=device, precision=precision)
