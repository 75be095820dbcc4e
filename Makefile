# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install medldm, run the main job
#   make test   - create/refresh the same .venv with the dev extras, check the import layers
#                 (lint-imports, contracts in pyproject.toml), run the whole test suite
#   make docs   - build the documentation site into docs/_build/html (warnings are errors;
#                 the gallery's examples run)
# Both are idempotent: the install steps rerun only when pyproject.toml or setup.py changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# pyproject.toml declares a range of torch releases; install the CPU build that lies on these
# machines' disk first, the release the test suite runs on.
TORCH := torch==2.13.0

.PHONY: demo test docs lint clean-venv browser bart

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.stamp-base: pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml setup.py $(VENV)/.stamp-base
	$(PY) -m pip install --quiet -e ".[dev,peers,cluster]"
	touch $@

demo: $(VENV)/.stamp-base
	$(VENV)/bin/medldm-recon output_dir=demo_output/recon overwrite=true

# The report browser test needs headless Chromium: install Debian's package when missing
# (needs root and apt; without it that one test skips, or fails under CI=true).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ) || \
	  echo "note: chromium not installed; the report browser test will skip"

# The peer comparison (benchmarks/peers/, tests/test_peers.py) needs BART: install Debian's
# package when missing (needs root and apt; without it those tests skip, or fail under CI=true).
bart:
	@command -v bart >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    ( apt-get install -y --no-install-recommends bart >/dev/null 2>&1 || \
	      ( apt-get update >/dev/null 2>&1 && \
	        apt-get install -y --no-install-recommends bart >/dev/null 2>&1 ) ) ) || \
	  echo "note: bart not installed; the BART peer tests will skip"

test: $(VENV)/.stamp-dev browser bart
	$(VENV)/bin/ruff check medldm tests benchmarks
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -n 2 --dist loadfile

$(VENV)/.stamp-docs: pyproject.toml setup.py $(VENV)/.stamp-base
	$(PY) -m pip install --quiet -e ".[docs]"
	touch $@

# Sphinx (MyST pages, autodoc, sphinx-gallery): from a clean build folder, so that every
# page is reread and every gallery example runs; -W fails the build on any warning, after
# reporting all of them (--keep-going).
docs: $(VENV)/.stamp-docs
	rm -rf docs/_build docs/auto_gallery
	$(VENV)/bin/sphinx-build -E -W --keep-going -b html docs docs/_build/html
	@echo "documentation: docs/_build/html/index.html"

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check medldm tests benchmarks
	$(VENV)/bin/ruff format --check medldm tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

clean-venv:
	rm -rf $(VENV)
