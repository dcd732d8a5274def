"""A teacher wrapping any ASE calculator: energy and forces from the calculator, Hessian rows by central finite
differences of the forces, stress from the calculator where it implements it. Useful for calculators without
autograd (DFT codes, classical potentials)."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import ConfigError
from ..progress import progress_bar
from .base import Teacher, periodic_volume

#: Show a progress bar when one Hessian needs more force calls than this.
PROGRESS_ABOVE_CALLS = 50


class ASECalculatorTeacher(Teacher):
    """An ASE calculator as a teacher (energy eV, forces eV/A, Hessian eV/A^2 by finite differences).

    Row k of the Hessian is ``-(F(x + h e_k) - F(x - h e_k)) / (2h)``, flattened atom-major: column k of -dF/dx,
    which equals row k when the calculator's forces are conservative. When all 3N rows are asked for, the result
    is symmetrized, (H + H^T) / 2. Cost: 2 force calls per row, 6N per structure for the full Hessian; the error
    is O(h^2) plus the calculator's force noise divided by h. A product H v along a unit probe v is the same
    difference along v, ``-(F(x + h v) - F(x - h v)) / (2h)``: 2 force calls per probe. The stress is the
    calculator's own (``has_stress`` when "stress" is among its ``implemented_properties``).

    Parameters
    ----------
    calculator:
        Any ASE calculator that implements forces.
    delta:
        Finite-difference step h in Angstrom (default 1e-3).
    elements:
        Elements the calculator covers (None: any; then errors come from the calculator itself).
    name:
        Teacher name for messages (default ``ase:<calculator class>``).
    progress:
        Show a tqdm bar for Hessians needing more than ``PROGRESS_ABOVE_CALLS`` force calls.

    Example
    -------
    >>> from ase.build import bulk
    >>> from ase.calculators.emt import EMT
    >>> hess = ASECalculatorTeacher(EMT()).hessian(bulk("Cu", cubic=True))  # (12, 12), 24 force calls
    """

    def __init__(self, calculator, delta: float = 1e-3, elements=None, name: str | None = None,
                 progress: bool = True):
        if not hasattr(calculator, "get_forces") and not hasattr(calculator, "calculate"):
            raise ConfigError(f"ASE teacher needs an ASE calculator, got {type(calculator).__name__}")
        if not (np.isfinite(delta) and delta > 0):
            raise ConfigError(f"finite-difference step delta must be a positive number of Angstrom, got {delta!r}")
        self.calculator = calculator
        self.delta = float(delta)
        self.elements = frozenset(elements) if elements is not None else None
        self.name = name or f"ase:{type(calculator).__name__}"
        self.progress = progress
        self._warned = False

    def _attach(self, atoms: Atoms) -> Atoms:
        work = atoms.copy()
        del work.constraints  # the teacher labels the raw potential: no constraint may move or zero anything
        work.calc = self.calculator
        return work

    @property
    def has_stress(self) -> bool:
        return "stress" in getattr(self.calculator, "implemented_properties", ())

    def energy_forces(self, atoms: Atoms) -> tuple[float, np.ndarray]:
        work = self._attach(atoms)
        return float(work.get_potential_energy()), np.array(work.get_forces(), dtype=np.float64)

    def stress(self, atoms: Atoms) -> np.ndarray:
        if not self.has_stress:
            return super().stress(atoms)  # the one "no stress" error
        periodic_volume(atoms, f"teacher {self.name}")
        return np.array(self._attach(atoms).get_stress(voigt=True), dtype=np.float64)

    def hessian(self, atoms: Atoms, rows: Sequence[int] | None = None) -> np.ndarray:
        n3 = 3 * len(atoms)
        rows_arr = np.arange(n3) if rows is None else np.asarray(rows, dtype=np.int64)
        if rows_arr.size and (rows_arr.min() < 0 or rows_arr.max() >= n3):
            raise ConfigError(f"Hessian rows must lie in [0, {n3}) for {len(atoms)} atoms, got {rows_arr.tolist()}")
        if not self._warned:
            warnings.warn(
                f"teacher {self.name} computes Hessians by central finite differences of forces (step "
                f"{self.delta} A): 2 force calls per row, 6N per structure for the full Hessian "
                f"({6 * len(atoms)} here); this is slow for expensive calculators",
                stacklevel=2,
            )
            self._warned = True
        unique = np.unique(rows_arr)
        work = self._attach(atoms)
        x0 = atoms.get_positions()
        flat = x0.reshape(-1)
        cols = {}
        bar = progress_bar(2 * len(unique), f"{self.name} FD Hessian", unit="force", nested=True,
                           enabled=self.progress and 2 * len(unique) > PROGRESS_ABOVE_CALLS)
        try:
            for k in unique:
                f = []
                for sign in (1.0, -1.0):
                    x = flat.copy()
                    x[k] += sign * self.delta
                    work.set_positions(x.reshape(-1, 3))
                    f.append(np.asarray(work.get_forces(), dtype=np.float64).reshape(-1))
                    bar.update(1)
                cols[int(k)] = -(f[0] - f[1]) / (2.0 * self.delta)
        finally:
            bar.close()
        if len(unique) == n3:
            full = np.stack([cols[k] for k in range(n3)])
            full = 0.5 * (full + full.T)
            return full[rows_arr]
        return np.stack([cols[int(k)] for k in rows_arr]) if rows_arr.size else np.empty((0, n3))

    def hessian_vector_products(self, atoms: Atoms, vectors: np.ndarray) -> np.ndarray:
        """H v by central differences of the forces along each unit probe of ``vectors`` (k, N, 3)."""
        vectors = np.asarray(vectors, dtype=np.float64)
        work = self._attach(atoms)
        x0 = atoms.get_positions()
        out = np.empty_like(vectors)
        for j, v in enumerate(vectors):
            f = []
            for sign in (1.0, -1.0):
                work.set_positions(x0 + sign * self.delta * v)
                f.append(np.asarray(work.get_forces(), dtype=np.float64))
            out[j] = -(f[0] - f[1]) / (2.0 * self.delta)
        return out
