"""A hessdistill student as an OpenMM force: ``openmmtorch.TorchForce`` by default, ``openmm.PythonForce`` as
fallback (``backend.py`` chooses).

The student file is wrapped in a TorchScript module that speaks OpenMM's units and calling convention and keeps its
own Verlet neighbor list (``student_module.py``). A compiled .pt2 student runs through ``openmm.PythonForce`` only,
with the same Verlet list and the package's ``evaluate()`` (``pythonforce.py``).

Example
-------
>>> import torch  # before openmm, for openmmtorch's plugin (see the shared notes)
>>> from openmm.app import PDBFile
>>> from hessdistill.engines.openmm import create_system
>>> pdb = PDBFile("ethanol.pdb")
>>> system = create_system(pdb.topology, "student.pt")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ...errors import InputError, OpenMMBackendError
from ...formats import file_format
from ...formats.torchscript import StudentFile
from ...neighbors import VESIN_TORCH_ERROR, VesinNeighborList
from .backend import backend_for, import_openmm, load_openmmtorch
from .pythonforce import Pt2Callback, ScriptedModuleCallback
from .student_module import DEFAULT_SKIN, StudentForceModule, StudentForceModuleWithForces

log = logging.getLogger("hessdistill.engines.openmm")
#: the start of the name of every force that holds a student
STUDENT_FORCE_PREFIX = "hessdistill student"


def element_symbols(topology_or_symbols) -> list[str]:
    """Element symbols of an OpenMM Topology (or a sequence of symbols / openmm Elements / ASE Atoms)."""
    if hasattr(topology_or_symbols, "atoms") and callable(topology_or_symbols.atoms):
        symbols = []
        for atom in topology_or_symbols.atoms():
            if atom.element is None:
                raise InputError(
                    f"topology atom {atom.index} ({atom.name} in residue {atom.residue.name}) has no element; "
                    "the student needs an element for every atom it covers"
                )
            symbols.append(atom.element.symbol)
        return symbols
    if hasattr(topology_or_symbols, "get_chemical_symbols"):
        return list(topology_or_symbols.get_chemical_symbols())
    return [getattr(s, "symbol", s) for s in topology_or_symbols]


def student_force(model_path, topology, atoms: Optional[Sequence[int]] = None, *, periodic: Optional[bool] = None,
                  backend: str = "auto", outputs_forces: bool = False, device: Optional[str] = None,
                  skin: float = DEFAULT_SKIN):
    """An OpenMM Force computing the student's energy of ``atoms`` (default all) of ``topology``.

    ``model_path`` is a TorchScript student, or a compiled .pt2 one (:mod:`hessdistill.formats.pt2`), which runs
    only through ``openmm.PythonForce`` (OpenMM >= 8.5; TorchForce takes TorchScript alone).
    ``periodic`` defaults to whether the topology has box vectors. ``outputs_forces`` makes the module return
    forces itself (TorchForce ``setOutputsForces``); the PythonForce fallback always does. ``device`` places the
    model for the fallback (default: CUDA when torch sees it; a .pt2 package's own device); TorchForce follows the
    Context's platform itself. ``skin`` (A) is the Verlet skin of the force's neighbor list (0: search every step).
    It changes no process-wide setting; for small-system speed see :func:`hessdistill.heap.keep_freed_memory`.
    The force's name records the back end: ``hessdistill student (TorchForce)`` or ``(PythonForce)``.
    """
    if VesinNeighborList is None:
        raise OpenMMBackendError(f"the OpenMM force's neighbor list needs vesin-torch ({VESIN_TORCH_ERROR}); "
                                 "pip install vesin-torch")
    compiled = file_format(model_path) == "pt2"
    chosen = backend_for(model_path, backend)
    symbols = element_symbols(topology)
    n_total = len(symbols)
    if atoms is not None:
        atoms = [int(a) for a in atoms]
        bad = [a for a in atoms if not 0 <= a < n_total]
        if bad or len(set(atoms)) != len(atoms) or not atoms:
            raise InputError(
                f"atoms must be distinct indices in [0, {n_total}) of the topology; got "
                f"{'out-of-range ' + str(bad[:5]) if bad else 'an empty or repeated list'}"
            )
        symbols = [symbols[a] for a in atoms]
    if periodic is None:
        periodic = getattr(topology, "getPeriodicBoxVectors", lambda: None)() is not None
    if atoms == list(range(n_total)):
        atoms = None
    openmm = import_openmm()
    if compiled:
        callback = Pt2Callback(model_path, symbols, atoms, periodic, device, skin)
        force = openmm.PythonForce(callback)
        log.info("student %s (.pt2) -> openmm.PythonForce on %s (%d atoms, periodic=%s)", Path(model_path).name,
                 callback.device, len(symbols), periodic)
    else:
        sf = StudentFile(model_path, device="cpu" if chosen == "torchforce" else device)
        species = sf.species(symbols)
        index = None if atoms is None else torch.tensor(atoms)
        cls = StudentForceModuleWithForces if outputs_forces or chosen == "pythonforce" else StudentForceModule
        wrapper = cls(sf.module, species, index, periodic, sf.dtype, sf.cutoff, skin)
        module = torch.jit.script(wrapper.to(sf.device))
        if chosen == "torchforce":
            openmmtorch, _ = load_openmmtorch()
            force = openmmtorch.TorchForce(module)
            force.setOutputsForces(bool(outputs_forces))
            log.info("student %s -> openmmtorch.TorchForce (%d atoms, periodic=%s)", sf.path.name, len(symbols),
                     periodic)
        else:
            force = openmm.PythonForce(ScriptedModuleCallback(module, periodic, sf.device))
            log.info("student %s -> openmm.PythonForce on %s (%d atoms, periodic=%s)", sf.path.name, sf.device,
                     len(symbols), periodic)
    force.setUsesPeriodicBoundaryConditions(bool(periodic))
    force.setName(f"{STUDENT_FORCE_PREFIX} ({'TorchForce' if chosen == 'torchforce' else 'PythonForce'})")
    return force


def add_student_force(system, topology, model_path, atoms: Optional[Sequence[int]] = None, *,
                      force_group: int = 0, **kwargs) -> int:
    """Add the student's force for ``atoms`` (default all) to ``system``; returns the force index.

    The system must hold one particle per topology atom. Other forces in the system (an MM force field for the
    atoms outside an ML region, restraints) are left alone: removing double-counted MM terms is the caller's job.
    """
    n_topology = topology.getNumAtoms()
    if system.getNumParticles() != n_topology:
        raise InputError(
            f"system has {system.getNumParticles()} particles but the topology has {n_topology} atoms; "
            "they must match one to one"
        )
    force = student_force(model_path, topology, atoms, **kwargs)
    force.setForceGroup(force_group)
    return system.addForce(force)


def create_system(topology, model_path, *, masses: Optional[Sequence[float]] = None, remove_cm_motion: bool = False,
                  **kwargs):
    """A System of ``topology`` whose only force is the student: element masses (or ``masses`` in amu), no
    constraints, the topology's box when it has one. Keyword arguments go to :func:`student_force`."""
    openmm = import_openmm()
    symbols = element_symbols(topology)
    if masses is None:
        masses = [atom.element.mass.value_in_unit(atom.element.mass.unit) for atom in topology.atoms()]
    if len(masses) != len(symbols):
        raise InputError(f"got {len(masses)} masses for {len(symbols)} atoms")
    system = openmm.System()
    for m in masses:
        system.addParticle(float(m))
    box = topology.getPeriodicBoxVectors()
    if box is not None:
        system.setDefaultPeriodicBoxVectors(*box)
    if remove_cm_motion:
        system.addForce(openmm.CMMotionRemover())
    add_student_force(system, topology, model_path, **kwargs)
    return system
