"""The documentation site is wired up: ``make docs`` builds it with warnings as errors (CI
runs it: ``.ci/run``), every user-guide page is in a table of contents, the API reference
covers the library's packages, and the gallery's examples are sphinx-gallery scripts.

Building the site takes a minute (the gallery runs), so the build itself is ``make docs``,
not a test.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def test_make_docs_builds_with_warnings_as_errors_and_ci_runs_it():
    makefile = (REPO / "Makefile").read_text()
    target = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "the Makefile has no docs target"
    assert "sphinx-build" in target.group(1) and " -W" in target.group(1)
    assert "make docs" in (REPO / ".ci" / "run").read_text()
    assert '".[docs]"' in makefile


def test_docs_extra_lists_the_site_tools():
    pyproject = (REPO / "pyproject.toml").read_text()
    extra = re.search(r"^docs = \[(.*?)\]", pyproject, re.M | re.S)
    assert extra, "pyproject.toml has no docs extra"
    for tool in ("sphinx", "myst-parser", "sphinx-gallery"):
        assert f'"{tool}' in extra.group(1)


def test_every_user_guide_page_is_in_the_table_of_contents():
    index = (DOCS / "user_guide" / "index.md").read_text()
    for page in sorted((DOCS / "user_guide").glob("*.md")):
        if page.name != "index.md":
            assert re.search(rf"^{page.stem}$", index, re.M), f"{page.name} is in no toctree"


def test_api_reference_covers_the_library_packages():
    sys.path.insert(0, str(DOCS))
    try:
        import generate
    finally:
        sys.path.remove(str(DOCS))
    required = {"io", "physics", "solvers", "models", "metrics", "recon"}
    assert {f"medldm.{name}" for name in required} <= set(generate.API_PACKAGES)
    api_index = (DOCS / "api" / "index.md").read_text()
    for package in generate.API_PACKAGES:
        assert f"generated/{package}" in api_index


def test_gallery_examples_are_titled_scripts():
    examples = sorted((DOCS / "gallery").glob("plot_*.py"))
    assert len(examples) >= 2
    for example in examples:
        docstring = ast.get_docstring(ast.parse(example.read_text())) or ""
        title, underline = [*docstring.splitlines(), "", ""][:2]
        assert title and set(underline) == {"="}, f"{example.name} needs a titled docstring"
