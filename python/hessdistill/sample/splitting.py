"""The seeded train/validation/test split, stored in ``atoms.info["split"]``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from ..errors import InputError


def share_out(n: int, parts: int) -> list[int]:
    """``n`` items shared out over ``parts`` as evenly as possible, the first parts taking the remainder."""
    return [n // parts + (1 if k < n % parts else 0) for k in range(parts)]


def split(structures: Sequence[Atoms], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[Atoms]:
    """Assign train/val/test at random (seeded) in the given fractions; returns the structures in input order."""
    n = len(structures)
    if n < 3:
        raise InputError(f"need at least 3 structures for a train/val/test split, got {n}")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(f[1] * n)))
    n_test = max(1, int(round(f[2] * n)))
    labels = np.array(["train"] * n, dtype=object)
    labels[order[:n_val]] = "val"
    labels[order[n_val : n_val + n_test]] = "test"
    for atoms, lab in zip(structures, labels):
        atoms.info["split"] = str(lab)
    return list(structures)
