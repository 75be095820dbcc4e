"""A training campaign that survives interruption: many short runs of one command.

``medldm-campaign brain_t1_2d ct_2d --minutes 120`` continues, for each prior in turn,
whatever stage comes next (``autoencoder``, then ``diffusion``), each to the step count its
model preset (``configs/model/<name>.yaml``) asks for, until the time budget is spent. Then
it stops at a checkpoint, as it does on SIGTERM or Ctrl-C. The next call resumes where
this one stopped, on this machine or, with ``--device cuda``, on a GPU.

Where things live:

* **run state** (full training state: weights, EMA, optimizer, random streams):
  ``<root>/<prior>/<stage>/``; ``root`` is ``--root``, else ``$MEDLDM_CAMPAIGN_DIR``, else
  ``~/.cache/medldm/campaign`` (outside the checkout, so a fresh clone picks up the run);
* **milestones** (fp16 prior checkpoints, small enough to commit): every
  ``--milestone-every`` steps and at the end of every call, the EMA weights are written to
  ``<milestones>/<prior>/<stage>/`` (default ``campaign/milestones`` in the checkout).
* a preset with ``autoencoder_from: <prior>`` and no ``autoencoder_training`` trains only
  the diffusion stage, on that prior's autoencoder.
  When the run state is lost (a new machine), a stage restarts from its milestone's weights
  and step (with a fresh optimizer), so nothing depends on the cache folder surviving.

Threads: ``--threads auto`` takes the cores that are idle now (the cores minus the
1-minute load average, at least one): oversubscribed cores once slowed training 10-20x.

Example::

    medldm-campaign brain_t1_2d --minutes 60 --threads 1
    medldm-campaign --status            # what each prior has done, and what comes next
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medldm.errors import InvalidInputError
from medldm.models.config import LDMConfig, UNetConfig
from medldm.problems.configs import config_dir
from medldm.train.loop import StopRequest

STAGES = ("autoencoder", "diffusion")
CONFIG_DIR = config_dir()


def default_root() -> Path:
    """``$MEDLDM_CAMPAIGN_DIR``, else ``$XDG_CACHE_HOME/medldm/campaign`` (``~/.cache``)."""
    if os.environ.get("MEDLDM_CAMPAIGN_DIR"):
        return Path(os.environ["MEDLDM_CAMPAIGN_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "medldm" / "campaign"


def idle_cores() -> int:
    """Cores not busy right now: ``cpu_count - loadavg(1 min)``, rounded, at least 1."""
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        load = 0.0
    return max(1, min(cores, round(cores - load)))


def load_model_preset(name: str, config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """``configs/model/<name>.yaml`` as plain containers."""
    from omegaconf import OmegaConf

    path = config_dir / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir / "model").glob("*.yaml"))
        raise InvalidInputError(
            f"no model preset named {name!r}", path=path, fix=f"use one of {', '.join(known)}"
        )
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


@dataclass
class StageStatus:
    """How far one stage of one prior has come."""

    prior: str
    stage: str
    step: int
    target: int
    source: str  # "state", "milestone" or "none"
    # a stage whose network must exist even at target 0: an autoencoder whose linear
    # shortcut is already the whole codec (``autoencoder_training: {steps: 0}``)
    needs_export: bool = False

    @property
    def done(self) -> bool:
        return self.step >= self.target and not (self.needs_export and self.source == "none")


class Campaign:
    """The stages of a set of priors, their run folders and their milestones."""

    def __init__(
        self,
        root: str | Path | None = None,
        milestones: str | Path | None = None,
        config_dir: Path = CONFIG_DIR,
        overrides: dict[str, dict[str, Any]] | None = None,
    ):
        self.root = Path(root) if root else default_root()
        self.milestones = (
            Path(milestones) if milestones else config_dir.parent / "campaign" / ("milestones")
        )
        self.config_dir = config_dir
        self.overrides = overrides or {}

    def preset(self, prior: str) -> dict[str, Any]:
        preset = load_model_preset(prior, self.config_dir)
        for section, values in self.overrides.items():
            preset.setdefault(section, {}).update(values)
        return preset

    def run_dir(self, prior: str, stage: str) -> Path:
        return self.root / prior / stage

    def milestone_dir(self, prior: str, stage: str) -> Path:
        return self.milestones / prior / stage

    def status(self, prior: str, stage: str) -> StageStatus:
        preset = self.preset(prior)
        target = int(preset.get(f"{stage}_training", {}).get("steps", 0))
        needs_export = stage == "autoencoder" and "autoencoder_training" in preset
        step, source = _saved_step(self.run_dir(prior, stage)), "state"
        if step is None:
            step, source = _milestone_step(self.milestone_dir(prior, stage), stage), "milestone"
        if step is None:
            step, source = 0, "none"
        return StageStatus(prior, stage, step, target, source, needs_export)

    def next_stage(self, prior: str) -> StageStatus | None:
        for stage in STAGES:
            status = self.status(prior, stage)
            if not status.done:
                return status
        return None

    def run_stage(
        self, prior: str, stage: str, stop: StopRequest, device: str, milestone_every: int
    ) -> StageStatus:
        """Train ``stage`` of ``prior`` until its target step or until ``stop``."""
        preset = self.preset(prior)
        run_dir = self.run_dir(prior, stage)
        milestone = self.milestone_dir(prior, stage)
        warm_start = None
        if _saved_step(run_dir) is None and _milestone_step(milestone, stage) is not None:
            warm_start = str(milestone)
        on_checkpoint = _MilestoneWriter(milestone, milestone_every)
        if stage == "autoencoder":
            from medldm.train.autoencoder import AutoencoderTraining, train_autoencoder

            training = AutoencoderTraining(
                **preset.get("autoencoder_training", {}),
                data=preset["data"],
                data_card=preset.get("data_card"),
                device=device,
                init_from=warm_start,
            )
            train_autoencoder(
                LDMConfig.from_dict(preset["ldm"]),
                training,
                run_dir,
                stop=stop,
                on_checkpoint=on_checkpoint,
            )
        else:
            from medldm.train.diffusion import DiffusionTraining, train_diffusion

            unet = preset["ldm"]["unet"]
            options = dict(preset.get("diffusion_training", {}))
            if options.get("init_weights"):
                options["init_weights"] = str(self._prior_source(options["init_weights"]))
            training = DiffusionTraining(
                **options,
                autoencoder=str(self._stage1_checkpoint(prior)),
                data=preset["data"],
                device=device,
                init_from=warm_start,
            )
            config = UNetConfig(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in unet.items()}
            )
            train_diffusion(config, training, run_dir, stop=stop, on_checkpoint=on_checkpoint)
        step = _saved_step(run_dir)
        if step is not None and (run_dir / "prior" / "config.json").is_file():
            # every call ends with a milestone, so a lost run state costs no steps
            on_checkpoint(run_dir / "prior", step, final=True)
        return self.status(prior, stage)

    def _stage1_checkpoint(self, prior: str) -> Path:
        """The autoencoder the diffusion stage trains on: the preset's ``autoencoder_from``
        (another prior's, shipped name or folder; then the preset has no autoencoder stage),
        else this prior's own stage 1 (its run, else its milestone)."""
        source = self.preset(prior).get("autoencoder_from")
        if source:
            return self._prior_source(source)
        exported = self.run_dir(prior, "autoencoder") / "prior"
        if (exported / "config.json").is_file():
            return exported
        return self.milestone_dir(prior, "autoencoder")

    def _prior_source(self, name: str) -> Path:
        """Another prior a preset starts from: a shipped name, a folder, or a folder in the
        checkout (``campaign/milestones/<prior>/<stage>``, wherever the campaign runs)."""
        from medldm.models.prior import prior_folder

        in_checkout = self.config_dir.parent / name
        return prior_folder(in_checkout if in_checkout.is_dir() else name)


class _MilestoneWriter:
    """Called by a trainer after each checkpoint: copies the exported prior, in fp16, to
    the milestone folder every ``every`` steps and at the stage's last step."""

    def __init__(self, folder: Path, every: int):
        self.folder, self.every = folder, every

    def __call__(self, prior_dir: Path, step: int, final: bool) -> None:
        if not final and (self.every <= 0 or step % self.every):
            return
        from medldm.models.checkpoint import load_prior_checkpoint, save_prior_checkpoint

        loaded = load_prior_checkpoint(prior_dir)
        meta = loaded.meta
        save_prior_checkpoint(
            self.folder,
            config=loaded.config,
            autoencoder=loaded.autoencoder,
            unet=loaded.unet,
            scale_factor=meta.get("scale_factor"),
            latent_normalization=meta.get("latent_normalization"),
            normalization=meta.get("normalization"),
            data_card=meta.get("data_card"),
            split=meta.get("split"),
            training={**meta.get("training", {}), "milestone_step": step},
            half=True,
            overwrite=True,
        )


def _saved_step(run_dir: Path) -> int | None:
    from medldm.train.loop import load_training_state

    state = load_training_state(run_dir)
    return None if state is None else int(state["step"])


def _milestone_step(folder: Path, stage: str) -> int | None:
    config = folder / "config.json"
    if not config.is_file():
        return None
    training = json.loads(config.read_text()).get("training", {})
    step = training.get(f"{stage}_steps")
    return None if step is None else int(step)


def run_campaign(
    priors: list[str],
    *,
    minutes: float,
    campaign: Campaign,
    device: str = "auto",
    milestone_every: int = 2000,
    stop: StopRequest | None = None,
) -> list[StageStatus]:
    """Advance ``priors`` stage by stage for at most ``minutes``; return their statuses."""
    stop = stop or StopRequest()
    stop.deadline = time.time() + 60.0 * minutes
    for prior in priors:
        while not stop.requested:
            status = campaign.next_stage(prior)
            if status is None:
                break
            print(f"[campaign] {prior}: {status.stage} from step {status.step} of {status.target}")
            campaign.run_stage(prior, status.stage, stop, device, milestone_every)
    return [campaign.status(p, s) for p in priors for s in STAGES]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="medldm-campaign", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("priors", nargs="*", default=["brain_t1_2d", "ct_2d"])
    parser.add_argument("--minutes", type=float, default=60.0, help="time budget of this call")
    parser.add_argument("--root", type=Path, help="run state folder (see module docstring)")
    parser.add_argument("--milestones", type=Path, help="fp16 milestone folder")
    parser.add_argument("--milestone-every", type=int, default=2000, help="steps")
    parser.add_argument("--threads", default="auto", help="'auto' or a number")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--data",
        type=Path,
        help="train on a pack of benchmarks/gpu_pack.py instead of the data root",
    )
    parser.add_argument("--status", action="store_true", help="print progress and exit")
    args = parser.parse_args(argv)
    overrides = {"data": {"kind": "arrays", "path": str(args.data)}} if args.data else None
    campaign = Campaign(args.root, args.milestones, overrides=overrides)
    if args.status:
        _print_status([campaign.status(p, s) for p in args.priors for s in STAGES], campaign)
        return
    threads = idle_cores() if args.threads == "auto" else int(args.threads)
    torch.set_num_threads(threads)
    print(f"[campaign] root {campaign.root}, {threads} thread(s), budget {args.minutes:g} min")
    statuses = run_campaign(
        args.priors,
        minutes=args.minutes,
        campaign=campaign,
        device=args.device,
        milestone_every=args.milestone_every,
        stop=StopRequest().install(),
    )
    _print_status(statuses, campaign)


def _print_status(statuses: list[StageStatus], campaign: Campaign) -> None:
    print(f"campaign root: {campaign.root}\nmilestones:    {campaign.milestones}")
    for s in statuses:
        mark = "done" if s.done else "next" if s.step or s.source != "none" else "todo"
        print(f"  {s.prior:14s} {s.stage:12s} {s.step:>7d} / {s.target:<7d} {mark} ({s.source})")


if __name__ == "__main__":
    main()
