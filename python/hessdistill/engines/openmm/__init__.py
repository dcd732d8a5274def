"""OpenMM engine: a student as one force in an OpenMM System, an energy-conservation reporter, and ``run_md``.

OpenMM users add the student to their own System::

    import torch                      # before openmm when openmmtorch is used (plugin loading)
    from openmm import app
    from hessdistill.engines.openmm import create_system, EnergyMonitorReporter, select_platform

    pdb = app.PDBFile("ethanol.pdb")
    system = create_system(pdb.topology, "student.pt")         # or add_student_force(system, topology, path, atoms)
    platform, properties = select_platform(system=system)      # CUDA with a GPU, else Reference for students only
    sim = app.Simulation(pdb.topology, system, openmm.VerletIntegrator(0.0005), platform, properties)
    sim.reporters.append(EnergyMonitorReporter("monitor.csv", 10, system))

``openmmtorch.TorchForce`` runs the student inside OpenMM; without a working openmmtorch, ``openmm.PythonForce``
(OpenMM >= 8.5) calls it from Python, and a warning says so; a compiled .pt2 student always runs there. The
pieces live in ``force`` (the force) and ``md`` (reporter, ``run_md``); this module is the public face.
"""

from .force import (  # noqa: F401
    BACKENDS,
    OpenMMBackendError,
    StudentForceModule,
    StudentForceModuleWithForces,
    VerletList,
    add_student_force,
    available_backend,
    create_system,
    element_symbols,
    only_students,
    select_platform,
    student_force,
)
from .md import (  # noqa: F401
    EnergyMonitorReporter, TrustReporter, committee_mean_force, run_md, system_dof, topology_from_atoms,
)

__all__ = [
    "BACKENDS", "EnergyMonitorReporter", "OpenMMBackendError", "StudentForceModule", "StudentForceModuleWithForces",
    "TrustReporter", "committee_mean_force",
    "VerletList", "add_student_force", "available_backend", "create_system", "system_dof",
    "element_symbols", "only_students", "run_md", "select_platform", "student_force", "topology_from_atoms",
]
