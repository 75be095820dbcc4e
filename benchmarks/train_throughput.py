"""Training throughput (images/s) of each prior's two stages, one process against 2-process DDP.

For every model preset named, run a short training of the autoencoder and of the diffusion
UNet (on the shipped autoencoder of that name when there is one, else on the stage-1
checkpoint this script just trained) into a scratch run folder, once as a single process and
once under ``torchrun --nproc_per_node=2`` (gloo on CPU, one thread per rank as torchrun
sets it), and read the images/s the trainer logs at its last step (all ranks together; the
first steps, with their warm-up, are inside the average). Validation and checkpoints are
pushed past the end so only training steps are timed.

Run::

    .venv/bin/python benchmarks/train_throughput.py brain_t1_2d ct_2d microscopy_2d \\
        --steps 40 --json benchmarks/results/train_throughput/2d.json
    .venv/bin/python benchmarks/train_throughput.py brain_t1_3d --steps 20 \\
        --json benchmarks/results/train_throughput/3d.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _last_rate(log: Path) -> float:
    """The images/s of the last row of a trainer's CSV log."""
    with log.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise RuntimeError(f"{log} has no rows: did the training run?")
    return float(rows[-1]["images_per_s"])


def _train(
    stage: str, model: str, run_dir: Path, steps: int, ranks: int, extra: list[str]
) -> float:
    """Run one stage for ``steps`` steps on ``ranks`` processes; return images/s."""
    key = f"model.{stage}_training"
    overrides = [
        f"model={model}",
        f"run_dir={run_dir}",
        f"{key}.steps={steps}",
        f"{key}.log_every={steps}",
        f"{key}.validate_every={10 * steps}",
        f"{key}.checkpoint_every={10 * steps}",
        "device=cpu",
        *extra,
    ]
    if stage == "diffusion":
        overrides.append(f"{key}.sample_steps=2")
    script = str(BIN / f"medldm-train-{stage}")
    if ranks == 1:
        command = [script, *overrides]
    else:
        command = [
            str(BIN / "torchrun"),
            "--standalone",
            f"--nproc_per_node={ranks}",
            script,
            *overrides,
        ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return _last_rate(run_dir / stage / "train_log.csv")


def measure(model: str, steps: int) -> dict[str, float]:
    """images/s for both stages of ``model``, single process and 2-process DDP."""
    shipped = ROOT / "medldm" / "models" / "weights" / model
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"throughput_{model}_") as scratch:
        for ranks in (1, 2):
            run_dir = Path(scratch) / f"ranks{ranks}"
            result[f"autoencoder_ranks{ranks}"] = _train(
                "autoencoder", model, run_dir, steps, ranks, []
            )
            stage1 = (
                shipped if (shipped / "config.json").exists() else run_dir / "autoencoder" / "prior"
            )
            result[f"diffusion_ranks{ranks}"] = _train(
                "diffusion", model, run_dir, steps, ranks, [f"autoencoder={stage1}"]
            )
            shutil.rmtree(run_dir, ignore_errors=True)
            print(model, ranks, {k: round(v, 1) for k, v in result.items()}, flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model presets (configs/model/)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    table = {model: measure(model, args.steps) for model in args.models}
    print("| prior | autoencoder 1 proc | autoencoder DDP 2 | diffusion 1 proc | diffusion DDP 2 |")
    print("|---|---|---|---|---|")
    for model, r in table.items():
        print(
            f"| {model} | {r['autoencoder_ranks1']:.1f} | {r['autoencoder_ranks2']:.1f} "
            f"| {r['diffusion_ranks1']:.1f} | {r['diffusion_ranks2']:.1f} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": " ".join(["benchmarks/train_throughput.py", *sys.argv[1:]]),
            "steps": args.steps,
            "images_per_s": table,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
