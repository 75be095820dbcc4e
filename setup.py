"""Package list for setuptools (everything else is in pyproject.toml).

The YAML config tree stays at the top of the checkout (``configs/``, mirroring the
packages) and is installed inside the package as ``medldm/configs``, so a non-editable
install runs the presets from any folder (:func:`medldm.problems.configs.config_dir`
finds either). pyproject.toml's ``packages.find`` cannot map a folder outside the package
into it, hence this file.
"""

from setuptools import find_namespace_packages, find_packages, setup

CONFIG_PACKAGES = [
    "medldm.configs",
    *(f"medldm.configs.{p}" for p in find_namespace_packages("configs")),
]

setup(
    packages=[*find_packages(include=["medldm*"]), *CONFIG_PACKAGES],
    package_dir={"medldm.configs": "configs"},
)
