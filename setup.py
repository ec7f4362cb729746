"""Build glue that pyproject.toml cannot express: every package found under jujubackup/ plus the two data
directories kept at the repository's top level and mapped into the package at build time
(remote_scripts/ -> jujubackup.remote_scripts, templates/ -> jujubackup.templates), so the wheel, the
sdist and an editable install all carry them where jujubackup/scripts.py looks (importlib.resources).
The rest of the metadata is in pyproject.toml."""

from setuptools import find_packages, setup

DATA_PACKAGES = {"jujubackup.remote_scripts": "remote_scripts", "jujubackup.templates": "templates"}

setup(
    packages=[*find_packages(include=["jujubackup", "jujubackup.*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
)
