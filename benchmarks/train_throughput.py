"""Training throughput (images/s) of each prior's two stages, one process against 2-process DDP.

For every model preset named, run a short training of the autoencoder and of the diffusion
UNet (on the shipped autoencoder of that name when there is one, else on the stage-1
checkpoint this script just trained) into a scratch run folder, once as a single process and
once under ``torchrun --nproc_per_node=2`` (gloo on CPU, one thread per rank as torchrun
sets it), and read the images/s the trainer logs at its last step (all ranks together; the
first steps, with their warm-up, are inside the average). Validation and checkpoints are
pushed past the end so only training steps are timed.

``--precision fp32 bf16`` runs each configuration in both precisions (bf16 autocast needs
native hardware support: a CUDA GPU, or a CPU with AVX512-BF16/AMX) and adds the bf16/fp32
ratio, the two measured side by side in one run.

Run::

    .venv/bin/python benchmarks/train_throughput.py brain_t1_2d ct_2d --steps 30 \\
        --precision fp32 bf16 --ranks 1 --json benchmarks/results/train_throughput/bf16.json
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
        # a short timing run has no room for the preset's learning-rate cooldown
        overrides += [f"{key}.sample_steps=2", f"++{key}.lr_cooldown_steps=0"]
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


def measure(
    model: str, steps: int, precisions: list[str], ranks_list: list[int]
) -> dict[str, float]:
    """images/s for both stages of ``model`` for every (precision, number of processes)."""
    shipped = ROOT / "medldm" / "models" / "weights" / model
    result: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"throughput_{model}_") as scratch:
        for precision in precisions:
            for ranks in ranks_list:
                run_dir = Path(scratch) / f"{precision}_ranks{ranks}"
                label = f"{precision}_ranks{ranks}"
                result[f"autoencoder_{label}"] = _train(
                    "autoencoder",
                    model,
                    run_dir,
                    steps,
                    ranks,
                    [f"++model.autoencoder_training.precision={precision}"],
                )
                stage1 = (
                    shipped
                    if (shipped / "config.json").exists()
                    else run_dir / "autoencoder" / "prior"
                )
                result[f"diffusion_{label}"] = _train(
                    "diffusion",
                    model,
                    run_dir,
                    steps,
                    ranks,
                    [f"autoencoder={stage1}", f"++model.diffusion_training.precision={precision}"],
                )
                shutil.rmtree(run_dir, ignore_errors=True)
                print(model, label, {k: round(v, 1) for k, v in result.items()}, flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model presets (configs/model/)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "auto"]
    )
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    table = {m: measure(m, args.steps, args.precision, args.ranks) for m in args.models}
    labels = [f"{p}_ranks{r}" for p in args.precision for r in args.ranks]
    header = [f"{stage} {label}" for stage in ("autoencoder", "diffusion") for label in labels]
    ratio = "fp32" in args.precision and "bf16" in args.precision
    if ratio:
        header += [
            f"bf16/fp32 {stage} ranks{r}"
            for stage in ("autoencoder", "diffusion")
            for r in args.ranks
        ]
    print("| prior | " + " | ".join(header) + " |")
    print("|---" * (len(header) + 1) + "|")
    for model, r in table.items():
        cells = [
            f"{r[f'{stage}_{label}']:.1f}"
            for stage in ("autoencoder", "diffusion")
            for label in labels
        ]
        if ratio:
            cells += [
                f"{r[f'{stage}_bf16_ranks{k}'] / r[f'{stage}_fp32_ranks{k}']:.2f}x"
                for stage in ("autoencoder", "diffusion")
                for k in args.ranks
            ]
        print(f"| {model} | " + " | ".join(cells) + " |")
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
