"""What every engine asks of a student in one call: energy, per-atom energies, forces and virial.

:func:`student_outputs` is that call on an autograd-capable student (the eager model or the TorchScript module);
the compiled format (:mod:`.pt2`) is this same function traced into one graph, so every format gives the same
numbers from the same inputs. The inputs are the LAMMPS pair style's graph:

==================  ===========  ===============================================================================
input               shape        meaning
==================  ===========  ===============================================================================
``positions``       (N, 3)       node positions, A, in the student's dtype
``species``         (N,) int64   type indices (``type_names`` order)
``edge_index``      (2, E) int64 edge e from centre ``edge_index[0, e]`` to neighbour ``edge_index[1, e]``
``shifts``          (E, 3)       image shift of the neighbour: edge vector = x[j] - x[i] + shifts[e], A
``local``           (N,) bool    nodes whose energy counts (LAMMPS: local atoms; ghosts are False)
==================  ===========  ===============================================================================

==================  ===========  ===============================================================================
output              shape        meaning
==================  ===========  ===============================================================================
``energy``          ()           sum of the local per-atom energies, eV
``energies``        (N,)         per-atom energies of every node, eV
``forces``          (N, 3)       -d energy / d positions, eV/A (on ghost nodes too: LAMMPS folds them back)
``shift_forces``    (E, 3)       -d energy / d shifts, eV/A: with the edge vectors, the per-atom virial
``virial``          (3, 3)       W = sum_n x_n f_n^T + sum_e s_e g_e^T = -d energy / d strain, eV
==================  ===========  ===============================================================================

The stress of a periodic cell of volume V is -W / V (ASE sign convention: positive under tension).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

INPUTS = ("positions", "species", "edge_index", "shifts", "local")
OUTPUTS = ("energy", "energies", "forces", "shift_forces", "virial")


class StudentOutputs(NamedTuple):
    energy: torch.Tensor
    energies: torch.Tensor
    forces: torch.Tensor
    shift_forces: torch.Tensor
    virial: torch.Tensor


def student_outputs(model, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                    shifts: torch.Tensor, local: Optional[torch.Tensor] = None, both: Optional[torch.Tensor] = None
                    ) -> StudentOutputs:
    """Energy, per-atom energies, forces, shift forces and virial of ``model`` (a student's forward) by autograd.

    ``local`` defaults to every node. With ``both``, ``edge_index`` and ``shifts`` are pair records and the
    student's ``forward_pairs`` reads them (``StudentBase.forward_pairs``); shift forces are then per record.
    Results carry no autograd graph.
    """
    pos = positions.detach().requires_grad_(True)
    sh = shifts.detach().requires_grad_(True)
    with torch.enable_grad():
        if both is None:
            energies = model(pos, species, edge_index, sh)
        else:
            energies = model.forward_pairs(pos, species, edge_index, sh, both)
        counted = energies if local is None else torch.where(local, energies, torch.zeros_like(energies))
        energy = counted.sum()
        grad_x, grad_s = torch.autograd.grad([energy], [pos, sh])
    forces, shift_forces = -grad_x, -grad_s
    virial = pos.detach().t().mm(forces) + sh.detach().t().mm(shift_forces)
    return StudentOutputs(energy.detach(), energies.detach(), forces, shift_forces, virial)


def pair_records(edge_index: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Indices of the edges of a full (symmetric) list that give each pair once: centre < neighbour and, between an
    atom and its own periodic image, the edge whose shift's first nonzero component (beyond 1e-6 A) is positive.
    With ``both`` = 1 these are the compiled format's pair records."""
    i, j = edge_index[0], edge_index[1]
    keep = i < j
    image = i == j
    if bool(image.any()):  # only cells narrower than twice the cutoff: the shift test is most of the cost
        tol = 1e-6
        s0, s1, s2 = shifts[:, 0], shifts[:, 1], shifts[:, 2]
        positive = (s0 > tol) | ((s0.abs() <= tol) & ((s1 > tol) | ((s1.abs() <= tol) & (s2 > tol))))
        keep = keep | (image & positive)
    return torch.nonzero(keep).squeeze(1)
