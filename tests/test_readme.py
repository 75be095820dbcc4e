"""The README's Python example runs as written (with the shipped brain_t1_2d prior)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"In Python:\n\n```python\n(.*?)```", text, re.S)
    assert block, "the README lost its Python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert "psnr_db" in result.metrics["ldm"] and "psnr_db" in result.metrics["baseline"]
    assert (tmp_path / "api_demo_output" / "report.html").exists()
    assert (tmp_path / "api_demo_output" / "reconstruction.nii.gz").exists()
