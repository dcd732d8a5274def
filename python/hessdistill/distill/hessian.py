"""Student Hessian rows by vector-Jacobian products (double backward), never the full matrix.

Row k of the Hessian is the gradient of dE/dx_k, i.e. the VJP of the energy gradient with the unit vector e_k.
A batch of structures is one disjoint graph, so its Hessian is block diagonal: one VJP with a vector holding a
1 at one coordinate of every structure returns one row of each structure at once. ``s`` rows per structure
therefore cost ``s`` VJPs per batch, batched together with ``is_grads_batched``.
"""

from __future__ import annotations

import torch


def energy_gradient(energy: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """dE/dx with a graph, so that it can be differentiated again (forces are its negative)."""
    return torch.autograd.grad(energy.sum(), positions, create_graph=True)[0]


def hessian_rows(gradient: torch.Tensor, positions: torch.Tensor, coords: torch.Tensor, create_graph: bool = True,
                 batched: bool = True):
    """Rows of the Hessian selected by ``coords``.

    Parameters
    ----------
    gradient: dE/dx (N, 3) with a graph (from ``energy_gradient``).
    positions: the (N, 3) leaf tensor the gradient was taken with respect to.
    coords: (s, M) flat coordinate indices (atom * 3 + axis); VJP j sums the unit vectors of ``coords[j]``.
        With one coordinate per structure of a block-diagonal batch, row j of the result holds one Hessian row
        of each structure, in that structure's atoms.
    create_graph: keep a graph of the rows (for a loss on them).
    batched: take the ``s`` VJPs in one vmapped call (``is_grads_batched``); False takes them one by one, for
        tracing (``compiled.py``: make_fx cannot trace vmap with symbolic sizes).

    Returns
    -------
    (s, N, 3) tensor: VJP j = sum over m of the Hessian rows coords[j, m].
    """
    s = coords.shape[0]
    v = torch.zeros(s, gradient.numel(), dtype=gradient.dtype, device=gradient.device)
    v.scatter_(1, coords, 1.0)
    v = v.view(s, *gradient.shape)
    if s == 1 or not batched:  # plain VJPs (for one row vmap's batching machinery only costs time)
        return torch.stack([
            torch.autograd.grad(gradient, positions, grad_outputs=v[j], create_graph=create_graph, retain_graph=True)[0]
            for j in range(s)
        ])
    (rows,) = torch.autograd.grad(
        gradient, positions, grad_outputs=v, create_graph=create_graph, retain_graph=True, is_grads_batched=True
    )
    return rows
