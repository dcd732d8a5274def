"""Neighbor lists as (edge_index, shifts): edge (i, j) with vector r_ij = x[j] - x[i] + shifts[e], |r_ij| < cutoff.

``neighbor_list`` (vesin, fast, used by the ASE calculator and for training data) and ``neighbor_list_torch``
(brute force over periodic images, TorchScript-able, used inside exported models for engines such as OpenMM
that hand over only positions and a box) return the same edges; tests compare the two. ``minimum_image_edges``
is the faster TorchScript search for boxes at least two cutoffs wide in OpenMM's reduced form, and
``edges_within`` keeps the pairs of a longer (Verlet) candidate list that are inside the cutoff now.
"""

from __future__ import annotations

from typing import List, Tuple

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
    image_shifts = images @ cell
    is_origin = (images == 0).all(dim=1)
    all_i: list[torch.Tensor] = []
    all_j: list[torch.Tensor] = []
    all_s: list[torch.Tensor] = []
    # Several images per distance matrix (N x images*N), at most ~4M entries each: few, large tensor ops.
    per_chunk = max(1, 4_000_000 // max(1, n * n))
    for start in range(0, images.shape[0], per_chunk):
        shifts = image_shifts[start:start + per_chunk]
        targets = (pos.unsqueeze(0) + shifts.unsqueeze(1)).reshape(-1, 3)  # image k, atom j -> row k * n + j
        d = torch.cdist(pos, targets, compute_mode="donot_use_mm_for_euclid_dist")
        ic = torch.nonzero(d < cutoff)
        i, k, j = ic[:, 0], torch.div(ic[:, 1], n, rounding_mode="floor"), ic[:, 1] % n
        keep = ~(is_origin[start:start + per_chunk].index_select(0, k) & (i == j))  # no self edge in the cell
        i, k, j = i[keep], k[keep], j[keep]
        all_i.append(i)
        all_j.append(j)
        all_s.append(shifts.index_select(0, k))
    i = torch.cat(all_i)
    j = torch.cat(all_j)
    s = torch.cat(all_s) + offset.index_select(0, i) - offset.index_select(0, j)
    order = torch.argsort(i * n + j, stable=True)
    return torch.stack([i[order], j[order]]), s[order]


def minimum_image_edges(x: torch.Tensor, cell: torch.Tensor, cutoff: float,
                        chunk: int = 128) -> Tuple[torch.Tensor, torch.Tensor]:
    """Edges (i, j) with |r_ij| < cutoff and their shifts, by the minimum-image convention for an OpenMM box in
    reduced form (a along x, b in the xy plane; |b_x|, |c_x| <= a_x / 2, |c_y| <= b_y / 2), rounding along c, b
    then a as OpenMM's own kernels do. Exact when the cutoff is at most half of a_x, b_y and c_z, which the caller
    checks. O(N^2) in row chunks, against O(N^2 x images) for a search over all periodic images.
    """
    xd = x.detach()
    n = xd.shape[0]
    ax, bx, by = float(cell[0, 0]), float(cell[1, 0]), float(cell[1, 1])
    cx, cy, cz = float(cell[2, 0]), float(cell[2, 1]), float(cell[2, 2])
    px, py, pz = xd[:, 0], xd[:, 1], xd[:, 2]
    all_i: List[torch.Tensor] = []
    all_j: List[torch.Tensor] = []
    all_s: List[torch.Tensor] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        # d[i, j] = x[j] - x[i], one contiguous (rows, N) plane per Cartesian component
        dx = px.unsqueeze(0) - px[start:stop].unsqueeze(1)
        dy = py.unsqueeze(0) - py[start:stop].unsqueeze(1)
        dz = pz.unsqueeze(0) - pz[start:stop].unsqueeze(1)
        nc = torch.round(dz / cz)
        dz = dz - nc * cz
        dy = dy - nc * cy
        dx = dx - nc * cx
        nb = torch.round(dy / by)
        dy = dy - nb * by
        dx = dx - nb * bx
        na = torch.round(dx / ax)
        dx = dx - na * ax
        ij = torch.nonzero(dx * dx + dy * dy + dz * dz < cutoff * cutoff)
        i, j = ij[:, 0], ij[:, 1]
        keep = i + start != j
        i, j = i[keep], j[keep]
        all_i.append(i + start)
        all_j.append(j)
        # shift = -(na a + nb b + nc c) for the kept pairs
        lattice = -torch.stack([na[i, j], nb[i, j], nc[i, j]], dim=1)
        all_s.append(lattice @ cell)
    return torch.stack([torch.cat(all_i), torch.cat(all_j)]), torch.cat(all_s)


def edges_within(x: torch.Tensor, candidates: torch.Tensor, shifts: torch.Tensor,
                 cutoff: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The candidate edges (and their shifts) with |x[j] - x[i] + shift| < cutoff at positions ``x``.

    With candidates found within cutoff + skin at reference positions, this is the exact neighbor list as long as
    no atom has moved more than skin / 2 since and the cell is unchanged (the Verlet-list argument).
    """
    xd = x.detach()
    r = xd.index_select(0, candidates[1]) - xd.index_select(0, candidates[0]) + shifts
    keep = torch.nonzero((r * r).sum(dim=1) < cutoff * cutoff).squeeze(1)
    return candidates.index_select(1, keep), shifts.index_select(0, keep)
