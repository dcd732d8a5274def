"""Neighbor lists as (edge_index, shifts): edge (i, j) with vector r_ij = x[j] - x[i] + shifts[e], |r_ij| < cutoff.

``neighbor_list`` (vesin, fast, used by the ASE calculator and for training data) and ``neighbor_list_torch``
(brute force over periodic images, TorchScript-able, used inside exported models for engines such as OpenMM
that hand over only positions and a box) return the same edges; tests compare the two. ``cell_list_edges`` is
the O(N) TorchScript-able search (vesin-torch's cell list) that the OpenMM force keeps as a Verlet list, and
``edges_within`` keeps the pairs of such a longer candidate list that are inside the cutoff now.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from ase import Atoms

from .errors import first_line

try:  # vesin-torch: vesin's cell list as a TorchScript class (one compiled library per torch version)
    from vesin_torch import NeighborList as VesinNeighborList
    VESIN_TORCH_ERROR = ""
except Exception as exc:  # ImportError, or a library built for another torch
    VesinNeighborList = None
    VESIN_TORCH_ERROR = first_line(exc)


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


def cell_list_edges(x: torch.Tensor, cell: torch.Tensor, periodic: bool,
                    cutoff: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Edges (i, j) with |r_ij| < cutoff and their shifts in O(N), by vesin-torch's cell list; TorchScript-able.

    Positions are taken as given (OpenMM does not wrap them into the box): shifts refer to them. Any triclinic
    box and any box size (many periodic images when the box is narrower than the cutoff). A TorchScript module
    calling this needs ``vesin_torch`` imported in every process that loads it (its compiled class). Atoms with
    non-finite positions are searched at the origin; their edges fail any later distance test.
    """
    xd = x.detach()
    xd = torch.where(torch.isfinite(xd), xd, torch.zeros_like(xd))  # vesin refuses non-finite points
    if periodic:
        box = cell.detach().to(xd.dtype)
    else:
        # vesin's open-boundary search crashes the process (integer division by zero) once atoms spread over
        # ~1e6 A, as in an exploded run: search a periodic cube wider than the atoms' extent by two cutoffs
        # instead, where no periodic image is within the cutoff
        lo = xd.min(dim=0).values
        xd = xd - lo
        extent = float(xd.max())
        box = torch.eye(3, dtype=xd.dtype, device=xd.device) * (extent + 2.0 * cutoff + 1.0)
    nl = VesinNeighborList(cutoff=cutoff, full_list=True, sorted=True)
    found = nl.compute(points=xd, box=box, periodic=True, quantities="ijS")
    edge_index = torch.stack([found[0], found[1]]).to(torch.long)
    lattice = found[2].to(xd.dtype)
    if not periodic:  # image pairs only from rounding at absurd extents: dropped, shifts are zero
        keep = torch.nonzero((lattice == 0.0).all(dim=1)).squeeze(1)
        return edge_index.index_select(1, keep), torch.zeros(keep.shape[0], 3, dtype=xd.dtype, device=xd.device)
    return edge_index, lattice @ box


def edge_ends(candidates: torch.Tensor) -> torch.Tensor:
    """(2E,) the neighbours then the centres of ``candidates``: :func:`edges_within` gathers both in one call."""
    return candidates.flip(0).reshape(-1)


def edges_within(x: torch.Tensor, candidates: torch.Tensor, shifts: torch.Tensor, cutoff: float,
                 ends: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The candidate edges (and their shifts) with |x[j] - x[i] + shift| < cutoff at positions ``x``.

    With candidates found within cutoff + skin at reference positions, this is the exact neighbor list as long as
    no atom has moved more than skin / 2 since and the cell is unchanged (the Verlet-list argument). ``ends``:
    :func:`edge_ends` of the candidates, kept by a caller that filters the same candidates every step.
    """
    xd = x.detach()
    if ends is None:
        ends = edge_ends(candidates)
    both = xd.index_select(0, ends).view(2, -1, 3)
    r = both[0] - both[1] + shifts
    keep = torch.nonzero((r * r).sum(dim=1) < cutoff * cutoff).squeeze(1)
    return candidates.index_select(1, keep), shifts.index_select(0, keep)
