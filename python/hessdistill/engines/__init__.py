"""MD engines that run an exported student: ASE (``ase_md``), OpenMM (``openmm``), LAMMPS (``lammps``).

Each has ``run_md(model_path, atoms, *, out_dir, steps, timestep_fs, temperature_K, ensemble, ...) -> dict`` and
reports through the one ``monitor.EnergyMonitor``.
"""

ENGINES = ("ase", "openmm", "lammps")


def get_runner(engine: str):
    """The ``run_md`` function of an engine, imported lazily (OpenMM and LAMMPS are optional)."""
    from ..errors import ConfigError

    if engine == "ase":
        from .ase.md import run_md
    elif engine == "openmm":
        from .openmm import run_md
    elif engine == "lammps":
        from .lammps.md import run_md
    else:
        raise ConfigError(f"unknown MD engine {engine!r}; choose one of {', '.join(ENGINES)}")
    return run_md
