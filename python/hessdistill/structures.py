"""Checks on input structures, shared by every stage, so bad input fails early with a clear message."""

from __future__ import annotations

from typing import Iterable

import numpy as np
from ase import Atoms

from .errors import StructureError, UnsupportedElementError

#: Two atoms closer than this (Angstrom) are taken as overlapping: no force field is meaningful there.
MIN_DISTANCE = 0.4


def check_elements(atoms: Atoms | Iterable[str], allowed: Iterable[str] | None, who: str) -> None:
    """Raise UnsupportedElementError naming the elements of ``atoms`` (a structure or its element symbols) that
    ``who`` does not cover (``allowed`` None: any element). The one element check of every stage."""
    if allowed is None:
        return
    allowed = set(allowed)
    symbols = atoms.get_chemical_symbols() if isinstance(atoms, Atoms) else list(atoms)
    missing = sorted(set(symbols) - allowed)
    if missing:
        where = f" in {atoms.get_chemical_formula()}" if isinstance(atoms, Atoms) else ""
        raise UnsupportedElementError(
            f"{who} does not cover element(s) {', '.join(missing)}{where}; it covers {', '.join(sorted(allowed))}"
        )


def check_structure(atoms: Atoms, min_distance: float = MIN_DISTANCE) -> None:
    """Raise StructureError for empty structures, non-finite coordinates/cell, or overlapping atoms."""
    check_coordinates(atoms)
    if len(atoms) > 1:
        # a neighbor search, O(N): all pair distances cost 30 s and N^2 memory at 4k atoms, on every MD step.
        # Searched at 2 A or more: vesin's cell list is 5x slower at 0.4 A (cells far below the atomic spacing).
        from .neighbors import neighbor_list

        check_overlaps(atoms, *neighbor_list(atoms, max(min_distance, 2.0)), min_distance=min_distance)


def check_coordinates(atoms: Atoms) -> None:
    """The checks of ``check_structure`` that need no neighbor list: atoms present, finite coordinates and cell,
    a periodic cell with volume."""
    if len(atoms) == 0:
        raise StructureError("structure has no atoms")
    pos = atoms.get_positions()
    if not np.all(np.isfinite(pos)):
        bad = np.unique(np.nonzero(~np.isfinite(pos))[0])
        raise StructureError(f"non-finite coordinates for atom(s) {bad.tolist()[:10]}")
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise StructureError("non-finite cell vectors")
    if atoms.pbc.any() and abs(np.linalg.det(cell)) < 1e-6:
        raise StructureError("periodic structure with a zero-volume cell")


def check_overlaps(atoms: Atoms, edge_index: np.ndarray, shifts: np.ndarray,
                   min_distance: float = MIN_DISTANCE) -> None:
    """Raise StructureError for two atoms closer than ``min_distance``, given a full neighbor list of ``atoms``
    (``neighbors.neighbor_list``) with a cutoff of at least ``min_distance``: callers that search anyway (the ASE
    calculator) pass theirs."""
    pos = atoms.get_positions()
    i, j = edge_index
    d = np.linalg.norm(pos[j] - pos[i] + shifts, axis=1)
    if len(d) and d.min() < min_distance:
        k = int(np.argmin(d))
        a, b = sorted((int(i[k]), int(j[k])))
        raise StructureError(f"atoms {a} and {b} overlap: distance {d[k]:.3f} A < {min_distance} A")


#: two atoms closer than this x the sum of their covalent radii are taken as bonded (the usual guess of
#: topology builders; the same criterion as the MD stability analysis)
BOND_SCALE = 1.2


def covalent_bonds(atoms: Atoms, scale: float = BOND_SCALE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covalent bonds guessed from distances: ``(i, j, d)`` with every bond in both directions and ``d`` the bond
    vector from i to j (minimum image where periodic), for atoms closer than ``scale`` x (sum of covalent radii)."""
    from ase.data import covalent_radii
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijD", atoms, scale * covalent_radii[atoms.numbers], self_interaction=False)
    return i, j, d
