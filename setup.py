"""Packaging detail pyproject.toml cannot express: ship the top-level ``sample_projects/`` folder
as the package ``histobridge.sample_projects`` so ``histobridge sample init`` works after a wheel install."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["histobridge", "histobridge.*"]), "histobridge.sample_projects"],
    package_dir={"histobridge.sample_projects": "sample_projects"},
    package_data={"histobridge": ["py.typed"], "histobridge.sample_projects": ["**/*"]},
)
