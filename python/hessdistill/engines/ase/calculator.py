"""ASE calculators for exported student files: one student, or a committee of them.

:class:`StudentCalculator` gives energy, forces, per-atom energies, and stress when periodic.
:class:`CommitteeCalculator` runs K students (files that differ in training seed, from ``hessdistill distill
--committee K``): the mean (or the first member, cheaper) is the result, and the committee's force deviation
(:func:`hessdistill.monitor.deviation.force_deviation`, DeePMD's ``max_devi_f``) is a result too.

Example
-------
>>> from hessdistill.engines.ase import StudentCalculator, CommitteeCalculator
>>> atoms.calc = StudentCalculator("student.pt")   # or a compiled "student.pt2"
>>> atoms.get_forces()
>>> atoms.calc = CommitteeCalculator(["run/student.0.pt", "run/student.1.pt", "run/student.2.pt"])
>>> atoms.get_forces(), atoms.calc.get_property("max_devi_f", atoms)

Both formats go through :func:`hessdistill.formats.load_student` and give the same outputs (:mod:`hessdistill.
formats.evaluate`): forces -dE/dx and the virial W = -dE/d(strain) by autograd, in the .pt2 package traced into
its compiled graph; stress is -W/V.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from ...errors import ConfigError
from ...formats import load_student
from ...neighbors import neighbor_list
from ...structures import MIN_DISTANCE, check_coordinates, check_overlaps

#: committee results besides the ASE standard ones
DEVIATION_PROPERTIES = ["max_devi_f", "min_devi_f", "mean_devi_f", "devi_f", "committee_forces",
                        "committee_energies"]
DRIVES = ("mean", "first")


def evaluate_student(sf, atoms, stress: bool = False, graphs: dict | None = None,
                     species: dict | None = None) -> dict:
    """Energy, free_energy, energies, forces (and stress when asked and fully periodic) of one loaded student
    (:func:`~hessdistill.formats.load_student`) on ``atoms``. ``graphs`` caches neighbor lists by cutoff for one
    call, so committee members with the same cutoff share one search; ``species``, kept by the caller across
    calls, caches the student's type indices by atomic numbers (MD asks for them every step)."""
    graphs = {} if graphs is None else graphs
    species = {} if species is None else species
    cutoff = max(sf.cutoff, MIN_DISTANCE)
    if cutoff not in graphs:
        edge_index, shifts = neighbor_list(atoms, cutoff)
        check_overlaps(atoms, edge_index, shifts)  # on the student's own list: no second search per step
        graphs[cutoff] = edge_index, shifts
    edge_index, shifts = graphs[cutoff]
    if sf.cutoff < MIN_DISTANCE:
        edge_index, shifts = neighbor_list(atoms, sf.cutoff)
    dev, dt = sf.device, sf.dtype
    key = (id(sf), atoms.numbers.tobytes())
    if key not in species:
        species[key] = sf.species(atoms.get_chemical_symbols())
    out = sf.evaluate(torch.tensor(atoms.positions, dtype=dt, device=dev), species[key],
                      torch.tensor(edge_index, dtype=torch.long, device=dev), torch.tensor(shifts, dtype=dt, device=dev))
    energy = float(out.energy)
    results = {"energy": energy, "free_energy": energy, "energies": out.energies.cpu().double().numpy(),
               "forces": out.forces.cpu().double().numpy()}
    if stress:
        if not bool(atoms.pbc.all()):
            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
        sigma = -out.virial.cpu().double().numpy() / atoms.get_volume()
        sigma = 0.5 * (sigma + sigma.T)
        results["stress"] = sigma.flat[[0, 4, 8, 5, 2, 1]]
    return results


class StudentCalculator(Calculator):
    """Energy (eV), forces (eV/A), ``energies`` (per atom) and, for fully periodic cells, stress (eV/A^3).

    Forces are -dE/dx and stress is (1/V) dE/d(strain), both by autograd through the exported TorchScript model,
    so they are exactly consistent with the energy. Building one changes no process-wide setting; for MD speed
    on small systems call :func:`hessdistill.heap.keep_freed_memory` once in your script (page faults otherwise
    made 54-atom steps up to 2x slower) and choose torch's thread count (``torch.set_num_threads``).
    """

    implemented_properties = ["energy", "free_energy", "forces", "energies", "stress"]

    def __init__(self, model_path, device: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.student = load_student(model_path, device=device)
        self._species: dict = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        check_coordinates(self.atoms)
        self.results = evaluate_student(self.student, self.atoms, stress="stress" in properties,
                                        species=self._species)


class CommitteeCalculator(Calculator):
    """A committee of K >= 2 students: mean (``drive="mean"``) or first member's (``drive="first"``) energy,
    forces, ``energies`` and stress, plus the committee's force deviation.

    Extra results (eV/A): ``max_devi_f``, ``min_devi_f``, ``mean_devi_f``, ``devi_f`` (per atom),
    ``committee_forces`` (K, N, 3) and ``committee_energies`` (K,). With ``drive="mean"`` every call evaluates all
    members (the mean of conservative forces is conservative: it is -d(mean energy)/dx). With ``drive="first"``
    a call that asks only for standard properties evaluates the first member, so MD costs one student per step
    and the deviation (all K members) is computed only when asked for (``get_property("max_devi_f")``).
    """

    implemented_properties = StudentCalculator.implemented_properties + DEVIATION_PROPERTIES

    def __init__(self, model_paths: Sequence, device: str | None = None, drive: str = "mean", **kwargs):
        super().__init__(**kwargs)
        if drive not in DRIVES:
            raise ConfigError(f"committee drive must be one of {', '.join(DRIVES)}, got {drive!r}")
        paths = list(model_paths)
        if len(paths) < 2:
            raise ConfigError(f"a committee needs at least 2 student files, got {len(paths)}")
        self.drive = drive
        self.students = [load_student(p, device=device) for p in paths]
        self._species: dict = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ...monitor.deviation import force_deviation

        super().calculate(atoms, properties, system_changes)
        check_coordinates(self.atoms)
        stress = "stress" in properties
        want_all = self.drive == "mean" or any(p in DEVIATION_PROPERTIES for p in properties)
        members = self.students if want_all else self.students[:1]
        graphs: dict = {}
        outs = [evaluate_student(sf, self.atoms, stress=stress, graphs=graphs, species=self._species)
                for sf in members]
        if self.drive == "first":
            self.results = dict(outs[0])
        else:
            self.results = {k: np.mean([o[k] for o in outs], axis=0) for k in outs[0]}
            for k in ("energy", "free_energy"):
                self.results[k] = float(self.results[k])
        if want_all:
            forces = np.stack([o["forces"] for o in outs])
            self.results.update(force_deviation(forces))
            self.results["committee_forces"] = forces
            self.results["committee_energies"] = np.array([o["energy"] for o in outs])
