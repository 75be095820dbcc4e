"""Pages of the documentation that are generated, not written: results tables read from
``benchmarks/results``, the API reference's module pages and the data cards page.

``make docs`` runs this through ``docs/conf.py``; on its own it prints the README's
headline results table, computed from the LDM suite's ``results.csv`` with the benchmark
report's own functions (:func:`medldm.bench.summary.summarise`,
:func:`medldm.bench.comparison.versus_best_classical`)::

    .venv/bin/python docs/generate.py headline

Nothing here measures anything: every number comes from a ``results.csv`` that a script
in ``benchmarks/`` wrote.
"""

from __future__ import annotations

import csv
import importlib
import pkgutil
import re
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
RESULTS = REPO / "benchmarks" / "results"
LDM_RESULTS = RESULTS / "ldm" / "results.csv"
NATIVE_RESULTS = RESULTS / "ldm_native" / "results.csv"
STANDARD_RESULTS = RESULTS / "standard" / "results.csv"

#: Packages whose modules get an API page, in the order of the layers (bottom up).
API_PACKAGES = (
    "medldm.io",
    "medldm.data",
    "medldm.physics",
    "medldm.models",
    "medldm.solvers",
    "medldm.metrics",
    "medldm.problems",
    "medldm.recon",
)

#: Row order and labels of the results tables.
OPERATORS = {
    "mri_4x": "MRI 4x",
    "mri_8x": "MRI 8x",
    "mri_multicoil_4x": "MRI multi-coil 4x",
    "mri_multicoil_8x": "MRI multi-coil 8x",
    "mri_multicoil_8x_variable_density": "MRI multi-coil 8x, 2D variable density",
    "inpaint_box": "box inpainting",
    "inpaint_random": "random inpainting",
    "ct_sparse_30": "CT 30 views",
    "ct_sparse_60": "CT 60 views",
    "microscopy_deconv": "microscopy deconvolution",
}
DATASETS = {
    "ixi_t1_test": "IXI T1",
    "mednist_test": "MedNIST CT",
    "microscopy_test": "microscopy",
    "brain_mri_native_test": "clinical brain MRI, native",
}
SOLVERS = {
    "zero_filled": "zero-filled / FBP",
    "cg": "CG",
    "tv": "TV",
    "l1_wavelet": "l1-wavelet",
    "biharmonic": "biharmonic",
    "richardson_lucy": "Richardson-Lucy",
    "latent_dds": "latent_dds",
}


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a benchmark ``results.csv`` (read directly: no lock file is created)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [dict(row) for row in csv.DictReader(handle)]


def _markdown(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def _order(dataset: str, operator: str) -> tuple[int, str]:
    names = list(OPERATORS)
    return (names.index(operator) if operator in names else len(names), dataset)


def headline_table(path: Path = LDM_RESULTS) -> str:
    """latent_dds against the best classical solver of each operator (paired by case and
    seed): the README's results table."""
    from medldm.bench.comparison import versus_best_classical
    from medldm.bench.summary import summarise

    rows = read_rows(path)
    means = {(s.dataset, s.operator, s.solver): s for s in summarise(rows)}
    lines = sorted(versus_best_classical(rows), key=lambda c: _order(c.dataset, c.operator))
    body = []
    for line in lines:
        best = means[(line.dataset, line.operator, line.classical)]
        latent = means[(line.dataset, line.operator, line.latent)]
        low, high = line.psnr_ci
        body.append(
            [
                OPERATORS.get(line.operator, line.operator),
                DATASETS.get(line.dataset, line.dataset),
                f"{SOLVERS.get(line.classical, line.classical)} "
                f"{best.psnr.mean:.2f} / {best.ssim.mean:.3f}",
                f"{latent.psnr.mean:.2f} / {latent.ssim.mean:.3f}",
                f"{line.psnr_gain:+.2f} ({low:+.2f}, {high:+.2f})",
                f"{line.wins}/{line.n_pairs}",
            ]
        )
    header = (
        "operator",
        "test data",
        "best classical, PSNR dB / SSIM",
        "latent_dds",
        "ΔPSNR dB (95 % CI)",
        "wins",
    )
    return _markdown(header, body)


def summary_table(path: Path) -> str:
    """Mean PSNR dB / SSIM of every solver (columns) at every operator (rows); the best
    PSNR of a row in bold."""
    from medldm.bench.summary import summarise

    lines = summarise(read_rows(path))
    solvers = [s for s in SOLVERS if any(line.solver == s for line in lines)]
    groups: dict[tuple[str, str], dict[str, object]] = {}
    for line in lines:
        groups.setdefault((line.dataset, line.operator), {})[line.solver] = line
    body = []
    for dataset, operator in sorted(groups, key=lambda key: _order(*key)):
        cells = groups[(dataset, operator)]
        best = max(cells, key=lambda s: cells[s].psnr.mean)  # type: ignore[attr-defined]
        n = max(line.n_ok for line in cells.values())  # type: ignore[attr-defined]
        row = [f"{OPERATORS.get(operator, operator)}, {DATASETS.get(dataset, dataset)} ({n})"]
        for solver in solvers:
            line = cells.get(solver)
            if line is None:
                row.append("")
                continue
            text = f"{line.psnr.mean:.2f} / {line.ssim.mean:.3f}"  # type: ignore[attr-defined]
            row.append(f"**{text}**" if solver == best else text)
        body.append(row)
    header = ["operator, test data (rows)", *(SOLVERS[s] for s in solvers)]
    return _markdown(header, body)


def results_page() -> str:
    """The generated part of the results page (``docs/_generated/results_tables.md``)."""
    return "\n\n".join(
        [
            "## Latent priors against the best classical solver",
            "Generated from `benchmarks/results/ldm/results.csv` (`benchmarks/ldm_suite.sh`). "
            "Mean PSNR dB / SSIM; the difference is paired over slice x seed pairs, with a "
            "95 % confidence interval (Student t) and the pairs latent_dds wins.",
            headline_table(LDM_RESULTS),
            "## Every solver of the LDM suite",
            "Mean PSNR dB / SSIM over every finished row (best PSNR in bold); rows per "
            "operator in brackets.",
            summary_table(LDM_RESULTS),
            *_native_section(),
            "## Classical solvers: the standard suite",
            "Generated from `benchmarks/results/standard/results.csv` "
            "(`benchmarks/standard_suite.sh`): every classical solver with its preset tuned on "
            "training cases, 3 seeds.",
            summary_table(STANDARD_RESULTS),
        ]
    )


def _native_section() -> list[str]:
    """The native-resolution suite's tables, where it has been run."""
    if not NATIVE_RESULTS.is_file():
        return []
    return [
        "## Clinical brain MRI at the scanner's resolution",
        "Generated from `benchmarks/results/ldm_native/results.csv` "
        "(`benchmarks/ldm_native_suite.sh`): the `brain_native_2d` prior on the test patient of "
        "`brain_mri_native`, each series' central slice at its own matrix, every solver with "
        "its preset tuned for this data (classical: training patients; latent DDS: the "
        "validation patient).",
        headline_table(NATIVE_RESULTS),
        summary_table(NATIVE_RESULTS),
    ]


def _public_modules(package: str) -> list[str]:
    module = importlib.import_module(package)
    names = []
    for info in pkgutil.iter_modules(module.__path__):
        if not info.name.startswith("_"):
            names.append(f"{package}.{info.name}")
    return sorted(names)


def _title(name: str) -> str:
    return f"``{name}``\n" + "=" * (len(name) + 4)


def api_pages(out: Path) -> list[Path]:
    """One page per package (its docstring and a table of contents of its modules) and
    one per module (its docstring and the members it defines)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for package in API_PACKAGES:
        modules = _public_modules(package)
        lines = [
            _title(package),
            "",
            f".. automodule:: {package}",
            "   :no-members:",
            "",
            ".. toctree::",
            "   :maxdepth: 1",
            "",
            *(f"   {name}" for name in modules),
            "",
        ]
        written.append(_write(out / f"{package}.rst", "\n".join(lines)))
        for name in modules:
            body = f"{_title(name)}\n\n.. automodule:: {name}\n"
            written.append(_write(out / f"{name}.rst", body))
    return written


def data_cards_page() -> str:
    """``data_cards/README.md`` (links to the card files made plain paths) and each card."""
    text = (REPO / "data_cards" / "README.md").read_text(encoding="utf-8")
    # the index links to YAML files beside the package; in the site they are shown below
    text = re.sub(r"\[([^\]]+)\]\(\.\./(medldm/data/cards/[^)]*)\)", r"`\2`", text)
    parts = [text.rstrip(), "## The cards"]
    for card in sorted((REPO / "medldm" / "data" / "cards").glob("*.yaml")):
        yaml_text = card.read_text(encoding="utf-8").rstrip()
        parts.append(f"### `{card.stem}`\n\n```yaml\n{yaml_text}\n```")
    return "\n\n".join(parts) + "\n"


def _write(path: Path, text: str) -> Path:
    """Write only when the text changed (Sphinx then rebuilds only what changed)."""
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def generate_all() -> None:
    """Everything ``docs/conf.py`` needs before Sphinx reads the sources."""
    generated = DOCS / "_generated"
    generated.mkdir(exist_ok=True)
    _write(generated / "results_tables.md", results_page() + "\n")
    _write(generated / "data_cards.md", data_cards_page())
    api_pages(DOCS / "api" / "generated")


if __name__ == "__main__":
    if sys.argv[1:] == ["headline"]:
        print(headline_table())
    elif sys.argv[1:] == ["all"]:
        generate_all()
    else:
        sys.exit("usage: python docs/generate.py headline | all")
