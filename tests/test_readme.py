"""The README is a short front door whose commands work, and the user documents hold no
history.

* The README has at most 200 lines; its Python quickstart runs as written (with the shipped
  priors); its results table is what ``docs/generate.py headline`` computes from
  ``benchmarks/results/ldm/results.csv``.
* Every ``medldm-recon`` command of the README and of the user guide composes: its
  overrides name real config keys, presets and launchers (Hydra's compose, nothing runs).
* ``medldm-recon --help`` (the ``medldm_recon`` help template) lists the presets, the inputs
  and examples.
* No session numbers in the README, the docs, the model cards or result file names: what
  changed goes to CHANGELOG.md.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
USER_GUIDE = REPO / "docs" / "user_guide"
MODEL_CARDS = sorted((REPO / "medldm" / "models" / "weights").glob("*/MODEL_CARD.md"))


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, re.S)


def recon_commands(text: str) -> list[list[str]]:
    """The ``medldm-recon`` commands of a Markdown text's bash blocks, as argument lists
    (continuation lines joined, comments dropped)."""
    commands = []
    for block in _bash_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            if "$(" in line:  # built by the shell (e.g. a list of files): not checkable
                continue
            words = shlex.split(line, comments=True)
            if words and Path(words[0]).name == "medldm-recon":
                commands.append(words[1:])
    return commands


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move details to docs/"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = README.read_text()
    block = re.search(r"In Python:\n\n```python\n(.*?)```", text, re.S)
    assert block, "the README lost its Python example"
    assert len(block.group(1).strip().splitlines()) <= 6  # a quickstart, not a tutorial
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert "psnr_db" in result.metrics["ldm"] and "psnr_db" in result.metrics["baseline"]
    assert (tmp_path / "api_demo_output" / "report.html").exists()
    assert (tmp_path / "api_demo_output" / "reconstruction.nii.gz").exists()


def test_readme_results_table_is_generated_from_benchmark_results():
    sys.path.insert(0, str(REPO / "docs"))
    try:
        import generate
    finally:
        sys.path.remove(str(REPO / "docs"))
    table = generate.headline_table()
    assert table in README.read_text(), (
        "the README's results table differs from `python docs/generate.py headline`; "
        "paste that command's output into README.md"
    )
    assert "docs/generate.py headline" in README.read_text()


def test_readme_quickstart_has_the_cli_and_the_two_commands():
    text = README.read_text()
    assert "make demo" in text and "make test" in text and "make docs" in text
    quickstart = recon_commands(text)
    assert 3 <= len(quickstart) <= 6


def _documented_commands() -> list[tuple[str, list[str]]]:
    pages = [README, *sorted(USER_GUIDE.glob("*.md"))]
    found = []
    for page in pages:
        for command in recon_commands(page.read_text()):
            found.append((f"{page.relative_to(REPO)}: {shlex.join(command)}", command))
    return found


def test_the_documents_show_the_recon_commands():
    names = [label for label, _ in _documented_commands()]
    assert len(names) >= 15
    assert any("kspace=" in n for n in names) and any("sinogram=" in n for n in names)


def _first_job(override: str) -> str:
    key, _, value = override.partition("=")
    if value[:1] in "[{\"'" or "," not in value:
        return override
    return f"{key}={value.split(',')[0]}"


@pytest.mark.parametrize(
    "command", [c for _, c in _documented_commands()], ids=[n for n, _ in _documented_commands()]
)
def test_documented_recon_command_composes(command):
    """The overrides name real keys and options: Hydra composes the config (nothing runs)."""
    from hydra import compose, initialize_config_dir

    from medldm.recon.cli import CONFIG_DIR

    multirun = "-m" in command or "--multirun" in command
    overrides = [word for word in command if word not in ("-m", "--multirun")]
    if multirun:  # a sweep composes job by job: check its first job
        overrides = [_first_job(word) for word in overrides]
    if any(o.startswith("hydra/launcher=submitit") for o in overrides):
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="recon/config", overrides=overrides, return_hydra_config=True)
    assert cfg.preset.name


def test_recon_help_lists_presets_inputs_and_examples():
    from medldm.recon.presets import available_recon_presets

    run = subprocess.run(
        [sys.executable, "-m", "medldm.recon", "--help", "hydra/help=medldm_recon"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout
    presets = text.split("== Presets", 1)[1].split("==", 2)[1]
    for name in available_recon_presets():
        assert re.search(rf"^  {name} ", presets, re.M), f"--help does not list preset {name}"
    for key in ("input=", "kspace=", "sinogram=", "dry_run=true"):
        assert key in text
    examples = text.split("== Examples ==", 1)[1].split("==", 1)[0]
    assert len(re.findall(r"^  medldm-recon ", examples, re.M)) >= 3


def _history_lines(path: Path) -> list[str]:
    hits = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if re.search(r"session", line, re.I) and 'scope="session"' not in line:
            hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    return hits


def test_user_documents_hold_no_session_history():
    docs = [
        p
        for p in (REPO / "docs").rglob("*")
        if p.is_file()
        and p.suffix in (".md", ".py", ".rst", ".txt")
        and not {"_build", "auto_gallery", "_generated"} & set(p.relative_to(REPO).parts)
    ]
    hits = [hit for path in [README, *MODEL_CARDS, *docs] for hit in _history_lines(path)]
    assert not hits, "history belongs in CHANGELOG.md:\n" + "\n".join(hits)
    named = [
        str(p.relative_to(REPO))
        for p in (REPO / "benchmarks" / "results").rglob("*")
        if "session" in p.name.lower()
    ]
    assert not named, f"name result files after what they hold: {named}"


def test_changelog_keeps_a_changelog_format():
    text = (REPO / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog")
    assert "## [Unreleased]" in text
    assert re.search(r"^### (Added|Changed|Fixed|Removed)$", text, re.M)
