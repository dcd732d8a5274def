"""A small invariant message-passing student (SchNet-style continuous-filter convolutions on distances only).

Cheaper than PaiNN (no vector features) for the same width; the fast option when the system is simple.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn

from .common import StudentBase, mlp


class _Interaction(nn.Module):
    def __init__(self, features: int, num_basis: int):
        super().__init__()
        self.filter = mlp([num_basis, features, features])
        self.inp = nn.Linear(features, features, bias=False)
        self.out = mlp([features, features, features])

    def forward(self, s, edge_index, rbf, env):
        i, j = edge_index[0], edge_index[1]
        msg = self.inp(s).index_select(0, j) * self.filter(rbf) * env.unsqueeze(-1)
        agg = torch.zeros_like(s).index_add(0, i, msg)
        return s + self.out(agg)


class SchNetLite(StudentBase):
    """Distance-only message passing student: embedding -> interactions -> per-atom MLP readout."""

    architecture = "schnet"

    def __init__(
        self,
        type_names: List[str],
        atomic_numbers: List[int],
        cutoff: float = 5.0,
        features: int = 32,
        num_interactions: int = 2,
        num_basis: int = 16,
    ):
        super().__init__(type_names, atomic_numbers, cutoff, features, num_interactions, num_basis)
        self.interactions = nn.ModuleList([_Interaction(features, num_basis) for _ in range(num_interactions)])

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor):
        _, _, rbf, env = self.edge_geometry(positions, edge_index, shifts)
        s = self.embedding(species)
        for interaction in self.interactions:
            s = interaction(s, edge_index, rbf, env)
        return self.finish(self.readout(s).squeeze(-1), species)
