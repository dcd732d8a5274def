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


def _box_vectors_nm(state) -> list:
    """The State's box vectors in nm as three ``Vec3``, without the unit wrapping of ``getPeriodicBoxVectors()``
    where this OpenMM exposes the plain call."""
    from openmm import _openmm, unit

    plain = getattr(_openmm, "State_getPeriodicBoxVectors", None)
    if plain is None:
        return list(state.getPeriodicBoxVectors().value_in_unit(unit.nanometer))
    return plain(state)


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
    and the settings (the package is loaded again from that path).

    At ~30 atoms the package call is ~0.4 ms, so the rest of a step must stay well under it: positions, forces and
    the cell go through buffers kept between calls (no per-step allocation or unit wrapping), and the cell tensor
    is made again only when the box changed (a barostat step)."""

    def __init__(self, path, symbols: Sequence[str], atoms: Optional[Sequence[int]], periodic: bool, device,
                 skin: float):
        self.path, self.symbols, self.atoms = str(path), list(symbols), atoms
        self.periodic, self.skin = bool(periodic), float(skin)
        self.student = load_student(self.path, device=device)
        self.device = self.student.device
        self.species = self.student.species(self.symbols).to(self.device)
        self.index = None if atoms is None else np.asarray(atoms, dtype=np.int64)
        # eager, not scripted: it is called from Python anyway (scripted, it measured no faster)
        self.neighbors = VerletList(self.student.cutoff, skin, self.student.dtype, half=True).to(self.device)
        self.box_nm, self.cell = None, torch.zeros(3, 3, dtype=self.student.dtype, device=self.device)
        # (N, 3) float64 nm filled by the State; (n, 3) A in the student's dtype; (N, 3) float64 kJ/mol/nm returned
        self.positions_nm = self.x = self.forces = None

    def _cell(self, state) -> torch.Tensor:
        """The box in A as a (3, 3) tensor, made again only when the State's box vectors changed."""
        box = _box_vectors_nm(state)
        if box != self.box_nm:
            self.box_nm = box
            self.cell = torch.tensor(box, dtype=torch.float64).mul_(NM_TO_ANGSTROM).to(self.device, self.student.dtype)
        return self.cell

    def __call__(self, state):
        nm = self.positions_nm = _positions_nm(state, self.positions_nm)
        picked = nm if self.index is None else nm[self.index]
        if self.x is None or self.x.shape != picked.shape:
            self.x = np.empty(picked.shape, dtype=torch.empty(0, dtype=self.student.dtype).numpy().dtype)
            self.forces = np.zeros(nm.shape, dtype=np.float64)
        np.multiply(picked, NM_TO_ANGSTROM, out=self.x, casting="same_kind")
        x = torch.from_numpy(self.x).to(self.device)  # a view on CPU: nothing here keeps it past this call
        cell = self._cell(state) if self.periodic else self.cell
        pairs, shifts = self.neighbors(x, cell, self.periodic)
        energy, forces = self.student.energy_forces(x, self.species, pairs, shifts)
        energy = energy.item() * EV_TO_KJ_PER_MOL
        if not np.isfinite(self.x).all():  # atoms with NaN positions have no edges: say so with a NaN energy
            energy = float("nan")
        forces = forces.detach().cpu().numpy()
        if self.index is None:
            np.multiply(forces, EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM, out=self.forces)
        else:  # atoms outside the ML region keep the zeros the buffer was made with
            self.forces[self.index] = forces * (EV_TO_KJ_PER_MOL * NM_TO_ANGSTROM)
        return energy, self.forces

    def __getstate__(self):
        return {"path": self.path, "symbols": self.symbols, "atoms": self.atoms, "periodic": self.periodic,
                "device": str(self.device), "skin": self.skin}

    def __setstate__(self, state):
        self.__init__(state["path"], state["symbols"], state["atoms"], state["periodic"], state["device"],
                      state["skin"])
