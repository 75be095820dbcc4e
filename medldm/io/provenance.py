"""Provenance sidecars: what produced an output, from which inputs, with which software.

:func:`write_provenance` writes a JSON file next to an output:

* for an output file ``ct.nii.gz``: ``ct.nii.gz.provenance.json``;
* for an output folder (a DICOM series): ``<folder>/provenance.json``.

It records every input (absolute path, size in bytes, SHA-256; a folder input lists each
of its files), the output's own hashes, medldm/Python/NumPy/pydicom/nibabel/torch
versions (torch only if installed, never imported), the configuration, the UTC time
(ISO 8601), the host platform and the command line. The file is written atomically.

Example
-------
>>> import tempfile, pathlib
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "in.txt").write_text("input")
>>> _ = (tmp / "out.txt").write_text("output")
>>> side = write_provenance(tmp / "out.txt", inputs=[tmp / "in.txt"], config={"steps": 10})
>>> side.name
'out.txt.provenance.json'
>>> record = read_provenance(side)
>>> record["inputs"][0]["sha256"][:12], record["config"]
('c96c6d5be8d0', {'steps': 10})
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import importlib.metadata
import json
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medldm._version import __version__
from medldm.errors import DataNotFoundError, InvalidInputError
from medldm.utils.files import atomic_write_text, sha256_file

__all__ = ["PROVENANCE_SCHEMA", "provenance_path", "read_provenance", "write_provenance"]

#: Value of the ``schema`` key of every sidecar (bumped on incompatible changes).
PROVENANCE_SCHEMA = "medldm.provenance/1"

#: Name of the sidecar inside an output folder.
FOLDER_SIDECAR = "provenance.json"

#: Suffix appended to an output file's name.
FILE_SIDECAR_SUFFIX = ".provenance.json"

#: Distributions whose versions are recorded (``None`` when not installed).
_PACKAGES = ("numpy", "pydicom", "nibabel", "torch", "scipy", "monai")


def provenance_path(output_path: str | Path) -> Path:
    """Sidecar path of ``output_path``: ``<folder>/provenance.json`` for an existing
    folder, else ``<output>.provenance.json``.

    >>> provenance_path("/tmp/out/ct.nii.gz").name
    'ct.nii.gz.provenance.json'
    """
    output_path = Path(output_path)
    if output_path.is_dir():
        return output_path / FOLDER_SIDECAR
    return output_path.with_name(output_path.name + FILE_SIDECAR_SUFFIX)


def _package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`_PACKAGES` (read from metadata, nothing imported)."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _file_record(path: Path, name: str | None = None) -> dict[str, Any]:
    """``{"path", "size_bytes", "sha256"}`` of one file."""
    return {
        "path": name if name is not None else str(path),
        "size_bytes": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def _path_record(path: str | Path, *, skip: Path | None = None) -> dict[str, Any]:
    """Record of a file, or of a folder (each file inside, with a hash of the listing)."""
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(
            "input does not exist", path=path, fix="record only files that were read"
        )
    resolved = path.resolve()
    if resolved.is_file():
        return _file_record(resolved)
    files = sorted(p for p in resolved.rglob("*") if p.is_file() and (skip is None or p != skip))
    entries = [_file_record(p, p.relative_to(resolved).as_posix()) for p in files]
    listing = "\n".join(f"{e['sha256']}  {e['path']}" for e in entries)
    return {
        "path": str(resolved),
        "type": "folder",
        "size_bytes": sum(e["size_bytes"] for e in entries),
        "sha256": hashlib.sha256(listing.encode("utf-8")).hexdigest(),
        "files": entries,
    }


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: mappings, sequences, paths, NumPy scalars/arrays,
    dataclasses; anything else becomes its ``str``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_jsonable(v) for v in items]
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, torch tensors
        return _jsonable(value.tolist())
    if hasattr(value, "items"):  # mapping-like (e.g. OmegaConf DictConfig)
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def write_provenance(
    output_path: str | Path,
    *,
    inputs: list[Path | str],
    config: dict | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the provenance sidecar of ``output_path`` and return its path.

    Parameters
    ----------
    output_path:
        The output file or folder (write the output first: its hashes are recorded).
    inputs:
        Files or folders that were read to make the output.
    config:
        The configuration used (JSON-compatible after conversion of paths and arrays).
    extra:
        More fields, stored under ``"extra"``.
    overwrite:
        Replace an existing sidecar; otherwise :class:`~medldm.errors.OutputExistsError`.
    """
    output_path = Path(output_path)
    sidecar = provenance_path(output_path)
    output = (
        _path_record(output_path, skip=sidecar.resolve())
        if output_path.exists()
        else {"path": str(output_path.absolute())}
    )
    record = {
        "schema": PROVENANCE_SCHEMA,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "output": output,
        "inputs": [_path_record(p) for p in inputs],
        "config": _jsonable(config) if config is not None else None,
        "software": {
            "medldm": __version__,
            "python": platform.python_version(),
            **_package_versions(),
        },
        "platform": {
            "system": platform.platform(),
            "machine": platform.machine(),
            "python_implementation": platform.python_implementation(),
        },
        "command_line": list(sys.argv),
        "extra": _jsonable(extra) if extra is not None else {},
    }
    text = json.dumps(record, indent=2, sort_keys=False, allow_nan=False) + "\n"
    return atomic_write_text(sidecar, text, overwrite=overwrite)


def read_provenance(path: str | Path) -> dict:
    """Read a provenance sidecar, given its own path or the output's path.

    Raises :class:`~medldm.errors.DataNotFoundError` when there is none and
    :class:`~medldm.errors.InvalidInputError` when it is not a medldm provenance file.
    """
    path = Path(path)
    sidecar = (
        path
        if path.is_file() and path.name.endswith((FILE_SIDECAR_SUFFIX, FOLDER_SIDECAR))
        else provenance_path(path)
    )
    if not sidecar.is_file():
        raise DataNotFoundError(
            "no provenance sidecar found", path=sidecar, fix="write it with write_provenance"
        )
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(
            f"provenance file is not valid JSON ({exc})", path=sidecar, fix="rewrite it"
        ) from exc
    if not isinstance(record, dict) or not str(record.get("schema", "")).startswith(
        "medldm.provenance/"
    ):
        raise InvalidInputError(
            "not a medldm provenance file (no 'schema' key)", path=sidecar, fix="rewrite it"
        )
    return record
