"""Errors of a student on held-out labelled structures: energy, forces, Hessian rows and stress."""

from __future__ import annotations

import torch

from .data import Graph, collate, gather_slots
from .hessian import hessian_vector_products
from .loss import predict


def evaluate(model, graphs: list[Graph], hessian_rows_per_structure: int = 6, batch_size: int = 16) -> dict:
    """MAE of energy (eV/structure and eV/atom), forces (eV/A), Hessian rows or probe products H v (eV/A^2) and
    stress (eV/A^3, Voigt components of the structures with a stress label) against the labels.

    The Hessian MAE uses the first ``hessian_rows_per_structure`` stored rows (or probes) of each structure (a
    fixed set); it is NaN when that is 0 or a structure stores none. The stress MAE is NaN when no structure has stress.

    Example
    -------
    >>> evaluate(model, trainer.graphs["test"])["force_mae"]
    """
    e_err, e_err_atom, f_err, h_err, s_err = [], [], [], [], []
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size])
        want_h = hessian_rows_per_structure > 0 and all(g.n_probes for g in batch.graphs)
        want_s = any(g.stress is not None for g in batch.graphs)
        energy, grad, pos, stress = predict(model, batch, create_graph=want_h, stress=want_s)
        e_err.append((energy - batch.energy).abs().detach())
        e_err_atom.append(((energy - batch.energy).abs() / batch.n_atoms).detach())
        f_err.append((-grad - batch.forces).abs().reshape(-1).detach())
        if want_s:
            s_err.append((stress - batch.stress).abs()[batch.stress_mask > 0].reshape(-1).detach())
        if want_h:
            s = min(hessian_rows_per_structure, min(g.n_probes for g in batch.graphs))
            probes, teacher, _ = gather_slots(batch, [range(s)] * len(batch.graphs))
            products = hessian_vector_products(grad, pos, probes, create_graph=False).reshape(s, -1)
            h_err.append((products - teacher).abs().reshape(-1).detach())
    return {
        "energy_mae": float(torch.cat(e_err).mean()),
        "energy_mae_per_atom": float(torch.cat(e_err_atom).mean()),
        "force_mae": float(torch.cat(f_err).mean()),
        "hessian_mae": float(torch.cat(h_err).mean()) if h_err else float("nan"),
        "stress_mae": float(torch.cat(s_err).mean()) if s_err else float("nan"),
    }
