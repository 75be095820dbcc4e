"""The package version, in a leaf module that imports nothing.

Read by ``medldm/__init__.py``, by the writers that stamp provenance (``medldm.io``) and by
``pyproject.toml`` (``[tool.setuptools.dynamic]``), so a low layer never has to import the
package root (which reaches up to the apps) to learn it.
"""

__version__ = "0.1.0"
