"""Neighbor lists as (edge_index, shifts): edge (i, j) with vector r_ij = x[j] - x[i] + shifts[e], |r_ij| < cutoff.

``neighbor_list`` (vesin, fast, used by the ASE calculator and for training data) and ``neighbor_list_torch``
(brute force over periodic images, TorchScript-able, used inside exported models for engines such as OpenMM
that hand over only positions and a box) return the same edges; tests compare the two.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms


def neighbor_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbor list of ``atoms`` with vesin: (edge_index (2, E) int64, shifts (E, 3) Cartesian, A)."""
    from vesin import NeighborList

    pbc = atoms.pbc
    if pbc.any() and not pbc.all():
        # vesin takes one periodic flag; mixed boundaries go through the torch path.
        ei, sh = neighbor_list_torch(
            torch.as_tensor(atoms.positions),
            torch.as_tensor(atoms.cell.array),
            torch.as_tensor(pbc),
            cutoff,
        )
        return ei.numpy(), sh.numpy()
    periodic = bool(pbc.all())
    box = atoms.cell.array if periodic else np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = nl.compute(points=atoms.positions, box=box, periodic=periodic, quantities="ijS")
    edge_index = np.stack([i, j]).astype(np.int64)
    shifts = s.astype(np.float64) @ atoms.cell.array if periodic else np.zeros((len(i), 3))
    return edge_index, shifts


def neighbor_list_torch(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force full neighbor list over all periodic images within ``cutoff``; TorchScript-able.

    Cost is O(N^2 x images); it runs inside exported models where no compiled neighbor list can be assumed.
    Edges come back sorted by (i, j) so the result does not depend on image enumeration order.
    """
    pos = positions.detach()
    cell = cell.detach().to(pos.dtype)
    n = pos.shape[0]
    periodic = pbc.to(torch.bool)
    n_images = torch.zeros(3, dtype=torch.long, device=pos.device)
    # Wrap periodic coordinates into the cell first (engines such as OpenMM hand over unwrapped positions) and
    # fold the wrapping offsets into the shifts, so edge vectors refer to the positions given.
    offset = torch.zeros_like(pos)
    if bool(periodic.any()):
        frac = pos @ torch.linalg.inv(cell)
        whole = torch.where(periodic.unsqueeze(0), torch.floor(frac), torch.zeros_like(frac))
        offset = whole @ cell
        pos = pos - offset
        # Plane spacing d_k = 1/|b_k| (reciprocal vectors b); images needed along k: ceil(cutoff/d_k).
        recip = torch.linalg.inv(cell).transpose(0, 1)
        reach = torch.ceil(cutoff * torch.linalg.norm(recip, dim=1)).to(torch.long)
        n_images = torch.where(periodic, reach, torch.zeros_like(reach))
    r0 = torch.arange(-int(n_images[0]), int(n_images[0]) + 1, device=pos.device)
    r1 = torch.arange(-int(n_images[1]), int(n_images[1]) + 1, device=pos.device)
    r2 = torch.arange(-int(n_images[2]), int(n_images[2]) + 1, device=pos.device)
    grid = torch.meshgrid([r0, r1, r2], indexing="ij")
    images = torch.stack([grid[0].reshape(-1), grid[1].reshape(-1), grid[2].reshape(-1)], dim=1).to(pos.dtype)
    idx = torch.arange(n, device=pos.device)
    all_i: list[torch.Tensor] = []
    all_j: list[torch.Tensor] = []
    all_s: list[torch.Tensor] = []
    for m in range(images.shape[0]):
        shift = images[m] @ cell
        d = torch.cdist(pos, pos + shift.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")
        mask = d < cutoff
        if bool((images[m] == 0).all()):
            mask = mask & (idx.unsqueeze(1) != idx.unsqueeze(0))
        ij = torch.nonzero(mask)
        all_i.append(ij[:, 0])
        all_j.append(ij[:, 1])
        all_s.append(shift.unsqueeze(0).expand(ij.shape[0], 3))
    i = torch.cat(all_i)
    j = torch.cat(all_j)
    s = torch.cat(all_s) + offset.index_select(0, i) - offset.index_select(0, j)
    order = torch.argsort(i * n + j, stable=True)
    return torch.stack([i[order], j[order]]), s[order]
