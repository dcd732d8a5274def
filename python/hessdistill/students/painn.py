"""PaiNN (Schuett et al. 2021): equivariant message passing with scalar and vector features; the paper's student.

Energies are invariant by construction; forces come from autograd of the energy.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from .common import StudentBase, mlp


class _Message(nn.Module):
    def __init__(self, features: int, num_basis: int):
        super().__init__()
        self.features = features
        self.phi = mlp([features, features, 3 * features])
        self.filter = nn.Linear(num_basis, 3 * features)

    def forward(self, s, v, edge_index, rbf, env, unit, first: bool, both: Optional[torch.Tensor]):
        """Messages into centre i from neighbour j along each edge; with ``both`` (pair records) also into j from
        i, weighted by ``both``, sharing the radial filter, which is symmetric in i and j."""
        i, j = edge_index[0], edge_index[1]
        phi = self.phi(s)
        w = self.filter(rbf) * env.unsqueeze(-1)
        s_new, v_new = self._into(s, v, phi, w, v, i, j, unit, first)
        if both is not None:
            s_new, v_new = self._into(s_new, v_new, phi, w * both.unsqueeze(-1), v, j, i, -unit, first)
        return s_new, v_new

    def _into(self, s_out, v_out, phi, w, v, centre, neighbour, unit, first: bool):
        x = phi.index_select(0, neighbour) * w
        ds, dvv, dvs = torch.split(x, self.features, dim=-1)
        dv = dvs.unsqueeze(1) * unit.unsqueeze(-1)
        if not first:  # v is zero before the first message: skipping v_j * dvv there changes no number
            dv = dv + v.index_select(0, neighbour) * dvv.unsqueeze(1)
        return s_out.index_add(0, centre, ds), v_out.index_add(0, centre, dv)


class _Update(nn.Module):
    def __init__(self, features: int):
        super().__init__()
        self.features = features
        self.u = nn.Linear(features, features, bias=False)
        self.w = nn.Linear(features, features, bias=False)
        self.mix = mlp([2 * features, features, 3 * features])

    def forward(self, s, v):
        uv = self.u(v)
        wv = self.w(v)
        # v = 0 wherever an atom's neighbourhood is symmetric enough (perfect crystals, symmetric minima), and
        # sqrt(|v|^2 + eps) has curvature 1/sqrt(eps) there: with the usual eps = 1e-8 the energy had a near-kink
        # (Hessians off by ~30% at a relaxed MgO lattice, depending on the finite-difference step). eps = 1 keeps
        # the curvature bounded; |v| >> 1 still gives the norm.
        norm = torch.sqrt((wv * wv).sum(dim=1) + 1.0)
        a = self.mix(torch.cat([s, norm], dim=-1))
        avv, asv, ass = torch.split(a, self.features, dim=-1)
        s = s + asv * (uv * wv).sum(dim=1) + ass
        v = v + avv.unsqueeze(1) * uv
        return s, v


class PaiNN(StudentBase):
    """PaiNN student.

    Parameters
    ----------
    type_names, atomic_numbers: elements covered, in type-index order.
    cutoff: radial cutoff (A).
    features: width of scalar and vector features.
    num_interactions: message-passing layers (interaction range = num_interactions x cutoff).
    num_basis: Bessel radial functions.
    """

    architecture = "painn"

    def __init__(
        self,
        type_names: List[str],
        atomic_numbers: List[int],
        cutoff: float = 5.0,
        features: int = 32,
        num_interactions: int = 3,
        num_basis: int = 16,
    ):
        super().__init__(type_names, atomic_numbers, cutoff, features, num_interactions, num_basis)
        self.messages = nn.ModuleList([_Message(features, num_basis) for _ in range(num_interactions)])
        self.updates = nn.ModuleList([_Update(features) for _ in range(num_interactions)])

    def forward_pairs(self, positions: torch.Tensor, species: torch.Tensor, pairs: torch.Tensor,
                      shifts: torch.Tensor, both: torch.Tensor) -> torch.Tensor:
        # half the edge geometry and radial filters of the full list, the rest fused per record (docs/design/pt2.md)
        return self._pass(positions, species, pairs, shifts, both)

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor):
        return self._pass(positions, species, edge_index, shifts, None)

    def _pass(self, positions, species, edge_index, shifts, both: Optional[torch.Tensor]):
        r, d, rbf, env = self.edge_geometry(positions, edge_index, shifts)
        unit = r / d.unsqueeze(-1)
        s = self.embedding(species)
        v = torch.zeros(s.shape[0], 3, self.features, dtype=s.dtype, device=s.device)
        first = True
        for message, update in zip(self.messages, self.updates):
            s, v = message(s, v, edge_index, rbf, env, unit, first, both)
            s, v = update(s, v)
            first = False
        return self.finish(self.readout(s).squeeze(-1), species)
