"""The TorchScript modules that put a student into OpenMM's units and calling convention.

:class:`StudentForceModule` takes positions (N, 3) in nm (and box vectors (3, 3) in nm for periodic systems) and
returns the energy in kJ/mol (and forces in kJ/mol/nm: :class:`StudentForceModuleWithForces`). Species are baked in
as a buffer; a subset of atoms (an ML region) is picked out with ``atoms``.

Neighbors come from a Verlet list kept in the module (:class:`VerletList`): candidate pairs within cutoff +
``skin`` are searched again only when an atom has moved more than skin / 2 since the last search or the box has
changed; every step just keeps the candidates inside the cutoff (O(edges)), so the force costs what the bare
student costs. The search is vesin-torch's O(N) cell list (:func:`~hessdistill.neighbors.cell_list_edges`, a
TorchScript class: a process loading a serialized System must have imported ``vesin_torch``), on positions as
OpenMM gives them (unwrapped): shifts refer to them, so atoms many boxes away from the origin give the same energy.
The list is the module's own state, by design: ``forward`` updates its buffers (candidate pairs and the positions
and box of the last search), one copy per Context; the energy of a call still depends only on the positions and box
it is given, since a stale list is searched again. openmm-torch's CUDA-graph option, which replays a recorded step,
would not run the search and is not supported.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ...errors import InputError
from ...neighbors import cell_list_edges, edge_ends, edges_within
from ...units import EV_TO_KJ_PER_MOL, NM_TO_ANGSTROM

DEFAULT_SKIN = 1.0  # A: Verlet skin of the module's neighbor list (searched again after a skin/2 move)


class VerletList(nn.Module):
    """TorchScript-able Verlet neighbor list: ``forward(x (N, 3) A, cell (3, 3) A, periodic)`` returns the edges
    within ``cutoff`` (edge_index (2, E), shifts (E, 3) A) at ``x``.

    Candidate pairs within cutoff + ``skin`` are searched again (:func:`~hessdistill.neighbors.cell_list_edges`,
    O(N)) only when an atom has moved more than skin / 2 since the last search or the cell has changed; every
    other call keeps the candidates inside the cutoff (O(edges)). The state lives in buffers.
    """

    def __init__(self, cutoff: float, skin: float, dtype: torch.dtype):
        super().__init__()
        if not skin >= 0:
            raise InputError(f"skin must be >= 0 A, got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.register_buffer("candidates", torch.zeros(2, 0, dtype=torch.long))
        self.register_buffer("candidate_shifts", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("candidate_ends", torch.zeros(0, dtype=torch.long))
        self.register_buffer("reference_positions", torch.zeros(0, 3, dtype=dtype))
        self.register_buffer("reference_cell", torch.zeros(3, 3, dtype=dtype))
        self.searches = 0  # how many times the candidates were searched (tests read it)

    def forward(self, x: torch.Tensor, cell: torch.Tensor, periodic: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        # state kept across calls must hold no autograd history (each call's graph is freed by its backward)
        xd, cd = x.detach(), cell.detach()
        stale = xd.shape != self.reference_positions.shape or not torch.equal(cd, self.reference_cell)
        if not stale:
            moved = ((xd - self.reference_positions) ** 2).sum(dim=1).max()
            stale = bool(moved > 0.25 * self.skin * self.skin)
        if stale:
            # no_grad as well as detach: under openmm-torch, a search result kept from a call whose graph was never
            # run backward (an energy-only evaluation) otherwise broke the next call's backward
            with torch.no_grad():
                candidates, shifts = cell_list_edges(xd, cd, periodic, self.cutoff + self.skin)
                self.candidates, self.candidate_shifts = candidates, shifts
                self.candidate_ends = edge_ends(candidates)
                self.reference_positions = xd.clone()
                self.reference_cell = cd.clone()
            self.searches += 1
        return edges_within(xd, self.candidates, self.candidate_shifts, self.cutoff, self.candidate_ends)


class StudentForceModule(nn.Module):
    """TorchScript-able OpenMM adapter around a loaded student (TorchScript) module.

    ``forward(positions (N, 3) nm, boxvectors (3, 3) nm or None)`` returns the energy in kJ/mol (float64).
    Non-finite positions give a non-finite energy (not an exception), so the energy monitor sees and reports them.
    Neighbors come from the module's :class:`VerletList` (``neighbors``).
    """

    def __init__(self, student: torch.jit.ScriptModule, species: torch.Tensor, atoms: Optional[torch.Tensor],
                 periodic: bool, dtype: torch.dtype, cutoff: float, skin: float = DEFAULT_SKIN):
        super().__init__()
        self.student = student
        self.register_buffer("species", species.to(torch.long))
        self.subset = atoms is not None
        self.register_buffer("atoms", (atoms if atoms is not None else torch.zeros(0)).to(torch.long))
        self.periodic = bool(periodic)
        self.dtype = dtype
        self.nm_to_angstrom = float(NM_TO_ANGSTROM)
        self.ev_to_kj_per_mol = float(EV_TO_KJ_PER_MOL)
        self.neighbors = VerletList(cutoff, skin, dtype)

    def energy(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor]) -> torch.Tensor:
        x = positions.to(self.dtype) * self.nm_to_angstrom
        if self.subset:
            x = x.index_select(0, self.atoms)
        cell = torch.zeros(3, 3, dtype=self.dtype, device=x.device)
        periodic = self.periodic and boxvectors is not None
        if boxvectors is not None and self.periodic:
            cell = boxvectors.to(self.dtype) * self.nm_to_angstrom
        edge_index, shifts = self.neighbors(x, cell, periodic)
        energy = self.student(x, self.species, edge_index, shifts).sum() * self.ev_to_kj_per_mol
        if not bool(torch.isfinite(x).all()):  # atoms with NaN positions have no edges: say so with a NaN energy
            energy = energy * float("nan")
        return energy.to(torch.float64)

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.energy(positions, boxvectors)


class StudentForceModuleWithForces(StudentForceModule):
    """As :class:`StudentForceModule`, returning ``(energy kJ/mol, forces (N, 3) kJ/mol/nm)`` by autograd inside
    the module (TorchForce ``setOutputsForces(True)``; the PythonForce fallback)."""

    def forward(self, positions: torch.Tensor, boxvectors: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor,
                                                                                                 torch.Tensor]:
        pos = positions.detach().requires_grad_(True)
        energy = self.energy(pos, boxvectors)
        grad = torch.autograd.grad([energy], [pos])[0]
        assert grad is not None
        return energy.detach(), (-grad).to(positions.dtype)
