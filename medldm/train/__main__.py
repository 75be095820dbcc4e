"""``python -m medldm.train {autoencoder,diffusion} [hydra overrides]``: the same entry
points as the console scripts, in a form ``torchrun -m`` can launch."""

from __future__ import annotations

import sys

from medldm.train.cli import autoencoder_main, diffusion_main


def main() -> None:
    stages = {"autoencoder": autoencoder_main, "diffusion": diffusion_main}
    if len(sys.argv) < 2 or sys.argv[1] not in stages:
        raise SystemExit("usage: python -m medldm.train {autoencoder,diffusion} [overrides]")
    stage = sys.argv.pop(1)
    stages[stage]()


if __name__ == "__main__":
    main()
