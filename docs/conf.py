"""Sphinx configuration of the medldm documentation.

``make docs`` builds it into ``docs/_build/html`` with warnings as errors. Markdown pages
are read by MyST, the API reference comes from the docstrings (autodoc, numpydoc style
through napoleon), and the gallery's scripts (``docs/gallery/plot_*.py``) are run by
sphinx-gallery on every build. Generated pages (results tables from
``benchmarks/results``, the data cards, the API's module pages) are written by
``docs/generate.py`` before Sphinx reads the sources.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS))
# the gallery's images are small: one thread each is faster than several (and shares the
# machine)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import generate  # noqa: E402

import medldm  # noqa: E402

generate.generate_all()

project = "medldm"
author = "medldm developers"
copyright = "medldm developers (Apache-2.0)"
release = medldm.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = [
    "_build",
    "_generated",
    "gallery",
    "auto_gallery/*.ipynb",
    "auto_gallery/*.py",
]
templates_path: list[str] = []

# autodoc: a module page documents what the module defines (its imports are documented
# where they are defined); a package page shows only its docstring and its modules
autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "ignore-module-all": True,
}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"medldm {release}"
html_static_path: list[str] = []

sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_gallery",
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "show_memory": False,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "write_computation_times": False,
}
