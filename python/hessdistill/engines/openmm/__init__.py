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
pieces live in ``force`` (the force), ``student_module`` (the TorchScript wrapper and its Verlet list),
``backend`` (TorchForce or PythonForce), ``pythonforce`` (the PythonForce callbacks), ``platform`` and ``md``
(reporter, ``run_md``); this module is the public face.
"""

from ...errors import OpenMMBackendError  # noqa: F401
from .backend import BACKENDS, available_backend, backend_for  # noqa: F401
from .force import add_student_force, create_system, element_symbols, student_force  # noqa: F401
from .md import (  # noqa: F401
    EnergyMonitorReporter, TrustReporter, committee_mean_force, run_md, system_dof, topology_from_atoms,
)
from .platform import only_students, select_platform  # noqa: F401
from .student_module import StudentForceModule, StudentForceModuleWithForces, VerletList  # noqa: F401

__all__ = [
    "BACKENDS", "EnergyMonitorReporter", "OpenMMBackendError", "StudentForceModule", "StudentForceModuleWithForces",
    "TrustReporter", "VerletList", "add_student_force", "available_backend", "backend_for", "committee_mean_force",
    "create_system", "element_symbols", "only_students", "run_md", "select_platform", "student_force", "system_dof",
    "topology_from_atoms",
]
