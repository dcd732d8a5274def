"""A Cartesian rank-2 tensor student in the spirit of TensorNet (Simeon & De Fabritiis, NeurIPS 2023).

Each atom carries, per channel, a 3x3 tensor X = I + A + S: its isotropic part (a scalar t times the identity),
its antisymmetric part (a vector a, as the matrix of a x .) and its symmetric traceless part S. Messages scale the
three parts of the neighbours' tensors by learned radial functions; the update multiplies tensors (Y M + M Y), which
couples the parts the way an l <= 2 tensor product does in NequIP or MACE, with no spherical harmonics or
Clebsch-Gordan tables. PaiNN stops at vectors (l = 1); the rank-2 part carries the angular information they lack.
Cost at PaiNN's width (acetic acid, ASE calculator, float64, 1 thread): 1.8x PaiNN's per call as ``.pt2``, 3.2x
as TorchScript, whose time is per-op overhead and this student has more ops (BENCHMARKS section 10).

Everything here is smooth: invariants are squared norms (no square roots, which kink where a part vanishes at a
symmetric site) and tensors are normalised by 1 / (|X|^2 + 1). Energies are invariant under rotations and
reflections; forces come from autograd of the energy.

Storage is channels-last, so ``nn.Linear`` mixes channels without moving data: t (N, F), a (N, 3, F), S (N, 3, 3, F).
"""

from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

from .common import StudentBase, mlp


def _matrix(t: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """t I + [a]x + S as (..., 3, 3, F), where [a]x u = a x u."""
    ax, ay, az = a.unbind(-2)
    zero = torch.zeros_like(ax)
    skew = torch.stack([zero, -az, ay, az, zero, -ax, -ay, ax, zero], dim=-2)
    skew = skew.reshape(list(skew.shape[:-2]) + [3, 3, skew.shape[-1]])
    eye = torch.eye(3, dtype=t.dtype, device=t.device).unsqueeze(-1)
    return t.unsqueeze(-2).unsqueeze(-2) * eye + skew + s


def _parts(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, a, S) of a (..., 3, 3, F) tensor: the inverse of ``_matrix``."""
    t = (x[..., 0, 0, :] + x[..., 1, 1, :] + x[..., 2, 2, :]) / 3.0
    a = 0.5 * torch.stack([x[..., 2, 1, :] - x[..., 1, 2, :], x[..., 0, 2, :] - x[..., 2, 0, :],
                           x[..., 1, 0, :] - x[..., 0, 1, :]], dim=-2)
    eye = torch.eye(3, dtype=x.dtype, device=x.device).unsqueeze(-1)
    s = 0.5 * (x + x.transpose(-3, -2)) - t.unsqueeze(-2).unsqueeze(-2) * eye
    return t, a, s


def _norms(t: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Squared Frobenius norms of the three parts, per channel: 3 t^2, 2 |a|^2, |S|^2."""
    return 3.0 * t * t, 2.0 * (a * a).sum(dim=-2), (s * s).sum(dim=(-3, -2))


def _normalised(t: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The parts divided by |X|^2 + 1 per channel: bounded features in every layer, smooth everywhere."""
    nt, na, ns = _norms(t, a, s)
    inv = 1.0 / (nt + na + ns + 1.0)
    return t * inv, a * inv.unsqueeze(-2), s * inv.unsqueeze(-2).unsqueeze(-2)


def _matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-channel 3x3 product of two (N, 3, 3, F) tensors.

    An einsum (a batched GEMM), not a broadcast product summed over b: inductor (torch 2.9.1, CPU) compiled the
    training graph of the latter wrong (parameter gradients 35% off eager in float64, the uncompiled trace exact)."""
    return torch.einsum("nabf,nbcf->nacf", x, y)


class _PartLinear(nn.Module):
    """Channel mixing with one weight matrix per part (mixing keeps each part's symmetry)."""

    def __init__(self, features: int):
        super().__init__()
        self.t = nn.Linear(features, features, bias=False)
        self.a = nn.Linear(features, features, bias=False)
        self.s = nn.Linear(features, features, bias=False)

    def forward(self, t, a, s):
        return self.t(t), self.a(a), self.s(s)


class _Embedding(nn.Module):
    """Initial tensors: sum over neighbours of radial weights x (I, [r]x, r r^T - I/3), per species pair (from the
    atoms' species embeddings z)."""

    def __init__(self, features: int, num_basis: int):
        super().__init__()
        self.features = features
        self.pair = nn.Linear(2 * features, features)
        self.radial = nn.Linear(num_basis, 3 * features)
        self.gates = mlp([features, 2 * features, 3 * features])
        self.mix = _PartLinear(features)

    def forward(self, z, edge_index, rbf, env, unit):
        i, j = edge_index[0], edge_index[1]
        n = z.shape[0]
        zij = self.pair(torch.cat([z.index_select(0, i), z.index_select(0, j)], dim=-1)) * env.unsqueeze(-1)
        ft, fa, fs = torch.split(self.radial(rbf) * zij.repeat(1, 3), self.features, dim=-1)
        f = self.features
        eye = torch.eye(3, dtype=unit.dtype, device=unit.device)
        outer = unit.unsqueeze(-1) * unit.unsqueeze(-2) - eye / 3.0
        t = torch.zeros(n, f, dtype=rbf.dtype, device=rbf.device).index_add(0, i, ft)
        a = torch.zeros(n, 3, f, dtype=rbf.dtype, device=rbf.device).index_add(
            0, i, unit.unsqueeze(-1) * fa.unsqueeze(1))
        s = torch.zeros(n, 3, 3, f, dtype=rbf.dtype, device=rbf.device).index_add(
            0, i, outer.unsqueeze(-1) * fs.unsqueeze(1).unsqueeze(1))
        nt, na, ns = _norms(t, a, s)
        # log1p: a site's |X|^2 grows with its neighbour count (tens in a crystal); the gates see it compressed
        gt, ga, gs = torch.split(self.gates(torch.log1p(nt + na + ns)), f, dim=-1)
        t, a, s = self.mix(t, a, s)
        return t * gt, a * ga.unsqueeze(1), s * gs.unsqueeze(1).unsqueeze(1)


class _Interaction(nn.Module):
    """Messages of radially weighted neighbour parts; update X <- X + dX + dX^2 with dX from Y M + M Y."""

    def __init__(self, features: int, num_basis: int):
        super().__init__()
        self.features = features
        self.radial = mlp([num_basis, features, 3 * features])
        self.inp = _PartLinear(features)
        self.out = _PartLinear(features)

    def forward(self, t, a, s, edge_index, rbf, env):
        i, j = edge_index[0], edge_index[1]
        t, a, s = _normalised(t, a, s)
        yt, ya, ys = self.inp(t, a, s)
        ft, fa, fs = torch.split(self.radial(rbf) * env.unsqueeze(-1), self.features, dim=-1)
        mt = torch.zeros_like(yt).index_add(0, i, yt.index_select(0, j) * ft)
        ma = torch.zeros_like(ya).index_add(0, i, ya.index_select(0, j) * fa.unsqueeze(1))
        ms = torch.zeros_like(ys).index_add(0, i, ys.index_select(0, j) * fs.unsqueeze(1).unsqueeze(1))
        y, m = _matrix(yt, ya, ys), _matrix(mt, ma, ms)
        # Y M + M Y: even under inversion, so the model is O(3)- and not only SO(3)-equivariant
        pt, pa, ps = _parts(_matmul(y, m) + _matmul(m, y))
        dt, da, ds = _normalised(pt, pa, ps)
        dt, da, ds = self.out(dt, da, ds)
        dx = _matrix(dt, da, ds)
        return _parts(_matrix(t, a, s) + dx + _matmul(dx, dx))


class TensorNet(StudentBase):
    """Rank-2 Cartesian tensor student (see the module docstring).

    Parameters
    ----------
    type_names, atomic_numbers: elements covered, in type-index order.
    cutoff: radial cutoff (A).
    features: channels (each a 3x3 tensor).
    num_interactions: message-passing layers (interaction range = num_interactions x cutoff).
    num_basis: Bessel radial functions.
    """

    architecture = "tensornet"

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
        self.embed = _Embedding(features, num_basis)
        self.interactions = nn.ModuleList([_Interaction(features, num_basis) for _ in range(num_interactions)])
        # no LayerNorm (its backward specializes the atom count when traced); the layers' normalisation already
        # keeps these norms of order one
        self.head = nn.Sequential(nn.Linear(3 * features, features), nn.SiLU())

    def forward(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor, shifts: torch.Tensor):
        r, d, rbf, env = self.edge_geometry(positions, edge_index, shifts)
        unit = r / d.unsqueeze(-1)
        t, a, s = self.embed(self.embedding(species), edge_index, rbf, env, unit)
        for interaction in self.interactions:
            t, a, s = interaction(t, a, s, edge_index, rbf, env)
        nt, na, ns = _norms(t, a, s)
        h = self.head(torch.cat([nt, na, ns], dim=-1))
        return self.finish(self.readout(h).squeeze(-1), species)
