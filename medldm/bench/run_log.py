"""What produced the results: one YAML record per benchmark run (or multirun job).

``output_dir/runs/<UTC time>_<pid>.yaml`` holds the command line, the job's overrides,
the resolved config, the medldm version, the device and the host; the report lists them
all, since one ``results.csv`` may gather the rows of several runs (resumed runs, the
jobs of a multirun).

Example
-------
>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> _ = record_run(out, command="medldm-bench seeds=[0]", config={"seeds": [0]})
>>> [run["command"] for run in read_runs(out)]
['medldm-bench seeds=[0]']
"""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from medldm.utils.files import atomic_write_text

RUNS_DIR = "runs"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("medldm")
    except Exception:
        return "unknown"


def record_run(
    output_dir: str | Path,
    *,
    command: str,
    config: dict[str, Any],
    overrides: list[str] | None = None,
    device: str = "",
) -> Path:
    """Write the record of one run and return its path."""
    now = datetime.now(timezone.utc)
    record = {
        "started_at": now.isoformat(timespec="seconds"),
        "command": command,
        "overrides": list(overrides or []),
        "device": device,
        "host": platform.node(),
        "medldm_version": _version(),
        "config": config,
    }
    name = f"{now.strftime('%Y%m%dT%H%M%S_%fZ')}_{os.getpid()}.yaml"
    path = Path(output_dir) / RUNS_DIR / name
    return atomic_write_text(path, yaml.safe_dump(record, sort_keys=False), overwrite=True)


def read_runs(output_dir: str | Path) -> list[dict[str, Any]]:
    """All run records, oldest first (unreadable ones skipped)."""
    runs = []
    for path in sorted((Path(output_dir) / RUNS_DIR).glob("*.yaml")):
        try:
            record = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(record, dict):
            runs.append(record)
    return runs
