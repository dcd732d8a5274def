"""Analytic pair-potential teachers (Morse, Lennard-Jones): exact references for tests and tiny demos.

Without a cutoff (molecules) the energy is the plain pair sum, and ``pair_hessian`` gives its Hessian in closed
form, independent of autograd. With a cutoff (needed for periodic cells) the pair energy is multiplied by a
smooth switch that brings it and its first two derivatives to zero at the cutoff. The stress of a periodic cell
is the exact strain derivative of the same pair sum (a reference for tests).
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from ..dtypes import parse_dtype
from ..errors import ConfigError
from ..neighbors import neighbor_list_torch
from .base import AutogradTeacher


class PairTeacher(AutogradTeacher):
    """Sum over pairs of phi(r), optionally switched off smoothly between ``0.8 * cutoff`` and ``cutoff``."""

    name = "pair"
    has_stress = True  # periodic cells need a cutoff, and then the strain derivative is exact

    def __init__(self, cutoff: float | None = None, dtype: str = "float64", **kwargs):
        super().__init__(**kwargs)
        self.cutoff = cutoff
        self.dtype = parse_dtype(dtype, f"teacher {self.name} dtype")

    def phi(self, r: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dphi(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivative of phi (numpy), for the closed-form Hessian."""
        raise NotImplementedError

    def _switch(self, r: torch.Tensor) -> torch.Tensor:
        assert self.cutoff is not None
        r_on = 0.8 * self.cutoff
        x = ((r - r_on) / (self.cutoff - r_on)).clamp(0.0, 1.0)
        return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)  # smoothstep: C2 at both ends

    def _edges(self, atoms: Atoms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(positions, i, j, shifts): pair (i, j) has the vector x[j] - x[i] + shifts."""
        pos = torch.tensor(atoms.positions, dtype=self.dtype, device=self.device)
        if self.cutoff is None:
            if atoms.pbc.any():
                raise ConfigError(f"teacher {self.name} needs a cutoff for periodic structures (e.g. cutoff=6.0)")
            i, j = torch.triu_indices(len(atoms), len(atoms), 1, device=self.device)
            return pos, i, j, torch.zeros(len(i), 3, dtype=self.dtype, device=self.device)
        ei, shifts = neighbor_list_torch(
            pos, torch.tensor(atoms.cell.array, dtype=self.dtype), torch.tensor(atoms.pbc), self.cutoff
        )
        return pos, ei[0], ei[1], shifts

    def _pair_energy(self, vectors: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.norm(vectors, dim=-1)
        e = self.phi(r)
        if self.cutoff is None:
            return e.sum()
        return 0.5 * (e * self._switch(r)).sum()  # full neighbor lists count each pair twice

    def energy_function(self, atoms: Atoms):
        pos, i, j, shifts = self._edges(atoms)
        return (lambda x: self._pair_energy(x[j] - x[i] + shifts)), pos

    def strain_energy_function(self, atoms: Atoms):
        # The strain moves every pair vector, images included, to v (1 + eps); the pairs stay those within the
        # cutoff at zero strain, exact for the derivative there (the switch is zero with two derivatives beyond).
        pos, i, j, shifts = self._edges(atoms)
        vectors = pos[j] - pos[i] + shifts
        zero = torch.zeros(3, 3, dtype=self.dtype, device=self.device)
        return (lambda eps: self._pair_energy(vectors + vectors @ eps)), zero


class MorseTeacher(PairTeacher):
    """phi(r) = D [(1 - exp(-a (r - r0)))^2 - 1]; defaults roughly fit a C-C bond scale (eV, A)."""

    name = "morse"

    def __init__(self, D: float = 0.5, a: float = 1.7, r0: float = 1.5, **kwargs):
        super().__init__(**kwargs)
        self.D, self.a, self.r0 = D, a, r0

    def phi(self, r):
        y = torch.exp(-self.a * (r - self.r0))
        return self.D * ((1.0 - y) ** 2 - 1.0)

    def dphi(self, r):
        y = np.exp(-self.a * (r - self.r0))
        d1 = 2.0 * self.D * self.a * y * (1.0 - y)
        d2 = 2.0 * self.D * self.a**2 * y * (2.0 * y - 1.0)
        return d1, d2


class LennardJonesTeacher(PairTeacher):
    """phi(r) = 4 eps [(sigma/r)^12 - (sigma/r)^6]; defaults are argon-like (eV, A)."""

    name = "lj"

    def __init__(self, epsilon: float = 0.0104, sigma: float = 3.4, **kwargs):
        super().__init__(**kwargs)
        self.epsilon, self.sigma = epsilon, sigma

    def phi(self, r):
        s6 = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (s6 * s6 - s6)

    def dphi(self, r):
        s6 = (self.sigma / r) ** 6
        d1 = 4.0 * self.epsilon * (-12.0 * s6 * s6 + 6.0 * s6) / r
        d2 = 4.0 * self.epsilon * (156.0 * s6 * s6 - 42.0 * s6) / r**2
        return d1, d2


def pair_hessian(teacher: PairTeacher, positions: np.ndarray) -> np.ndarray:
    """Closed-form Hessian of an uncut pair potential: block (i, j) = -[phi'' u u^T + phi'/r (I - u u^T)]."""
    n = len(positions)
    h = np.zeros((n, 3, n, 3))
    for a in range(n):
        for b in range(a + 1, n):
            rij = positions[b] - positions[a]
            r = np.linalg.norm(rij)
            u = rij / r
            d1, d2 = teacher.dphi(np.array(r))
            block = d2 * np.outer(u, u) + d1 / r * (np.eye(3) - np.outer(u, u))
            h[a, :, b, :] -= block
            h[b, :, a, :] -= block
            h[a, :, a, :] += block
            h[b, :, b, :] += block
    return h.reshape(3 * n, 3 * n)
