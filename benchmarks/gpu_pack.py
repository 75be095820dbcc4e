"""Pack what a bare GPU machine lacks to continue the training campaign there.

The lent GPU machine (see the device tool) has PyTorch, NumPy, scikit-image and
matplotlib, but not MONAI, Hydra, OmegaConf or antlr4 (nor nibabel and pydicom, which
training from a pack does not import), and no data root. This script writes, into an ignored folder
of the checkout (default ``.gpu_pack/``):

* ``wheels/``: pure-Python wheels of those packages (pip download, for the machine's
  Python 3.12);
* ``<prior>.npz``: the prior's training images as they reach the trainer (the model view
  of ``medldm.train.data``) and the validation images the trainer scores (its evenly
  spaced ``n_validation``), 8-bit (step 1/255, far below the autoencoders' errors); only
  every ``--every``-th training image when the pack must be smaller (everything that
  travels, the checkout included, must stay under 64 MiB);
* ``run.sh``: the command for the device tool: install the wheels, continue the campaign
  from the milestone committed in ``campaign/milestones`` on the GPU (bf16) for
  ``--minutes``, and copy the new milestone and the logs to ``$OUT``.

Back on the CPU machine, copy the returned milestone folder over
``campaign/milestones/<prior>/<stage>/``, delete the local run state of that stage (or keep
it to stay on the CPU's own run), and rerun ``medldm-campaign``: it restarts from the
milestone's step.

Run::

    .venv/bin/python benchmarks/gpu_pack.py brain_t1_2d --every 2 --minutes 8
    # then, with the device tool: run(command="bash .gpu_pack/run.sh", carry=[".gpu_pack"],
    #                                 timeout_s=600)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

from medldm.train.campaign import load_model_preset
from medldm.train.data import build_training_data, save_packed_arrays

ROOT = Path(__file__).resolve().parents[1]
WHEELS = {  # pure-Python packages medldm's training needs that the GPU image lacks
    "monai": "1.6.1",
    "hydra-core": None,
    "omegaconf": None,
    "antlr4-python3-runtime": "4.9.3",
}
LIMIT_BYTES = 64 * 2**20


def download_wheels(folder: Path) -> None:
    """Wheels of :data:`WHEELS` (pure Python, so any Python 3 takes them); ``pip wheel``
    builds one where PyPI has only a source archive (antlr4)."""
    from importlib.metadata import version

    folder.mkdir(parents=True, exist_ok=True)
    for name, pinned in WHEELS.items():
        requirement = f"{name}=={pinned or version(name)}"
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
        subprocess.run([*command, "-w", str(folder), requirement], check=True)


def tracked_bytes() -> int:
    """Size of what the device tool sends anyway: the checkout's tracked files."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return sum((ROOT / p).stat().st_size for p in listing.decode().split("\0") if p)


RUN_SH = """#!/usr/bin/env bash
# Continue the {prior} campaign on the GPU machine (written by benchmarks/gpu_pack.py).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \\
    --target /tmp/site .gpu_pack/wheels/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python3 -m medldm.train.campaign {prior} --device cuda --minutes {minutes} \\
    --root /tmp/campaign --milestones campaign/milestones --data .gpu_pack/{prior}.npz \\
    --milestone-every 1000 2>&1 | tr '\\r' '\\n' | { grep -v 'it/s]$' || true; } \\
    | tee "$OUT/train.log"
for stage in autoencoder diffusion; do
  if [ -f campaign/milestones/{prior}/$stage/config.json ]; then
    mkdir -p "$OUT/$stage" && cp campaign/milestones/{prior}/$stage/* "$OUT/$stage/"
  fi
  for log in train_log validation_log; do
    [ -f /tmp/campaign/{prior}/$stage/$log.csv ] && cp /tmp/campaign/{prior}/$stage/$log.csv \\
        "$OUT/${{stage}}_$log.csv" || true
  done
done
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prior", help="model preset (configs/model/<prior>.yaml)")
    parser.add_argument("--out", type=Path, default=ROOT / ".gpu_pack")
    parser.add_argument("--every", type=int, default=1, help="keep every n-th training image")
    parser.add_argument("--minutes", type=float, default=8.0, help="GPU training time")
    args = parser.parse_args(argv)

    preset = load_model_preset(args.prior)
    data = build_training_data(**{**preset["data"], "augment": False})
    train = np.asarray(data.train.images)[:: args.every]
    n_validation = int(preset.get("autoencoder_training", {}).get("n_validation", 64))
    picks = np.linspace(0, len(data.validation) - 1, n_validation).astype(int)
    validation = np.asarray(data.validation.images)[picks]  # the trainer's own choice
    pack = save_packed_arrays(
        args.out / f"{args.prior}.npz",
        train,
        validation,
        data.train.flip_axis,
        {**data.description, "every": args.every, "n_packed": len(train)},
    )
    download_wheels(args.out / "wheels")
    (args.out / "run.sh").write_text(RUN_SH.format(prior=args.prior, minutes=args.minutes))
    packed = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    total = packed + tracked_bytes()
    print(f"pack {pack.name}: {len(train)} training + {len(validation)} validation images")
    print(f"pack {packed / 2**20:.1f} MiB + checkout {(total - packed) / 2**20:.1f} MiB "
          f"= {total / 2**20:.1f} MiB of the 64 MiB the device tool carries")  # fmt: skip
    if total > LIMIT_BYTES:
        raise SystemExit("too large: raise --every (fewer training images) and pack again")


if __name__ == "__main__":
    main()
