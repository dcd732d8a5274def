"""Pieces shared by the student architectures, and the contract every student keeps.

A student maps (positions (N, 3) A, species (N,) type indices, edge_index (2, E), shifts (E, 3) A) to per-atom
energies (N,) in eV. Edge e points from centre i = edge_index[0, e] to neighbour j = edge_index[1, e] with vector
x[j] - x[i] + shifts[e]. Forces are always -dE/dx by autograd: no student has a force head.

``forward_pairs`` reads pair records, one per pair of a full list, as the compiled format does.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from ..neighbors import neighbor_list_torch


class BesselBasis(nn.Module):
    """sin(n pi d / rc) / d radial basis (n = 1..num_basis)."""

    def __init__(self, cutoff: float, num_basis: int):
        super().__init__()
        self.cutoff = float(cutoff)
        self.register_buffer("freqs", torch.arange(1, num_basis + 1) * math.pi / cutoff)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        return torch.sin(d.unsqueeze(-1) * self.freqs) / d.unsqueeze(-1)


class PolynomialEnvelope(nn.Module):
    """Smooth cutoff u(d/rc) of DimeNet's polynomial form with p = 6: it and its first two derivatives vanish at
    rc, so energies, forces and Hessians are continuous as atoms cross the cutoff."""

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        p = float(self.p)
        x = d / self.cutoff
        u = (
            1.0
            - (p + 1.0) * (p + 2.0) / 2.0 * x.pow(self.p)
            + p * (p + 2.0) * x.pow(self.p + 1)
            - p * (p + 1.0) / 2.0 * x.pow(self.p + 2)
        )
        return torch.where(x < 1.0, u, torch.zeros_like(u))


def mlp(sizes: List[int]) -> nn.Sequential:
    """Linear layers with SiLU between them (smooth, so second derivatives exist for Hessian training)."""
    layers: List[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class StudentBase(nn.Module):
    """Metadata and helpers common to all students.

    Atomic energy = scale * network output + shift[species]: ``shift`` holds per-element reference energies
    (fitted on the training set) and ``scale`` the force scale, so the network works on numbers of order one.
    """

    architecture: str = "base"

    def __init__(self, type_names: List[str], atomic_numbers: List[int], cutoff: float, features: int,
                 num_interactions: int, num_basis: int):
        super().__init__()
        if len(type_names) != len(atomic_numbers) or not type_names:
            raise ConfigError(f"type_names and atomic_numbers must be non-empty and of equal length, got "
                              f"{len(type_names)} and {len(atomic_numbers)}")
        self.type_names: List[str] = list(type_names)
        self.atomic_numbers: List[int] = list(atomic_numbers)
        self.cutoff: float = float(cutoff)
        self.features = int(features)
        self.num_interactions: int = int(num_interactions)
        self.num_basis = int(num_basis)
        self.embedding = nn.Embedding(len(type_names), features)
        self.rbf = BesselBasis(cutoff, num_basis)
        self.envelope = PolynomialEnvelope(cutoff)
        self.readout = mlp([features, features, 1])
        self.register_buffer("shift", torch.zeros(len(type_names)))
        self.register_buffer("scale", torch.ones(()))

    def hyperparameters(self) -> dict:
        """Constructor arguments, so a checkpoint can rebuild the model."""
        return dict(type_names=self.type_names, atomic_numbers=self.atomic_numbers, cutoff=self.cutoff,
                    features=self.features, num_interactions=self.num_interactions, num_basis=self.num_basis)

    def edge_vectors(self, positions: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        return positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts

    def edge_geometry(self, positions: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edge vectors, their lengths, radial basis and cutoff envelope: what every student starts from."""
        r = self.edge_vectors(positions, edge_index, shifts)
        d = torch.linalg.norm(r, dim=-1)
        return r, d, self.rbf(d), self.envelope(d)

    def forward_pairs(self, positions: torch.Tensor, species: torch.Tensor, pairs: torch.Tensor,
                      shifts: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
        """Per-atom energies from pair records, the compiled format's input (:mod:`hessdistill.formats.pt2`):
        record p stands for the edge into ``pairs[0, p]`` from ``pairs[1, p]`` (vector x[pairs[1, p]] -
        x[pairs[0, p]] + shifts[p]) and, where ``both[p]`` is 1 (not 0), for its reverse too. A full list given as
        one record per pair (:func:`~hessdistill.formats.evaluate.pair_records`) gives ``forward``'s energies.

        This default lists both edges of every record and moves the reverse of a one-way record four cutoffs
        away, where the envelope, which every message carries, and its derivatives are zero: the energies of
        leaving it out. (Scaling the envelope by ``both`` instead is the same function, but inductor compiled
        TensorNet's graph of it into code that corrupted the heap, torch 2.9.1.) A student that passes messages
        both ways from one record overrides it.
        """
        edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
        away = nn.functional.pad(((1.0 - both) * (4.0 * self.cutoff)).unsqueeze(-1), (0, 2))  # along x
        return self.forward(positions, species, edge_index, torch.cat([shifts, -shifts - away]))

    def finish(self, out: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        return self.scale * out + self.shift.index_select(0, species)

    @torch.jit.export
    def neighbor_list(
        self, positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edges within the cutoff (brute force over images), for engines that give only positions and a box."""
        return neighbor_list_torch(positions, cell, pbc, self.cutoff)

    @torch.jit.export
    def energy_and_forces(
        self, positions: torch.Tensor, species: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Total energy (eV) and forces (eV/A) of one structure, neighbor list included."""
        edge_index, shifts = self.neighbor_list(positions, cell, pbc)
        pos = positions.detach().requires_grad_(True)
        energy = self.forward(pos, species, edge_index, shifts).sum()
        grads = torch.autograd.grad([energy], [pos])
        grad = grads[0]
        assert grad is not None
        return energy.detach(), -grad
