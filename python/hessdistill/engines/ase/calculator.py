"""ASE calculator for an exported student file: energy, forces, per-atom energies, and stress when periodic.

Example
-------
>>> from hessdistill.engines.ase import StudentCalculator
>>> atoms.calc = StudentCalculator("student.pt")   # or a compiled "student.pt2"
>>> atoms.get_forces()

Both formats go through :func:`hessdistill.formats.load_student` and give the same outputs (:mod:`hessdistill.
formats.evaluate`): forces -dE/dx and the virial W = -dE/d(strain) by autograd, in the .pt2 package traced into
its compiled graph; stress is -W/V.
"""

from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator, all_changes

from ...formats import load_student
from ...neighbors import neighbor_list
from ...structures import MIN_DISTANCE, check_coordinates, check_overlaps


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

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        check_coordinates(atoms)
        sf = self.student
        species = sf.species(atoms.get_chemical_symbols())
        edge_index, shifts = neighbor_list(atoms, max(sf.cutoff, MIN_DISTANCE))
        check_overlaps(atoms, edge_index, shifts)  # on the student's own list: no second search per step
        if sf.cutoff < MIN_DISTANCE:
            edge_index, shifts = neighbor_list(atoms, sf.cutoff)
        dev, dt = sf.device, sf.dtype
        pos = torch.tensor(atoms.positions, dtype=dt, device=dev)
        sh = torch.tensor(shifts, dtype=dt, device=dev)
        ei = torch.tensor(edge_index, dtype=torch.long, device=dev)
        want_stress = "stress" in properties and bool(atoms.pbc.all())
        out = sf.evaluate(pos, species, ei, sh)
        energy = float(out.energy)
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out.energies.cpu().double().numpy(),
            "forces": out.forces.cpu().double().numpy(),
        }
        if want_stress:
            sigma = -out.virial.cpu().double().numpy() / atoms.get_volume()
            sigma = 0.5 * (sigma + sigma.T)
            self.results["stress"] = sigma.flat[[0, 4, 8, 5, 2, 1]]
        elif "stress" in properties:
            from ase.calculators.calculator import PropertyNotImplementedError

            raise PropertyNotImplementedError("stress needs a cell periodic in all three directions")
