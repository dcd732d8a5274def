"""The distillation loss and the training-set statistics that normalise it.

loss = wE * MSE(E/N) / var(E/N) + wF * MSE(F) / <F^2> + wH * MSE(H v) / <(H v)^2> + wS * MSE(stress) / <S^2>
       + wNF * MSE(net force per molecule) / <NF^2> + wNT * MSE(net torque per molecule) / <NT^2>,
with ``s`` Hessian probes v per structure and step drawn uniformly without replacement from the stored ones (a
stored Cartesian row k is the probe e_k, so that MSE(H v) is the MSE of Hessian rows), the student's products
coming from vector-Jacobian products of its forces (``hessian.hessian_vector_products``). With
``hessian_probe_weighting: curvature`` each probe's squared error is divided by c^2, c = v . H_teacher v floored
at ``CURVATURE_FLOOR`` times the training set's median |c|, and the term by the same weighted mean of (H v)^2: a
torsion's small H v then counts as much as a bond stretch's, relative to its own size. wH = 0 is the undistilled
baseline. The stress term counts only structures with a stress label (periodic cells of teachers that
give one; mean over their six Voigt components); the student's stress is (1/V) dE/d(strain), the derivative of its
energy with the batch's cells and positions deformed by a zero strain per structure, taken in the same backward
pass as the forces (so it can be differentiated again, for the parameter gradients).
The molecule terms count the molecules of ``molecules.fitted_molecules`` (of structures of several molecules, of
more than one atom, not spanning the periodic cell): a molecule's net force and its net torque about its centre of mass are carried by
the intermolecular forces alone (:mod:`hessdistill.molecules`), a small part of each atom's force that the force
MSE barely sees.
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
from .hessian import hessian_vector_products
from ..students import StudentBase
from ..teachers.base import VOIGT

#: The floor of the teacher's curvature |v . H v| in the curvature weighting, as a fraction of its training-set
#: median: flat or negative directions (away from minima) get a large but bounded weight.
CURVATURE_FLOOR = 0.01


def predict(model, batch: Batch, create_graph: bool, stress: bool = False):
    """Per-structure energies, energy gradient (with graph if asked), the leaf positions and, if ``stress``, the
    per-structure stress (B, 6) in Voigt order (None otherwise).

    The stress is (1/V) dE/d(eps) at eps = 0, where each structure's positions and edge shifts are deformed by its
    own symmetric strain eps (rows x -> x (1 + eps)): the same quantity as ``-virial / V`` of
    ``formats.evaluate`` (what the ASE calculator reports), by another route. Structures without a stress label
    get a stress divided by volume 1, which the loss masks out.
    """
    pos = batch.positions.detach().clone().requires_grad_(True)
    x, shifts, leaves = pos, batch.shifts, [pos]
    # sized from a tensor, not len(batch.graphs): a traced step (compiled.py) keeps the batch size symbolic
    n_structures = batch.n_atoms.shape[0]
    if stress:
        strain = torch.zeros(n_structures, 3, 3, dtype=pos.dtype, device=pos.device, requires_grad=True)
        eps = 0.5 * (strain + strain.transpose(1, 2))
        x = pos + torch.bmm(pos.unsqueeze(1), eps[batch.batch]).squeeze(1)
        edge_eps = eps[batch.batch[batch.edge_index[0]]]  # an edge belongs to its centre atom's structure
        shifts = shifts + torch.bmm(shifts.unsqueeze(1), edge_eps).squeeze(1)
        leaves.append(strain)
    atomic = model(x, batch.species, batch.edge_index, shifts)
    energy = torch.zeros(n_structures, dtype=atomic.dtype, device=atomic.device).index_add(0, batch.batch, atomic)
    grads = torch.autograd.grad(energy.sum(), leaves, create_graph=create_graph)
    if not stress:
        return energy, grads[0], pos, None
    sigma = grads[1] / batch.volume.view(-1, 1, 1)
    return energy, grads[0], pos, sigma.reshape(-1, 9)[:, list(VOIGT)]


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
    """Variance of energy per atom (after the element fit), mean squared force, Hessian element and, where some
    structures have stress labels, stress component (key ``stress`` absent when none has)."""
    with torch.no_grad():
        resid = [
            (g.energy - float(model.shift[g.species].sum())) / g.n_atoms for g in graphs
        ]
    var_e = float(np.var(resid)) if len(resid) > 1 else 1.0
    f2 = float(torch.mean(torch.cat([g.forces.reshape(-1) for g in graphs]) ** 2))
    h = [g.hessian.reshape(-1) for g in graphs if g.hessian.numel()]
    h2 = float(torch.mean(torch.cat(h) ** 2)) if h else 1.0
    norm = {"energy": max(var_e, 1e-8), "forces": max(f2, 1e-8), "hessian": max(h2, 1e-8)}
    if h:
        norm.update(curvature_normalizers(graphs))
    net_forces, net_torques = [], []
    for g in graphs:
        if bool(g.molecule_mask.any()):
            force, torque = molecule_sums(g.forces, g.lever, g.molecule, g.n_molecules)
            net_forces.append(force[g.molecule_mask > 0])
            net_torques.append(torque[g.molecule_mask > 0])
    if net_forces:
        norm["net_force"] = max(float(torch.mean(torch.cat(net_forces) ** 2)), 1e-10)
        norm["net_torque"] = max(float(torch.mean(torch.cat(net_torques) ** 2)), 1e-10)
    stresses = [g.stress for g in graphs if g.stress is not None]
    if stresses:
        # <S^2>, not the variance about the mean: a set at one volume has a large mean (pressure) and tiny spread
        norm["stress"] = max(float(torch.mean(torch.stack(stresses) ** 2)), 1e-10)
    return norm


def curvature_normalizers(graphs: list[Graph]) -> dict:
    """The floor of |v . H v| of the curvature weighting (``CURVATURE_FLOOR`` x the median over the stored probes)
    and the mean of (H v)^2 / max(c^2, floor^2) over the probes' components, the weighted term's normaliser."""
    curvature = np.concatenate([g.curvature for g in graphs])
    floor = max(CURVATURE_FLOOR * float(np.median(np.abs(curvature))), 1e-8)
    weighted = sum(float(1.0 / np.maximum(g.curvature**2, floor**2)
                         @ (g.hessian.double() ** 2).sum(dim=1).cpu().numpy()) for g in graphs)
    count = sum(g.hessian.numel() for g in graphs)
    return {"curvature_floor": floor, "hessian_curvature": max(weighted / count, 1e-12)}


def uses_stress(config: DistillConfig, norm: dict) -> bool:
    """Whether the loss has the stress term: wS > 0 and some training structure has a stress label."""
    return config.stress_weight > 0 and "stress" in norm


def uses_molecules(config: DistillConfig, norm: dict) -> bool:
    """Whether the loss has the molecule terms: wNF or wNT > 0 and some training structure holds several
    molecules."""
    return (config.net_force_weight > 0 or config.net_torque_weight > 0) and "net_force" in norm


def molecule_sums(forces, lever, molecule, n_molecules: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each molecule's net force and net torque (lever x force summed over its atoms), (M, 3) each."""
    zero = torch.zeros(n_molecules, 3, dtype=forces.dtype, device=forces.device)
    return zero.index_add(0, molecule, forces), zero.index_add(0, molecule, torch.linalg.cross(lever, forces))


def molecule_loss(grad, batch: Batch, config: DistillConfig, norm: dict) -> torch.Tensor:
    """wNF * MSE(net force) / <NF^2> + wNT * MSE(net torque) / <NT^2> over the batch's fitted molecules
    (``batch.molecule_mask``; ``grad`` is dE/dx; both sums are linear in the forces, so the error's sums are taken)."""
    mask = batch.molecule_mask
    force, torque = molecule_sums(-grad - batch.forces, batch.lever, batch.molecule, mask.shape[0])
    count = 3.0 * mask.sum().clamp(min=1.0)
    loss = config.net_force_weight * ((force**2).sum(dim=1) * mask).sum() / count / norm["net_force"]
    return loss + config.net_torque_weight * ((torque**2).sum(dim=1) * mask).sum() / count / norm["net_torque"]


def energy_force_loss(energy, grad, batch: Batch, config: DistillConfig, norm: dict) -> torch.Tensor:
    """wE * MSE(E/N) / var(E/N) + wF * MSE(F) / <F^2> (``grad`` is dE/dx, so forces enter as -grad)."""
    n = batch.n_atoms.to(energy.dtype)
    loss = config.energy_weight * torch.mean(((energy - batch.energy) / n) ** 2) / norm["energy"]
    return loss + config.force_weight * torch.mean((grad + batch.forces) ** 2) / norm["forces"]


def hessian_probe_loss(products, teacher, curvature, batch: Batch, config: DistillConfig, norm: dict
                       ) -> torch.Tensor:
    """wH * MSE(H v) / <(H v)^2> of the student's products against the teacher's, laid out alike (s, 3 N_total);
    with the curvature weighting, each structure's squared errors along probe j divided by max(c^2, floor^2) of
    its teacher curvature c = curvature[j, b] (s, B), and the term by the weighted normaliser."""
    sq = (products - teacher) ** 2
    if config.hessian_probe_weighting == "none":
        return config.hessian_weight * torch.mean(sq) / norm["hessian"]
    weight = 1.0 / torch.clamp(curvature**2, min=norm["curvature_floor"] ** 2)
    sq = sq.reshape(sq.shape[0], -1, 3) * weight[:, batch.batch].unsqueeze(2)
    return config.hessian_weight * torch.mean(sq) / norm["hessian_curvature"]


def stress_loss(stress, batch: Batch, config: DistillConfig, norm: dict) -> torch.Tensor:
    """wS * MSE(stress) / <S^2> over the structures of the batch that have a stress label (zero if none has)."""
    mask = batch.stress_mask
    sq = (((stress - batch.stress) ** 2).sum(dim=1) * mask).sum() / (6.0 * mask.sum().clamp(min=1.0))
    return config.stress_weight * sq / norm["stress"]


def batch_loss(model, batch: Batch, config: DistillConfig, norm: dict, rng: np.random.Generator) -> torch.Tensor:
    """One batch's loss: energies, forces and, with wH > 0, ``config.hessian_rows`` Hessian probes (rows) per
    structure drawn with ``rng``."""
    slots = sample_row_slots(batch, config.hessian_rows, rng) if config.hessian_weight > 0 else None
    return slots_loss(model, batch, config, norm, slots)


def slots_loss(model, batch: Batch, config: DistillConfig, norm: dict, slots, batched_rows: bool = True
               ) -> torch.Tensor:
    """``batch_loss`` with the Hessian probe slots already drawn (``sample_row_slots``; None when wH = 0): the
    part of the loss that is a function of tensors only, which ``compiled.py`` traces (with ``batched_rows``
    False: see ``hessian.hessian_vector_products``)."""
    with_stress = uses_stress(config, norm)
    energy, grad, pos, stress = predict(model, batch, create_graph=True, stress=with_stress)
    loss = energy_force_loss(energy, grad, batch, config, norm)
    if uses_molecules(config, norm):
        loss = loss + molecule_loss(grad, batch, config, norm)
    if with_stress:
        loss = loss + stress_loss(stress, batch, config, norm)
    if slots is not None:
        probes, teacher, curvature = slots
        products = hessian_vector_products(grad, pos, probes, batched=batched_rows).reshape(probes.shape[0], -1)
        loss = loss + hessian_probe_loss(products, teacher, curvature, batch, config, norm)
    return loss
