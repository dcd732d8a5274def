"""The teacher interface: energy, forces, Hessian rows and (periodic cells) stress of a structure, eV and Angstrom.

A teacher is anything that gives the energy of a structure. ``AutogradTeacher`` turns a differentiable energy
function of positions into forces (-dE/dx), Hessian rows and Hessian-vector products along probe directions (both
vector-Jacobian products of the forces, a row being the product with a unit vector; batched with
``is_grads_batched`` and chunked to bound memory, or a plain loop where that is faster). A teacher whose
forces are not -dE/dx (``conservative = False``) gets its Hessian as the symmetrized negative force Jacobian.
Its stress is the strain derivative (1/V) dE/d(strain) of ``strain_energy_function`` where a teacher gives one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from ase import Atoms

from ..devices import resolve_device
from ..errors import ConfigError, StructureError
from ..structures import check_elements, check_structure

#: Voigt order of a stress (ASE's): xx, yy, zz, yz, xz, xy, as flat indices of the 3x3 tensor.
VOIGT = (0, 4, 8, 5, 2, 1)


@dataclass
class Label:
    """Teacher labels of one structure. ``hessian`` holds the rows ``hessian_rows`` of the 3N x 3N Hessian
    (row k is d^2E / dx_k dx, coordinates ordered atom-major: x0, y0, z0, x1, ...); or, labelled along probe
    directions instead, ``probes`` holds the unit directions v and ``hvp`` the products H v (no rows)."""

    energy: float
    forces: np.ndarray  # (N, 3) eV/A
    hessian_rows: np.ndarray | None = None  # (R,) int
    hessian: np.ndarray | None = None  # (R, 3N) eV/A^2
    stress: np.ndarray | None = None  # (6,) eV/A^3, Voigt, ASE's sign; periodic cells of teachers with stress
    probes: np.ndarray | None = None  # (k, N, 3) unit probe directions
    hvp: np.ndarray | None = None  # (k, N, 3) eV/A^2, H v for each probe


def has_periodic_cell(atoms: Atoms) -> bool:
    """Whether a stress is defined for ``atoms`` (periodic in all three directions, non-zero volume)."""
    return bool(atoms.pbc.all()) and abs(float(np.linalg.det(atoms.cell.array))) >= 1e-6


def periodic_volume(atoms: Atoms, who: str) -> float:
    """The cell volume of a structure periodic in all three directions; StructureError otherwise."""
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    if not has_periodic_cell(atoms):
        raise StructureError(f"{who}: stress needs a cell periodic in all three directions, got "
                             f"pbc={atoms.pbc.tolist()} and volume {volume:.3g} A^3")
    return volume


class Teacher(ABC):
    """Base class of all teachers. Subclasses set ``name`` and ``elements`` (None: any element), and
    ``has_stress`` where they implement ``stress``."""

    name: str = "teacher"
    #: What ``load_teacher`` takes to load this teacher again, written to label stores so that ``report`` and
    #: ``refine`` find it (model-file teachers: their absolute path); empty: ``name``.
    spec: str = ""
    elements: frozenset[str] | None = None
    #: Whether ``stress`` is implemented; labels of periodic cells then hold the stress.
    has_stress: bool = False

    def check(self, atoms: Atoms) -> None:
        """Raise a clear error if ``atoms`` is not something this teacher can label."""
        check_structure(atoms)
        check_elements(atoms, self.elements, f"teacher {self.name}")

    @abstractmethod
    def energy_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (eV/A, shape (N, 3))."""

    @abstractmethod
    def hessian(self, atoms: Atoms, rows: Sequence[int] | None = None) -> np.ndarray:
        """Rows ``rows`` (all 3N if None) of the energy Hessian, eV/A^2, shape (len(rows), 3N)."""

    def hessian_vector_products(self, atoms: Atoms, vectors: np.ndarray) -> np.ndarray:
        """H v for each direction of ``vectors`` (k, N, 3), eV/A^2, shape (k, N, 3). This default takes the full
        Hessian; teachers with autograd take one vector-Jacobian product per direction instead."""
        vectors = np.asarray(vectors, dtype=np.float64)
        return (vectors.reshape(len(vectors), -1) @ self.hessian(atoms).T).reshape(vectors.shape)

    def stress(self, atoms: Atoms) -> np.ndarray:
        """Stress (1/V) dE/d(strain) of a periodic cell in eV/A^3, Voigt order (xx, yy, zz, yz, xz, xy) and ASE's
        sign (positive under tension), like ``atoms.get_stress()``. Only where ``has_stress``."""
        raise ConfigError(f"teacher {self.name} gives no stress (has_stress is False); teachers with stress: "
                          "sevennet0, chgnet, morse/lj with a cutoff, mace:PATH, ASE calculators that implement it")

    def label(self, atoms: Atoms, rows: Sequence[int] | None = None, with_hessian: bool = True,
              probes: np.ndarray | None = None) -> Label:
        """Energy, forces, (optionally) Hessian rows, or with ``probes`` (k, N, 3) the products H v along them
        instead, and, for a periodic cell when the teacher has it, stress."""
        self.check(atoms)
        energy, forces = self.energy_forces(atoms)
        stress = self.stress(atoms) if self.has_stress and has_periodic_cell(atoms) else None
        if not with_hessian:
            return Label(energy, forces, stress=stress)
        if probes is not None:
            probes = np.asarray(probes, dtype=np.float64)
            return Label(energy, forces, stress=stress, probes=probes,
                         hvp=self.hessian_vector_products(atoms, probes))
        rows_arr = np.arange(3 * len(atoms)) if rows is None else np.asarray(rows, dtype=np.int64)
        return Label(energy, forces, rows_arr, self.hessian(atoms, rows_arr), stress)

    def as_calculator(self):
        """An ASE calculator of this teacher's energy and forces (used for teacher MD when sampling)."""
        from .calculator import TeacherCalculator

        return TeacherCalculator(self)


EnergyFn = Callable[[torch.Tensor], torch.Tensor]


class AutogradTeacher(Teacher):
    """A teacher given by a differentiable energy function of Cartesian positions.

    Subclasses implement ``energy_function(atoms)``, returning a callable that maps a (N, 3) position tensor in
    Angstrom to a scalar energy tensor in eV, and the positions tensor to start from.

    Parameters
    ----------
    hessian_mode:
        ``"batched"`` (all rows of a chunk in one batched VJP), ``"loop"`` (one VJP per row) or ``"auto"``
        (batched up to ``loop_above_atoms`` atoms, loop beyond: batching stops paying for large graphs).
    chunk_size:
        Rows per batched VJP; bounds the memory of the batched path.
    """

    conservative: bool = True
    #: Above this many atoms "auto" mode uses the row loop (measured faster for CHGNet and SevenNet).
    loop_above_atoms: int | None = None

    def __init__(self, hessian_mode: str = "auto", chunk_size: int = 64, device: str | None = None):
        if hessian_mode not in ("auto", "batched", "loop"):
            raise ConfigError(f"hessian_mode must be auto, batched or loop, got {hessian_mode!r}")
        self.hessian_mode = hessian_mode
        self.chunk_size = int(chunk_size)
        self.device = resolve_device(device)

    @abstractmethod
    def energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        """Return (energy_fn, positions) where energy_fn(positions) is the scalar energy in eV."""

    def strain_energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        """Return (energy_fn, zero_strain): energy_fn(eps) is the energy in eV of ``atoms`` with cell and positions
        deformed by the symmetric strain ``eps`` (3, 3) (rows x -> x (1 + eps)); zero_strain is a zero (3, 3)
        tensor of the teacher's dtype and device. Teachers that implement it set ``has_stress = True``."""
        raise NotImplementedError(f"{type(self).__name__} sets has_stress but has no strain_energy_function")

    def stress(self, atoms: Atoms) -> np.ndarray:
        """(1/V) dE/d(strain) at zero strain by autograd (Voigt, eV/A^3, ASE's sign: see ``Teacher.stress``)."""
        if not self.has_stress:
            return super().stress(atoms)  # the one "no stress" error
        self.check(atoms)
        volume = periodic_volume(atoms, f"teacher {self.name}")
        energy_fn, zero = self.strain_energy_function(atoms)
        strain = zero.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            # symmetric strain: dE/d(eps) is the symmetric stress whatever rounding leaves in the raw gradient
            grad = torch.autograd.grad(energy_fn(0.5 * (strain + strain.T)), strain)[0]
        return grad.detach().cpu().double().numpy().reshape(-1)[list(VOIGT)] / volume

    def forces_function(self, atoms: Atoms) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """Forces as a function of positions. Conservative teachers derive it from the energy."""
        energy_fn, pos = self.energy_function(atoms)

        def forces_fn(x: torch.Tensor) -> torch.Tensor:
            if not x.requires_grad:
                x = x.requires_grad_(True)
            e = energy_fn(x)
            return -torch.autograd.grad(e, x, create_graph=torch.is_grad_enabled())[0]

        return forces_fn, pos

    def energy_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        energy_fn, pos = self.energy_function(atoms)
        x = pos.detach().clone().requires_grad_(True)
        e = energy_fn(x)
        if self.conservative:
            f = -torch.autograd.grad(e, x)[0]
        else:
            forces_fn, _ = self.forces_function(atoms)
            with torch.no_grad():
                f = forces_fn(x.detach())
        return float(e.detach()), f.detach().cpu().double().numpy()

    def _mode(self, n_atoms: int) -> str:
        if self.hessian_mode != "auto":
            return self.hessian_mode
        if self.loop_above_atoms is not None and n_atoms > self.loop_above_atoms:
            return "loop"
        return "batched"

    def hessian(self, atoms: Atoms, rows: Sequence[int] | None = None) -> np.ndarray:
        n3 = 3 * len(atoms)
        rows_arr = np.arange(n3) if rows is None else np.asarray(rows, dtype=np.int64)
        forces_fn, pos = self.forces_function(atoms)
        x = pos.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            if self.conservative:
                return -_force_vjps(forces_fn, x, self._mode(len(atoms)), self.chunk_size, rows=rows_arr)
            # Non-conservative forces: symmetrize the full negative Jacobian, then take the rows.
            jac = _force_vjps(forces_fn, x, self._mode(len(atoms)), self.chunk_size, rows=np.arange(n3))
            return -0.5 * (jac + jac.T)[rows_arr]

    def hessian_vector_products(self, atoms: Atoms, vectors: np.ndarray) -> np.ndarray:
        """H v = -(dF/dx)^T v for each direction (k, N, 3): one VJP of the forces per direction (the Hessian is
        symmetric); non-conservative teachers take the symmetrized full Jacobian, as ``hessian`` does."""
        if not self.conservative:
            return super().hessian_vector_products(atoms, vectors)
        vectors = np.asarray(vectors, dtype=np.float64)
        forces_fn, pos = self.forces_function(atoms)
        x = pos.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            hv = -_force_vjps(forces_fn, x, self._mode(len(atoms)), self.chunk_size,
                              vectors=vectors.reshape(len(vectors), -1))
        return hv.reshape(vectors.shape)


def _force_vjps(forces_fn, x: torch.Tensor, mode: str, chunk_size: int, rows: np.ndarray | None = None,
                vectors: np.ndarray | None = None) -> np.ndarray:
    """v^T dF/dx for each unit vector e_k of ``rows`` (row k of the force Jacobian) or each row v of ``vectors``
    (k, 3N); unit vectors are made a chunk at a time, so that all 3N rows never hold a 3N x 3N identity."""
    forces = forces_fn(x).reshape(-1)
    n3 = forces.numel()
    count = len(rows) if rows is not None else len(vectors)
    out = np.empty((count, n3))
    step = 1 if mode == "loop" else chunk_size
    for start in range(0, count, step):
        stop = min(start + step, count)
        if rows is not None:
            v = torch.zeros(stop - start, n3, dtype=forces.dtype, device=forces.device)
            v[torch.arange(stop - start), torch.as_tensor(rows[start:stop], device=forces.device)] = 1.0
        else:
            v = torch.as_tensor(vectors[start:stop], dtype=forces.dtype, device=forces.device)
        if mode == "loop":
            g = torch.autograd.grad(forces, x, grad_outputs=v[0], retain_graph=True)[0]
        else:
            g = torch.autograd.grad(forces, x, grad_outputs=v, retain_graph=True, is_grads_batched=True)[0]
        out[start:stop] = g.reshape(stop - start, n3).detach().cpu().double().numpy()
    return out
