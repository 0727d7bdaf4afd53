"""Packaging detail pyproject.toml cannot express: ship the top-level ``sample_projects/`` and
``qupath_scripts/`` folders as packages, so ``histobridge sample init`` and the QuPath scripts work
after a wheel install too."""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(include=["histobridge", "histobridge.*"]),
        "histobridge.sample_projects",
        "histobridge.qupath_scripts",
    ],
    package_dir={
        "histobridge.sample_projects": "sample_projects",
        "histobridge.qupath_scripts": "qupath_scripts",
    },
    package_data={
        "histobridge": ["py.typed"],
        "histobridge.server": ["static/*"],
        "histobridge.sample_projects": ["**/*"],
        "histobridge.qupath_scripts": ["*.groovy"],
    },
)
