"""Native 3D latent diffusion (the ``brain_t1_3d`` prior) against TV on 3D MRI.

``brain_t1_3d`` is no longer shipped (it does not beat the 2D prior slice by slice with TV
along z on whole volumes; its MODEL_CARD.md says by how much): its weights are the 3D
recipe's campaign milestone, ``campaign/milestones/brain_t1_3d/diffusion``, the default
``--prior`` here.

The IXI **test** volumes at 4 mm (64 x 64 x 48, the prior's grid and intensity rule),
measured with the ``mri_4x`` physics built for a volume (3D k-space, random phase-encode
planes, 8 % fully sampled centre, complex noise sigma 0.005, smooth random phase), then
reconstructed by zero filling, TV (``configs/solver/tv_mri_4x.yaml``, tuned on 2D training
slices) and ``latent_dds`` with the options of ``configs/solver/latent_dds_mri_4x.yaml``
(tuned for the 2D prior; not re-tuned for this one). Metrics: magnitude, whole volume,
data range = ground truth max - min; seed i for volume i.

Run::

    .venv/bin/python benchmarks/ldm_3d_native.py [--volumes 3] [--json out.json]
    .venv/bin/python benchmarks/ldm_3d_native.py --set final_tv_weight=0   # the prior alone
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf

from medldm.metrics import psnr, ssim
from medldm.models.prior import load_prior
from medldm.problems.configs import instantiate as instantiate_with_options
from medldm.problems.simulate import simulate
from medldm.train.data import ixi_volumes

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BRAIN_3D = str(CONFIGS.parent / "campaign" / "milestones" / "brain_t1_3d" / "diffusion")


def _load(group: str, name: str):
    return instantiate(OmegaConf.load(CONFIGS / group / f"{name}.yaml"))


def run(n_volumes: int = 3, prior_name: str = BRAIN_3D, **dds_overrides) -> dict:
    prior = load_prior(prior_name, device="auto")
    volumes, subjects = ixi_volumes("test", prior.image_size, downsample=2)
    factory = _load("physics", "mri_4x")
    solvers = {
        "zero_filled": _load("solver", "zero_filled"),
        "tv": _load("solver", "tv_mri_4x"),
        # the overrides go through LatentDDS.__init__; unknown names are an error
        "latent_dds": instantiate_with_options(
            OmegaConf.load(CONFIGS / "solver" / "latent_dds_mri_4x.yaml"), dds_overrides
        ),
    }
    rows = []
    for i, (volume, subject) in enumerate(zip(volumes[:n_volumes], subjects, strict=False)):
        x = torch.from_numpy(volume)[None, None].to(prior.device)
        physics, y = simulate(x, factory, seed=i)
        for name, solver in solvers.items():
            start = time.perf_counter()
            result = solver.solve(
                y,
                physics,
                prior if name == "latent_dds" else None,
                generator=torch.Generator().manual_seed(i),
            )
            seconds = time.perf_counter() - start
            estimate = result.estimate.abs()[0, 0].float().cpu().numpy()
            row = {
                "subject": subject,
                "solver": name,
                "psnr": psnr(estimate, volume),
                "ssim": ssim(estimate, volume),
                "seconds": seconds,
            }
            rows.append(row)
            print(f"{subject} {name:12s} {row['psnr']:.2f} dB  {row['ssim']:.4f}  {seconds:.1f} s")
    summary = {
        name: {
            "psnr_mean": float(np.mean([r["psnr"] for r in rows if r["solver"] == name])),
            "ssim_mean": float(np.mean([r["ssim"] for r in rows if r["solver"] == name])),
            "seconds_mean": float(np.mean([r["seconds"] for r in rows if r["solver"] == name])),
        }
        for name in solvers
    }
    return {"prior": prior_name, "volumes": n_volumes, "rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--prior", default=BRAIN_3D, help="a prior name or folder")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="latent_dds option overrides"
    )
    args = parser.parse_args()
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    result = run(args.volumes, args.prior, **overrides)
    result["overrides"] = overrides
    for name, values in result["summary"].items():
        print(
            f"mean {name:12s} {values['psnr_mean']:.2f} dB / {values['ssim_mean']:.4f}, "
            f"{values['seconds_mean']:.1f} s per volume"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
