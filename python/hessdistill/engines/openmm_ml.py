"""A hessdistill student as an openmm-ml potential: ``MLPotential('hessdistill', modelPath='student.pt')``.

openmm-ml (``pip install openmmml``) finds this module through the ``openmmml.potentials`` entry point in
hessdistill's package metadata, so no import is needed::

    from openmmml import MLPotential

    potential = MLPotential("hessdistill", modelPath="student.pt")
    system = potential.createSystem(pdb.topology)                                  # the student alone
    mixed = potential.createMixedSystem(pdb.topology, mm_system, solute_atoms)     # student inside an MM system

``createMixedSystem`` is openmm-ml's own: it removes the MM bonds, angles and torsions inside the ML region, excludes
the region's internal nonbonded pairs, and with ``interpolate=True`` adds the global parameter
``lambda_interpolate`` (0: pure MM, 1: the mixed system). This module only adds the student's force, through
:func:`hessdistill.engines.openmm.student_force` (TorchForce, or the PythonForce fallback).

Arguments given to ``MLPotential(...)`` are defaults for every system; those given to ``createSystem`` or
``createMixedSystem`` apply to that system: ``modelPath`` (the student file, TorchScript or .pt2; constructor only),
``backend`` ("auto", "torchforce", "pythonforce"), ``device`` (where the PythonForce fallback runs the model),
``skin`` (A, the Verlet skin of the force's neighbor list). The student is short-ranged: openmm-ml 1.6+ asks
(:meth:`HessdistillPotentialImpl.getMLLongRange`) and keeps the MM electrostatics between periodic images of the
ML region.

This module lives outside ``engines/openmm/`` and imports torch only when a force is added: openmm-ml loads every
registered potential on ``import openmmml``, and that import should not pay for torch (~3 s) unless the student is
used. The classes follow openmm-ml's factory/implementation contract without subclassing its base classes:
importing ``openmmml.mlpotential`` here would, when this module is imported first, load this half-built module
again through the entry point.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

FORCE_ARGS = ("backend", "device", "skin")  # student_force options, given to the constructor or per system
# createMixedSystem of openmm-ml 1.6+ passes its embedding's own arguments on to addForces too; they are not ours
EMBEDDING_ARGS = ("linkAtomDistances", "mlLongRange")


def _check_args(args: dict, allowed, where: str) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise InputError(f"unknown argument(s) {', '.join(unknown)} for {where}; accepted: {', '.join(allowed)}")


class HessdistillPotentialImplFactory:
    """openmm-ml factory registered as ``hessdistill``: ``MLPotential('hessdistill', modelPath=...)``."""

    def createImpl(self, name: str, modelPath=None, **args) -> "HessdistillPotentialImpl":
        return HessdistillPotentialImpl(name, modelPath, **args)


class HessdistillPotentialImpl:
    """openmm-ml implementation: adds the student's force for the ML atoms (all atoms in ``createSystem``).

    Parameters
    ----------
    name: the name given to ``MLPotential``.
    modelPath: the student file (``hessdistill export``): TorchScript, or .pt2 (runs through PythonForce).
    backend, device, skin: defaults for :func:`hessdistill.engines.openmm.student_force`.
    """

    def __init__(self, name: str, modelPath, **args):
        where = f"MLPotential({name!r})"
        if modelPath is None:
            raise InputError(f"{where} needs modelPath=<student file written by hessdistill export>")
        if not Path(modelPath).is_file():
            raise InputError(f"{where}: modelPath {str(modelPath)!r} is not a file")
        _check_args(args, ("modelPath",) + FORCE_ARGS, where)
        self.name = name
        self.model_path = Path(modelPath)
        self.defaults = dict(args)

    def addForces(self, topology, system, atoms, forceGroup: int, **args) -> None:
        """Add the student's force for ``atoms`` (None: all) of ``topology`` to ``system``, in ``forceGroup``.

        Elements the student does not cover raise :class:`hessdistill.errors.UnsupportedElementError`.
        """
        _check_args(args, FORCE_ARGS + EMBEDDING_ARGS, f"MLPotential({self.name!r}).createSystem/createMixedSystem")
        from .openmm.force import student_force  # torch: only once the student is used

        # not add_student_force: for interpolate=True openmm-ml collects the forces in an empty System
        if system.getNumParticles() not in (0, topology.getNumAtoms()):
            raise InputError(f"system has {system.getNumParticles()} particles but the topology has "
                             f"{topology.getNumAtoms()} atoms; they must match one to one")
        options = {**self.defaults, **{k: v for k, v in args.items() if k in FORCE_ARGS}}
        force = student_force(self.model_path, topology, None if atoms is None else list(atoms), **options)
        force.setForceGroup(int(forceGroup))
        system.addForce(force)

    def getSupportedEmbeddings(self) -> list:
        """No embedding of its own (openmm-ml 1.6+): openmm-ml's mechanical embedding is used."""
        return []

    def getMLLongRange(self) -> bool:
        """False: the student's interactions end at its cutoff (openmm-ml 1.6+ asks for periodic mixed systems)."""
        return False


__all__ = ["HessdistillPotentialImpl", "HessdistillPotentialImplFactory"]
