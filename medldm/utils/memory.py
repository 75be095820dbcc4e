"""Peak memory of a block of code, in MiB (the ``peak_mem_mb`` column).

* CUDA: ``torch.cuda.max_memory_allocated`` during the block minus the memory allocated
  when it started (tensors only; the caching allocator's reserve is not counted).
* CPU: the process's resident set size (RSS, from ``/proc/self/statm``) is sampled every
  ``interval_s`` (2 ms) by a background thread; the value is the highest sample minus the
  RSS at the start. It counts every allocation (NumPy, torch, SciPy) but can miss a
  spike shorter than the interval, and memory freed but kept by the allocator still
  counts. Where ``/proc`` is missing (macOS), the increase of ``ru_maxrss`` is used,
  which is 0 unless the block set a new peak for the process.

Example
-------
>>> import numpy as np
>>> with PeakMemory("cpu") as memory:
...     block = np.ones((4096, 4096))  # 128 MiB
>>> memory.peak_mb >= 0  # sampled every 2 ms: a short spike may be missed
True
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path
from types import TracebackType

import torch

_STATM = Path("/proc/self/statm")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MIB = 1024.0 * 1024.0


def resident_bytes() -> int | None:
    """Current resident set size of this process in bytes (None without ``/proc``)."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def _max_rss_bytes() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(usage if sys.platform == "darwin" else usage * 1024)


class PeakMemory:
    """Context manager measuring the peak extra memory of its block (``peak_mb``).

    Parameters
    ----------
    device:
        ``"cpu"``, ``"cuda"`` or a ``torch.device``: where the work happens.
    interval_s:
        CPU sampling interval in seconds.
    """

    def __init__(self, device: str | torch.device = "cpu", interval_s: float = 0.002):
        self.device = torch.device(device)
        self.interval_s = float(interval_s)
        self.peak_mb = 0.0
        self._start = 0
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            current = resident_bytes()
            if current is not None and current > self._peak:
                self._peak = current

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        current = resident_bytes()
        if current is None:
            self._start = _max_rss_bytes()
            return self
        self._start = self._peak = current
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is None:
            peak = _max_rss_bytes()
        else:
            self._stop.set()
            self._thread.join()
            self._thread = None
            peak = max(self._peak, resident_bytes() or 0)
        self.peak_mb = max(0.0, (peak - self._start) / _MIB)
