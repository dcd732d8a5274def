"""The distillation loss and the training-set statistics that normalise it.

loss = wE * MSE(E/N) / var(E/N) + wF * MSE(F) / <F^2> + wH * MSE(H rows) / <H^2>, with ``s`` Hessian rows per
structure and step drawn uniformly without replacement from the stored rows, the student's rows coming from
vector-Jacobian products of its forces (``hessian.hessian_rows``). wH = 0 is the undistilled baseline.
Energies are fitted after per-element reference energies (``fit_shift_and_scale``), so var(E/N) is the variance
left after that fit.

Example
-------
>>> norm = normalizers(graphs, model)
>>> loss = batch_loss(model, collate(graphs[:4]), config, norm, np.random.default_rng(0))
"""

from __future__ import annotations

import numpy as np
import torch

from .config import DistillConfig
from .data import Batch, Graph, sample_row_slots
from .hessian import energy_gradient, hessian_rows
from ..students import StudentBase


def predict(model, batch: Batch, create_graph: bool):
    """Per-structure energies, energy gradient (with graph if asked) and the leaf positions."""
    pos = batch.positions.detach().clone().requires_grad_(True)
    atomic = model(pos, batch.species, batch.edge_index, batch.shifts)
    # sized from a tensor, not len(batch.graphs): a traced step (compiled.py) keeps the batch size symbolic
    energy = torch.zeros(batch.n_atoms.shape[0], dtype=atomic.dtype, device=atomic.device).index_add(
        0, batch.batch, atomic
    )
    if create_graph:
        grad = energy_gradient(energy, pos)
    else:
        grad = torch.autograd.grad(energy.sum(), pos)[0]
    return energy, grad, pos


def fit_shift_and_scale(model: StudentBase, graphs: list[Graph]) -> None:
    """Per-element reference energies by least squares on the training energies; scale = RMS force."""
    counts = np.zeros((len(graphs), len(model.type_names)))
    for k, g in enumerate(graphs):
        counts[k] = np.bincount(g.species.cpu().numpy(), minlength=len(model.type_names))
    energies = np.array([g.energy for g in graphs])
    shift = np.linalg.lstsq(counts, energies, rcond=None)[0]
    rms_f = float(torch.sqrt(torch.mean(torch.cat([g.forces.reshape(-1) for g in graphs]) ** 2)))
    with torch.no_grad():
        model.shift.copy_(torch.as_tensor(shift, dtype=model.shift.dtype))
        model.scale.fill_(max(rms_f, 1e-3))


def normalizers(graphs: list[Graph], model: StudentBase) -> dict:
    """Variance of energy per atom (after the element fit), mean squared force and Hessian element."""
    with torch.no_grad():
        resid = [
            (g.energy - float(model.shift[g.species].sum())) / g.n_atoms for g in graphs
        ]
    var_e = float(np.var(resid)) if len(resid) > 1 else 1.0
    f2 = float(torch.mean(torch.cat([g.forces.reshape(-1) for g in graphs]) ** 2))
    h = [g.hessian.reshape(-1) for g in graphs if g.hessian.numel()]
    h2 = float(torch.mean(torch.cat(h) ** 2)) if h else 1.0
    return {"energy": max(var_e, 1e-8), "forces": max(f2, 1e-8), "hessian": max(h2, 1e-8)}


def energy_force_loss(energy, grad, batch: Batch, config: DistillConfig, norm: dict) -> torch.Tensor:
    """wE * MSE(E/N) / var(E/N) + wF * MSE(F) / <F^2> (``grad`` is dE/dx, so forces enter as -grad)."""
    n = batch.n_atoms.to(energy.dtype)
    loss = config.energy_weight * torch.mean(((energy - batch.energy) / n) ** 2) / norm["energy"]
    return loss + config.force_weight * torch.mean((grad + batch.forces) ** 2) / norm["forces"]


def hessian_row_loss(rows, teacher, config: DistillConfig, norm: dict) -> torch.Tensor:
    """wH * MSE(H rows) / <H^2> of the student's rows against the teacher's, laid out alike (s, 3 N_total)."""
    return config.hessian_weight * torch.mean((rows - teacher) ** 2) / norm["hessian"]


def batch_loss(model, batch: Batch, config: DistillConfig, norm: dict, rng: np.random.Generator) -> torch.Tensor:
    """One batch's loss: energies, forces and, with wH > 0, ``config.hessian_rows`` rows per structure drawn
    with ``rng``."""
    slots = sample_row_slots(batch, config.hessian_rows, rng) if config.hessian_weight > 0 else None
    return slots_loss(model, batch, config, norm, slots)


def slots_loss(model, batch: Batch, config: DistillConfig, norm: dict, slots, batched_rows: bool = True
               ) -> torch.Tensor:
    """``batch_loss`` with the Hessian-row slots already drawn (``sample_row_slots``; None when wH = 0): the
    part of the loss that is a function of tensors only, which ``compiled.py`` traces (with ``batched_rows``
    False: see ``hessian.hessian_rows``)."""
    energy, grad, pos = predict(model, batch, create_graph=True)
    loss = energy_force_loss(energy, grad, batch, config, norm)
    if slots is not None:
        coords, teacher = slots
        rows = hessian_rows(grad, pos, coords, batched=batched_rows).reshape(coords.shape[0], -1)
        loss = loss + hessian_row_loss(rows, teacher, config, norm)
    return loss
