"""``openmm.PythonForce`` computations (OpenMM >= 8.5): the fallback when openmmtorch cannot run a TorchScript
student, and the only route for a compiled .pt2 student. Each is a picklable State -> (energy kJ/mol, forces
kJ/mol/nm) callable (PythonForce pickles its function when a System is copied or serialized)."""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
import torch

from ...formats import load_student
from ...units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM
from .student_module import VerletList


def _positions_nm(state, out: Optional[np.ndarray]) -> np.ndarray:
    """The State's positions in nm as float64 (N, 3), written into ``out`` when it has the right shape. Through
    the State's own copy-into-array call where this OpenMM has it: ``getPositions(asNumpy=True)`` allocates, wraps
    in units and calls ``dir()`` every step, a cost comparable to a small student's."""
    fill = getattr(state, "_getVectorAsNumpy", None)
    if fill is None:
        from openmm import unit

        return np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    n = state._getNumParticles()
    if out is None or out.shape != (n, 3):
        out = np.empty((n, 3), dtype=np.float64)
    fill(type(state).Positions, out)
    return out


class ScriptedModuleCallback:
    """``openmm.PythonForce`` computation: State -> (energy kJ/mol, forces kJ/mol/nm). Picklable (PythonForce
    pickles its function when a System is copied or serialized): the module travels as TorchScript bytes."""

    def __init__(self, module: torch.jit.ScriptModule, periodic: bool, device: torch.device):
        self.module, self.periodic, self.device = module, periodic, torch.device(device)

    def __call__(self, state):
        from openmm import unit

        pos = torch.from_numpy(np.asarray(state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)))
        box = None
        if self.periodic:
            box = torch.from_numpy(np.asarray(state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)))
            box = box.to(self.device)
        energy, forces = self.module(pos.to(self.device), box)
        return float(energy), forces.detach().cpu().numpy()

    def __getstate__(self):
        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        return {"module": buf.getvalue(), "periodic": self.periodic, "device": str(self.device)}

    def __setstate__(self, state):
        self.device = torch.device(state["device"])
        self.periodic = state["periodic"]
        self.module = torch.jit.load(io.BytesIO(state["module"]), map_location=self.device)


class Pt2Callback:
    """``openmm.PythonForce`` computation for a compiled .pt2 student: State -> (energy kJ/mol, forces kJ/mol/nm),
    neighbors from the same :class:`VerletList` as the TorchScript path, kept as each pair once (the package's own
    input: no pair search per step), outputs from the package's ``energy_forces()``. Pickled as the file's path
    and the settings (the package is loaded again from that path)."""

    def __init__(self, path, symbols: Sequence[str], atoms: Optional[Sequence[int]], periodic: bool, device,
                 skin: float):
        self.path, self.symbols, self.atoms = str(path), list(symbols), atoms
        self.periodic, self.skin = bool(periodic), float(skin)
        self.student = load_student(self.path, device=device)
        self.device = self.student.device
        self.species = self.student.species(self.symbols).to(self.device)
        self.index = None if atoms is None else torch.tensor(atoms, dtype=torch.long, device=self.device)
        # eager, not scripted: it is called from Python anyway (scripted, it measured no faster)
        self.neighbors = VerletList(self.student.cutoff, skin, self.student.dtype, half=True).to(self.device)
        self.no_cell = torch.zeros(3, 3, dtype=self.student.dtype, device=self.device)
        self.positions_nm = None  # (N, 3) float64, filled by the State each step

    def __call__(self, state):
        from openmm import unit

        dtype = self.student.dtype
        nm = _positions_nm(state, self.positions_nm)
        self.positions_nm = nm
        pos = torch.from_numpy(nm).to(device=self.device, dtype=dtype).mul_(NM_TO_ANGSTROM)
        x = pos if self.index is None else pos.index_select(0, self.index)
        cell = self.no_cell
        if self.periodic:
            box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer)
            cell = torch.from_numpy(np.asarray(box)).to(device=self.device, dtype=dtype) * NM_TO_ANGSTROM
        pairs, shifts = self.neighbors(x, cell, self.periodic)
        energy, forces = self.student.energy_forces(x, self.species, pairs, shifts)
        energy = float(energy) * EV_TO_KJ_PER_MOL
        if not np.isfinite(nm).all():  # atoms with NaN positions have no edges: say so with a NaN energy
            energy = float("nan")
        forces = forces.to(torch.float64) * (EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM)
        if self.index is not None:
            forces = torch.zeros(pos.shape[0], 3, dtype=torch.float64, device=self.device).index_copy(
                0, self.index, forces)
        return energy, forces.cpu().numpy()

    def __getstate__(self):
        return {"path": self.path, "symbols": self.symbols, "atoms": self.atoms, "periodic": self.periodic,
                "device": str(self.device), "skin": self.skin}

    def __setstate__(self, state):
        self.__init__(state["path"], state["symbols"], state["atoms"], state["periodic"], state["device"],
                      state["skin"])
