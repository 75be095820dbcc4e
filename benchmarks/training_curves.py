"""Learning curves of training runs side by side: validation against steps and wall time.

Reads each run folder's ``validation_log.csv`` and ``train_log.csv`` (written by
``medldm.train``; a campaign stage's folder is ``~/.cache/medldm/campaign/<prior>/<stage>``)
and prints, per run, the validation metric at every logged step with the cumulated
training wall time, and the mean training loss between validations; ``--png`` draws both
curves (against steps and against wall time). Extra reference points from a Markdown table
or an earlier session can be given as ``--reference NAME:STEP=VALUE,STEP=VALUE``.

Wall time is the trainer's own ``elapsed_s`` per logged interval, summed, so resumed runs
(many short campaign calls) count only training time.

Run::

    .venv/bin/python benchmarks/training_curves.py \\
        residual=~/.cache/medldm/campaign/brain_t1_2d/autoencoder \\
        --reference "plain KL 1e-9:250=21.26,500=22.76,1000=24.09,1500=24.99,3000=26.29" \\
        --png benchmarks/results/autoencoder_recipes/residual_vs_plain.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def wall_time(rows: list[dict[str, str]]) -> dict[int, float]:
    """Cumulated training seconds at each logged step (``elapsed_s`` restarts at every
    resumed call, so a drop starts a new segment)."""
    total, previous, out = 0.0, 0.0, {}
    for row in rows:
        elapsed = float(row["elapsed_s"])
        total += elapsed - previous if elapsed >= previous else elapsed
        previous = elapsed
        out[int(row["step"])] = total
    return out


def curve(run: Path, metric: str) -> list[tuple[int, float, float | None, float | None]]:
    """``(step, metric, wall seconds, mean training loss since the previous point)``."""
    validation = _rows(run / "validation_log.csv")
    train = _rows(run / "train_log.csv")
    seconds = wall_time(train)
    points, last = [], 0
    for row in validation:
        if not row.get(metric):
            continue
        step = int(row["step"])
        losses = [
            float(r["loss"]) for r in train if last < int(r["step"]) <= step and r.get("loss")
        ]
        known = [s for s in seconds if s <= step]
        points.append(
            (
                step,
                float(row[metric]),
                seconds[max(known)] if known else (0.0 if step == 0 else None),
                sum(losses) / len(losses) if losses else None,
            )
        )
        last = step
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_FOLDER")
    parser.add_argument("--metric", default="val_psnr")
    parser.add_argument("--reference", action="append", default=[], help="NAME:STEP=V,...")
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    curves = {}
    for item in args.runs:
        name, folder = item.split("=", 1)
        curves[name] = curve(Path(folder).expanduser(), args.metric)
    for name, points in curves.items():
        print(f"## {name}\n\n| step | {args.metric} | wall time (min) | mean train loss |")
        print("|---|---|---|---|")
        for step, value, seconds, loss in points:
            minutes = "" if seconds is None else f"{seconds / 60:.1f}"
            loss_text = "" if loss is None else f"{loss:.4f}"
            print(f"| {step} | {value:.3f} | {minutes} | {loss_text} |")
        print()
    references = {}
    for item in args.reference:
        name, values = item.split(":", 1)
        references[name] = [
            (int(s), float(v)) for s, v in (pair.split("=") for pair in values.split(","))
        ]
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 4))
        for name, points in curves.items():
            by_step.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
            timed = [(p[2] / 60, p[1]) for p in points if p[2] is not None]
            by_time.plot([t for t, _ in timed], [v for _, v in timed], "o-", label=name)
        for name, points in references.items():
            by_step.plot([s for s, _ in points], [v for _, v in points], "s--", label=name)
        by_step.set(xlabel="training step", ylabel=args.metric)
        by_time.set(xlabel="training wall time (min)", ylabel=args.metric)
        for axis in (by_step, by_time):
            axis.grid(alpha=0.3)
            axis.legend(fontsize=8)
        figure.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.png, dpi=100)
        print(f"figure: {args.png}")


if __name__ == "__main__":
    main()
