"""Package list: everything under mmtok/, plus cli/ and recipes/ installed as mmtok.cli and mmtok.recipes.

Metadata lives in pyproject.toml; this file exists only because the package list is computed.
"""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["mmtok", "mmtok.*"]) + ["mmtok.cli", "mmtok.recipes"])
