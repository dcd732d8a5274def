"""Student Hessian-vector products by vector-Jacobian products (double backward), never the full matrix.

H v is the VJP of the energy gradient with v; a Hessian row k is the product with the unit vector e_k. A batch
of structures is one disjoint graph, so its Hessian is block diagonal: one VJP with a vector holding one probe in
every structure's block returns that structure's product in its own atoms, for all structures at once. ``s``
probes per structure therefore cost ``s`` VJPs per batch, batched together with ``is_grads_batched``.
"""

from __future__ import annotations

import torch


def energy_gradient(energy: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """dE/dx with a graph, so that it can be differentiated again (forces are its negative)."""
    return torch.autograd.grad(energy.sum(), positions, create_graph=True)[0]


def hessian_vector_products(gradient: torch.Tensor, positions: torch.Tensor, vectors: torch.Tensor,
                            create_graph: bool = True, batched: bool = True) -> torch.Tensor:
    """H v for each of the ``s`` vectors.

    Parameters
    ----------
    gradient: dE/dx (N, 3) with a graph (from ``energy_gradient``).
    positions: the (N, 3) leaf tensor the gradient was taken with respect to.
    vectors: (s, 3N) (or (s, N, 3)) probe vectors, each holding one probe per structure of a block-diagonal batch.
    create_graph: keep a graph of the products (for a loss on them).
    batched: take the ``s`` VJPs in one vmapped call (``is_grads_batched``); False takes them one by one, for
        tracing (``compiled.py``: make_fx cannot trace vmap with symbolic sizes).

    Returns
    -------
    (s, N, 3) tensor: H v_j for each vector j.
    """
    s = vectors.shape[0]
    v = vectors.reshape(s, *gradient.shape).to(gradient.dtype)
    if s == 1 or not batched:  # plain VJPs (for one vector vmap's batching machinery only costs time)
        return torch.stack([
            torch.autograd.grad(gradient, positions, grad_outputs=v[j], create_graph=create_graph, retain_graph=True)[0]
            for j in range(s)
        ])
    (products,) = torch.autograd.grad(
        gradient, positions, grad_outputs=v, create_graph=create_graph, retain_graph=True, is_grads_batched=True
    )
    return products


def hessian_rows(gradient: torch.Tensor, positions: torch.Tensor, coords: torch.Tensor, create_graph: bool = True,
                 batched: bool = True) -> torch.Tensor:
    """Rows of the Hessian selected by ``coords`` (s, M) flat coordinate indices (atom * 3 + axis): product j is
    with the sum of the unit vectors of ``coords[j]``, one coordinate per structure of a batch. (s, N, 3)."""
    v = torch.zeros(coords.shape[0], gradient.numel(), dtype=gradient.dtype, device=gradient.device)
    v.scatter_(1, coords, 1.0)
    return hessian_vector_products(gradient, positions, v, create_graph=create_graph, batched=batched)
