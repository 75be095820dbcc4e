"""Milliseconds per network call of a prior in fp32 and bf16, one network at a time.

``benchmarks/ldm_precision.py`` times whole reconstructions; this script splits the time of
one ``latent_dds`` step into its three network calls (UNet, decoder, encoder) at the
solver's batch (``--batch``: its K samples) and times each

* in fp32,
* under bf16 autocast (what ``precision=bf16`` does; the autoencoder in channels_last on CPU
  as :class:`medldm.models.prior.Prior` puts it),
* with the weights themselves cast to bf16 (no autocast; an alternative not used),
* optionally (``--compile``) compiled by ``torch.compile`` under bf16 autocast,

and reports the bf16 speed-up of the three calls together, the bound on the speed-up of a
reconstruction whose time is all network calls. Relative output errors of the bf16 weights
against fp32 are printed beside.

Run::

    .venv/bin/python benchmarks/network_precision.py --prior brain_t1_2d --compile \\
        --json benchmarks/results/ldm_precision/networks_cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from medldm.models.prior import load_prior


def milliseconds(call: Callable[[], object], repeats: int) -> float:
    """Mean wall time of ``call`` in ms after two warm-up calls."""
    call()
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000.0


def relative_error(a: torch.Tensor, reference: torch.Tensor) -> float:
    return float((a.float() - reference).norm() / reference.norm())


def measure(prior_name: str, batch: int, repeats: int, compile_: bool) -> dict:
    prior = load_prior(prior_name, device="cpu", precision="fp32")
    autoencoder, unet = prior.autoencoder, prior.unet
    latent = prior.latent_shape()
    z = torch.randn(batch, *latent)
    x = torch.rand(batch, 1, *prior.image_size)
    t = torch.full((batch,), 500)
    calls = {
        "unet": lambda m, z=z: m["unet"](z, timesteps=t),
        "decoder": lambda m, z=z: m["ae"].decode(z),
        "encoder": lambda m, x=x: m["ae"].encode(x),
    }
    rows: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        fp32 = {"unet": unet, "ae": autoencoder}
        reference = {
            name: call(fp32)[0] if name == "encoder" else call(fp32) for name, call in calls.items()
        }
        rows["fp32"] = {
            name: milliseconds(lambda c=call: c(fp32), repeats) for name, call in calls.items()
        }
        channels_last = copy.deepcopy(autoencoder).to(memory_format=torch.channels_last)
        autocast = {"unet": unet, "ae": channels_last}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            rows["bf16 autocast"] = {
                name: milliseconds(lambda c=call: c(autocast), repeats)
                for name, call in calls.items()
            }
        weights = {
            "unet": copy.deepcopy(unet).to(torch.bfloat16),
            "ae": copy.deepcopy(autoencoder)
            .to(torch.bfloat16)
            .to(memory_format=torch.channels_last),
        }
        zb, xb = z.bfloat16(), x.bfloat16()
        bf16_calls = {
            "unet": lambda m: m["unet"](zb, timesteps=t),
            "decoder": lambda m: m["ae"].decode(zb),
            "encoder": lambda m: m["ae"].encode(xb),
        }
        rows["bf16 weights"] = {
            name: milliseconds(lambda c=call: c(weights), repeats)
            for name, call in bf16_calls.items()
        }
        errors = {
            name: relative_error(
                call(weights)[0] if name == "encoder" else call(weights), reference[name]
            )
            for name, call in bf16_calls.items()
        }
        compile_seconds = None
        if compile_:
            compiled = {
                "unet": torch.compile(unet),
                "ae": torch.nn.Module(),
            }
            compiled["ae"].decode = torch.compile(channels_last.decode)
            compiled["ae"].encode = torch.compile(channels_last.encode)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                for call in calls.values():
                    call(compiled)
                compile_seconds = time.perf_counter() - start
                rows["bf16 autocast + compile"] = {
                    name: milliseconds(lambda c=call: c(compiled), repeats)
                    for name, call in calls.items()
                }
    for row in rows.values():
        row["all three"] = sum(row[name] for name in calls)
    base = rows["fp32"]["all three"]
    return {
        "prior": prior_name,
        "batch": batch,
        "latent": list(latent),
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "ms": {k: {n: round(v, 1) for n, v in row.items()} for k, row in rows.items()},
        "speedup_all_three": {k: round(base / row["all three"], 2) for k, row in rows.items()},
        "bf16_weights_relative_error": {k: round(v, 4) for k, v in errors.items()},
        "compile_seconds": None if compile_seconds is None else round(compile_seconds, 1),
    }


def markdown(result: dict, command: str) -> str:
    names = ["unet", "decoder", "encoder", "all three"]
    lines = [
        f"# Network calls of {result['prior']} in fp32 and bf16",
        "",
        f"`{command}` on {result['machine']}, {result['threads']} threads; batch "
        f"{result['batch']} (the solver's K samples), latent {result['latent']}; ms per call.",
        "",
        "| precision | " + " | ".join(names) + " | speed-up (all three) |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for label, row in result["ms"].items():
        cells = " | ".join(f"{row[n]:.1f}" for n in names)
        lines.append(f"| {label} | {cells} | {result['speedup_all_three'][label]:.2f}x |")
    errors = ", ".join(f"{k} {v}" for k, v in result["bf16_weights_relative_error"].items())
    lines += ["", f"Relative output error of the bf16 weights against fp32: {errors}."]
    if result["compile_seconds"] is not None:
        lines.append(f"torch.compile took {result['compile_seconds']} s before the first call.")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", default="brain_t1_2d")
    parser.add_argument("--batch", type=int, default=4, help="the solver's K samples")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--json", type=Path, default=None, help="results (and a .md beside)")
    args = parser.parse_args(argv)
    command = "python benchmarks/network_precision.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    result = measure(args.prior, args.batch, args.repeats, args.compile)
    text = markdown(result, command)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"command": command, **result}, indent=2) + "\n")
        args.json.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
