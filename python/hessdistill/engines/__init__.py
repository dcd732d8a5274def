"""MD engines that run an exported student: ASE (``ase``), OpenMM (``openmm``), LAMMPS (``lammps``).

All keep one contract (:mod:`.contract`): ``run_md(engine, model_path, atoms, out_dir, MDOptions(...),
**engine_options) -> MDResult``, the same output file names, the same velocity rule and the one energy monitor.

Example
-------
>>> from hessdistill.engines import MDOptions, run_md
>>> result = run_md("openmm", "student.pt", atoms, "md_run", MDOptions(steps=2000), platform="Reference")
>>> result.stopped, result.drift_eV_per_atom_ps
"""

from .contract import (  # noqa: F401
    ENGINES, ASEOptions, LAMMPSOptions, MDOptions, MDResult, OpenMMOptions, engine_options, initial_momenta,
)


def run_md(engine: str, model_path, atoms, out_dir, options: MDOptions | None = None, **engine_options) -> MDResult:
    """Run MD of ``atoms`` with the student in ``engine`` (ase, openmm, lammps); see :mod:`.contract`.

    The engine is imported only here (OpenMM and LAMMPS are optional).
    """
    from .contract import check_engine

    check_engine(engine)
    if engine == "ase":
        from .ase.md import run_md as runner
    elif engine == "openmm":
        from .openmm.md import run_md as runner
    else:
        from .lammps.md import run_md as runner
    return runner(model_path, atoms, out_dir, options, **engine_options)


__all__ = ["ENGINES", "ASEOptions", "LAMMPSOptions", "MDOptions", "MDResult", "OpenMMOptions", "engine_options",
           "initial_momenta", "run_md"]
