"""Structures made by perturbing others: rattled copies and randomly strained periodic cells.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import InputError


def rattled(atoms: Atoms, n: int, stdev: float, seed: int) -> list[Atoms]:
    """``n`` copies with Gaussian displacements of ``stdev`` A (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=stdev, size=a.positions.shape)
        out.append(a)
    return out


def strained(structures: Sequence[Atoms], strain: float, seed: int) -> list[Atoms]:
    """Copies of periodic ``structures``, each with its cell and atoms deformed by its own random strain (seeded).

    The strain is ``u * I + shear``: an isotropic linear strain u uniform in [-strain, strain] (volume change about
    3u) plus a symmetric traceless shear with components uniform in [-strain/4, strain/4]; positions move with the
    cell (fractional coordinates kept).

    Example
    -------
    >>> cells = strained(rattled(bulk("Si", cubic=True), 20, 0.05, seed=0), 0.01, seed=0)  # +-3% in volume
    """
    if not (np.isfinite(strain) and 0 < strain < 0.5):
        raise InputError(f"strain must be a linear strain in (0, 0.5), e.g. 0.01 for about +-3% in volume; "
                         f"got {strain}")
    rng = np.random.default_rng([seed, 2])  # its own stream: the same seed's rattling stays as it was
    out = []
    for atoms in structures:
        if not atoms.pbc.all():
            raise InputError(f"straining needs cells periodic in all three directions, got pbc={atoms.pbc.tolist()} "
                             f"for {atoms.get_chemical_formula()}")
        shear = rng.uniform(-strain / 4, strain / 4, size=(3, 3))
        shear = 0.5 * (shear + shear.T)
        shear -= np.trace(shear) / 3 * np.eye(3)
        eps = rng.uniform(-strain, strain) * np.eye(3) + shear
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        out.append(a)
    return out
