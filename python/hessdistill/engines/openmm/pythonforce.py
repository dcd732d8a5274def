"""``openmm.PythonForce`` computations (OpenMM >= 8.5): the fallback when openmmtorch cannot run a TorchScript
student, and the only route for a compiled .pt2 student. Each is a picklable State -> (energy kJ/mol, forces
kJ/mol/nm) callable (PythonForce pickles its function when a System is copied or serialized)."""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import InputError
from ...formats import load_student
from ...formats.evaluate import pair_records
from ...neighbors import cell_list_edges
from ...units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM


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


class HostVerletList:
    """:class:`~.student_module.VerletList`'s rule on NumPy arrays, for a caller that holds positions on the host
    (the .pt2 callback): pairs within cutoff + ``skin`` are searched again (the same O(N) cell list) only after an
    atom moved more than skin / 2 or the cell changed; every other call keeps the candidates inside the cutoff.
    Each pair once (:func:`~hessdistill.formats.evaluate.pair_records`, the package's input). In NumPy because a
    small-array operation costs ~1 us against ~5 us for a torch dispatch: at ~30 atoms the torch list took 0.07 ms
    of a 0.7 ms step.

    ``__call__(x (N, 3) A, cell (3, 3) A, periodic)`` returns (pairs (2, P) int64, shifts (P, 3) in x's dtype),
    both C-contiguous."""

    def __init__(self, cutoff: float, skin: float):
        if not skin >= 0:
            raise InputError(f"skin must be >= 0 A, got {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.reference = self.cell = None
        self.i = self.j = self.shifts = None
        self.searches = 0  # how many times the candidates were searched (tests read it)

    def __call__(self, x: np.ndarray, cell: np.ndarray, periodic: bool) -> tuple[np.ndarray, np.ndarray]:
        stale = self.reference is None or self.reference.shape != x.shape or not np.array_equal(cell, self.cell)
        if not stale:
            d = x - self.reference
            stale = bool(np.einsum("ij,ij->i", d, d).max() > 0.25 * self.skin * self.skin)
        if stale:
            self._search(x, cell, periodic)
        r = x[self.j] - x[self.i] + self.shifts
        keep = np.flatnonzero(np.einsum("ij,ij->i", r, r) < self.cutoff * self.cutoff)
        return np.stack((self.i[keep], self.j[keep])), self.shifts[keep]

    def _search(self, x: np.ndarray, cell: np.ndarray, periodic: bool) -> None:
        xt, ct = torch.from_numpy(x), torch.from_numpy(cell)
        candidates, shifts = cell_list_edges(xt, ct, periodic, self.cutoff + self.skin)
        kept = pair_records(candidates, shifts)
        self.i, self.j = (candidates[k].index_select(0, kept).numpy() for k in (0, 1))
        self.shifts = shifts.index_select(0, kept).numpy()
        self.reference, self.cell = x.copy(), cell.copy()
        self.searches += 1


class ScriptedModuleCallback:
    """``openmm.PythonForce`` computation: State -> (energy kJ/mol, forces kJ/mol/nm). Picklable (PythonForce
    pickles its function when a System is copied or serialized): the module travels as TorchScript bytes."""

    def __init__(self, module: torch.jit.ScriptModule, periodic: bool, device: torch.device):
        self.module, self.periodic, self.device = module, periodic, torch.device(device)
        self.positions_nm, self.box_nm, self.box = None, None, None  # kept between calls (see Pt2Callback)

    def __call__(self, state):
        self.positions_nm = _positions_nm(state, self.positions_nm)
        if self.periodic:
            vectors = _box_vectors_nm(state)
            if vectors != self.box_nm:
                self.box_nm, self.box = vectors, torch.tensor(vectors, dtype=torch.float64, device=self.device)
        energy, forces = self.module(torch.from_numpy(self.positions_nm).to(self.device), self.box)
        return energy.item(), forces.detach().cpu().numpy()

    def __getstate__(self):
        buf = io.BytesIO()
        torch.jit.save(self.module, buf)
        return {"module": buf.getvalue(), "periodic": self.periodic, "device": str(self.device)}

    def __setstate__(self, state):
        module = torch.jit.load(io.BytesIO(state["module"]), map_location=torch.device(state["device"]))
        self.__init__(module, state["periodic"], state["device"])


class Pt2Callback:
    """``openmm.PythonForce`` computation for a compiled .pt2 student: State -> (energy kJ/mol, forces kJ/mol/nm),
    neighbors from a :class:`HostVerletList` (each pair once, the package's own input: no pair search per step),
    outputs from the package's ``energy_forces()``. Pickled as the file's path and the settings (the package is
    loaded again from that path).

    At ~30 atoms the package call is ~0.4 ms, so the rest of a step must stay well under it: positions and forces
    go through arrays kept between calls (no unit wrapping; the returned forces are overwritten by the next call,
    OpenMM copies them at once), and the cell is made again only when the box changed (a barostat step)."""

    def __init__(self, path, symbols: Sequence[str], atoms: Optional[Sequence[int]], periodic: bool, device,
                 skin: float):
        self.path, self.symbols, self.atoms = str(path), list(symbols), atoms
        self.periodic, self.skin = bool(periodic), float(skin)
        self.student = load_student(self.path, device=device)
        self.device = self.student.device
        self.species = self.student.species(self.symbols).to(self.device)
        self.index = None if atoms is None else np.asarray(atoms, dtype=np.int64)
        self.neighbors = HostVerletList(self.student.cutoff, skin)
        self.host_dtype = torch.empty(0, dtype=self.student.dtype).numpy().dtype
        self.box_nm, self.cell = None, np.zeros((3, 3), dtype=self.host_dtype)
        # (N, 3) float64 nm filled by the State; (n, 3) A in the student's dtype; (N, 3) float64 kJ/mol/nm returned
        self.positions_nm = self.x = self.forces = None

    def _cell(self, state) -> np.ndarray:
        """The box in A, made again only when the State's box vectors changed."""
        box = _box_vectors_nm(state)
        if box != self.box_nm:
            self.box_nm = box
            self.cell = (np.array(box, dtype=np.float64) * NM_TO_ANGSTROM).astype(self.host_dtype)
        return self.cell

    def __call__(self, state):
        nm = self.positions_nm = _positions_nm(state, self.positions_nm)
        picked = nm if self.index is None else nm[self.index]
        if self.x is None or self.x.shape != picked.shape:
            self.x = np.empty(picked.shape, dtype=self.host_dtype)
            self.forces = np.zeros(nm.shape, dtype=np.float64)
        np.multiply(picked, NM_TO_ANGSTROM, out=self.x, casting="same_kind")
        pairs, shifts = self.neighbors(self.x, self._cell(state) if self.periodic else self.cell, self.periodic)
        x, pairs, shifts = (torch.from_numpy(a).to(self.device) for a in (self.x, pairs, shifts))  # views on CPU
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
