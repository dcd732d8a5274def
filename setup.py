"""Package layout (the metadata is in pyproject.toml): the Python package lives in python/, and the LAMMPS plugin's
C++ sources (top-level lammps_plugin/) ship inside it as package data, hessdistill/engines/lammps/plugin/, so that
`hessdistill lammps-plugin` can build them from a wheel install."""

from setuptools import find_packages, setup

PLUGIN = "hessdistill.engines.lammps.plugin"

setup(
    packages=find_packages("python") + [PLUGIN],
    package_dir={"": "python", PLUGIN: "lammps_plugin"},
    package_data={PLUGIN: ["*.cpp", "*.h", "CMakeLists.txt"]},
)
