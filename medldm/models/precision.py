"""Numerical precision of network calls: bf16 autocast where the hardware runs it fast.

``precision`` is one of ``"auto"``, ``"fp32"`` or ``"bf16"``:

* ``"auto"`` picks bf16 on a CUDA GPU and on a CPU with native bf16 instructions
  (AVX512-BF16 or AMX-BF16; there the autoencoder's training step runs 2-3x faster), and
  fp32 everywhere else;
* ``"bf16"`` asks for bf16 and fails clearly where the CPU would only emulate it;
* ``"fp32"`` switches autocast off.

Only the network calls run under autocast; losses, data consistency (FFTs, CG, TV) and
optimizer steps stay in fp32.

Example
-------
>>> import torch
>>> resolve_precision("fp32", torch.device("cpu"))
'fp32'
>>> with autocast(torch.device("cpu"), "fp32"):
...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
torch.float32
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache

import torch

from medldm.errors import InvalidInputError

PRECISIONS = ("auto", "fp32", "bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True when this CPU executes bf16 matrix products natively (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for name in checks:
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # pragma: no cover - probe unavailable in this build
            continue
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` on ``device`` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise InvalidInputError(
            f"unknown precision {precision!r}", fix=f"use one of {', '.join(PRECISIONS)}"
        )
    device = torch.device(device)
    native = (device.type == "cuda" and torch.cuda.is_bf16_supported()) or (
        device.type == "cpu" and cpu_has_native_bf16()
    )
    if precision == "auto":
        return "bf16" if native else "fp32"
    if precision == "bf16" and not native:
        raise InvalidInputError(
            f"bf16 was asked for, but this {device.type} has no native bf16 support "
            "(it would be emulated, slower than fp32)",
            fix="use precision=auto or precision=fp32",
        )
    return precision


@contextlib.contextmanager
def autocast(device: torch.device | str, precision: str) -> Iterator[None]:
    """``torch.autocast`` in bf16 when ``precision`` resolves to bf16 on ``device``."""
    device = torch.device(device)
    enabled = resolve_precision(precision, device) == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled):
        yield
