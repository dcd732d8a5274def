"""A compiled training step: loss and parameter gradients of a batch from one traced, compiled graph.

``torch.compile`` of the student or of the loss fails on this loss's double backward (forces are dE/dx and the
Hessian rows or probe products are VJPs of the forces; "aot_autograd does not currently support double
backward", with compiled autograd too). :func:`hessdistill.tracing.trace_autograd` can trace it: the function of (parameters, buffers,
batch tensors, probe slots) that returns (loss, parameter gradients) becomes one graph of aten ops with every
backward unrolled, the parameters as inputs (``torch.func.functional_call``), and ``torch.compile`` compiles
that graph like any other. The optimizer update, clipping and EMA stay eager (fused AdamW), so a compiled step
differs from an eager one only by the rounding of the reordered arithmetic.

With a stress term (``loss.uses_stress``) the batch's stress labels, their mask and the cell volumes are inputs
too, and the student's stress (its strain derivative, ``loss.predict``) is part of the traced graph; with the
molecule terms (``loss.uses_molecules``) each atom's molecule and lever arm and the molecules' mask.

Sizes: the graph is traced on a synthetic batch whose sizes (structures, atoms, edges) are distinct from each
other and from the fixed sizes (3 axes, 2 edge ends, s rows), so none is specialized or merged with another;
each call marks the atom, edge and structure dimensions dynamic (those of the probe slots too), so batches of
other sizes reuse the compiled code. A batch of one structure (or of fewer than 2 atoms or edges) runs eagerly: on torch 2.9.1 the compiled
graph's parameter gradients for one structure were wrong (off by 50% in a test, whether the trace had one
structure or several; the traced graph itself was right), and a short last batch is one step per epoch.

Example
-------
>>> step = CompiledStep(model, config, norm)
>>> loss, grads = step(batch, slots)  # grads: one tensor per parameter of ``step.parameters`` (None if unused)
"""

from __future__ import annotations

from typing import Optional

import torch

from .config import DistillConfig
from .data import Batch
from .loss import slots_loss, uses_molecules, uses_stress

#: The batch tensors the traced graph takes, in order (then the stress labels when the loss has a stress term).
_BATCH = ("positions", "species", "edge_index", "shifts", "batch", "n_atoms", "energy", "forces")
_STRESS = ("stress", "stress_mask", "volume")
_MOLECULES = ("molecule", "lever", "molecule_mask")
#: The dimension of each that changes from batch to batch (atoms, edges or structures).
_DYNAMIC = {"positions": 0, "species": 0, "edge_index": 1, "shifts": 0, "batch": 0, "n_atoms": 0, "energy": 0,
            "forces": 0, "stress": 0, "stress_mask": 0, "volume": 0, "molecule": 0, "lever": 0, "molecule_mask": 0}


class CompiledStep:
    """(loss, parameter gradients) of ``slots_loss(model, batch, config, norm, slots)`` from a compiled graph.

    Traced and compiled on the first call (the compile takes ~1-2 minutes on a CPU). Gradients are returned for
    ``parameters`` (the model's parameters that require grad), None for those the loss does not reach, as
    ``torch.autograd.grad(..., allow_unused=True)`` would.
    """

    def __init__(self, model: torch.nn.Module, config: DistillConfig, norm: dict):
        self.model, self.config, self.norm = model, config, norm
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.parameters = [p for _, p in named]
        self.buffer_names = [n for n, _ in model.named_buffers()]
        self.rows = config.hessian_rows if config.hessian_weight > 0 else 0
        self.fields = (_BATCH + (_STRESS if uses_stress(config, norm) else ())
                       + (_MOLECULES if uses_molecules(config, norm) else ()))
        self._compiled = None
        self._used: list[bool] = []

    def __call__(self, batch: Batch, slots) -> tuple[torch.Tensor, list[Optional[torch.Tensor]]]:
        if min(batch.n_atoms.shape[0], batch.positions.shape[0], batch.edge_index.shape[1]) < 2:
            # sizes of 1 are specialized by the compiler, and its gradients for one structure were wrong
            loss = slots_loss(self.model, batch, self.config, self.norm, slots)
            return loss.detach(), list(torch.autograd.grad(loss, self.parameters, allow_unused=True))
        if self._compiled is None:
            self._compiled = torch.compile(self._trace(batch), dynamic=False, fullgraph=True)
        inputs = self._inputs(batch, slots)
        self._mark_dynamic(inputs)
        loss, *grads = self._compiled(*inputs)
        it = iter(grads)
        return loss, [next(it) if used else None for used in self._used]

    def _inputs(self, batch: Batch, slots) -> list[torch.Tensor]:
        buffers = dict(self.model.named_buffers())
        tensors = [p.detach() for p in self.parameters] + [buffers[n] for n in self.buffer_names]
        tensors += [getattr(batch, name) for name in self.fields]
        if self.rows:
            tensors += list(slots)
        return tensors

    def _mark_dynamic(self, inputs: list[torch.Tensor]) -> None:
        """Atoms, edges and structures may change from batch to batch; every other size is fixed for a run."""
        k = len(self.parameters) + len(self.buffer_names)
        dims = [(t, _DYNAMIC[name]) for t, name in zip(inputs[k:], self.fields)]
        if self.rows:
            probes, teacher, curvature = inputs[k + len(self.fields) :]
            dims += [(probes, 1), (teacher, 1), (curvature, 1)]
        for t, d in dims:
            torch._dynamo.maybe_mark_dynamic(t, d)

    def _loss_and_grads(self, *tensors):
        n_p, n_b = len(self.parameters), len(self.buffer_names)
        params = [t.detach().requires_grad_(True) for t in tensors[:n_p]]
        state = dict(zip(self.names, params)) | dict(zip(self.buffer_names, tensors[n_p : n_p + n_b]))
        k = n_p + n_b + len(self.fields)
        slots = tuple(tensors[k:]) or None
        batch = Batch(offsets=[], graphs=[], **dict(zip(self.fields, tensors[n_p + n_b : k])))

        def student(*args):
            return torch.func.functional_call(self.model, state, args)

        loss = slots_loss(student, batch, self.config, self.norm, slots, batched_rows=False)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        self._used = [g is not None for g in grads]
        return (loss, *[g for g in grads if g is not None])

    def _trace(self, batch: Batch) -> torch.fx.GraphModule:
        from ..tracing import trace_autograd

        graph = trace_autograd(self._loss_and_grads, self._inputs(*_synthetic_batch(batch, self.rows)))
        return _sizes_as_methods(graph)


def _sizes_as_methods(graph: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """The traced graph's size queries (``aten.sym_size.int``, ``aten.sym_numel``) as ``Tensor.size`` and
    ``Tensor.numel`` calls: dynamo refuses aten ops that return integers ("torch.* op returned non-Tensor"), but
    follows these methods as symbolic sizes."""
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.sym_size.int:
            node.op, node.target = "call_method", "size"
        elif node.target is torch.ops.aten.sym_numel.default:
            node.op, node.target = "call_method", "numel"
    graph.recompile()
    return graph


def _synthetic_batch(like: Batch, rows: int) -> tuple[Batch, Optional[tuple]]:
    """A batch (and row slots) of ``like``'s dtype, device and species range whose structure, atom, edge and
    3 x atom counts differ from each other and from 1, 2, 3, 6, 9 and ``rows``, so tracing keeps each a symbol of
    its own. Structure b has 4 atoms (the first 5) in a ring with edges both ways (the first one edge more)."""
    device, dtype = like.positions.device, like.positions.dtype
    n_structures = max(rows, 3) + 2
    while n_structures in (6, 9, rows):  # 6 Voigt components and 9 tensor components are fixed sizes too
        n_structures += 1
    sizes = [5] + [4] * (n_structures - 1)
    offsets = [sum(sizes[:b]) for b in range(n_structures)]
    n = sum(sizes)
    edges = []
    for off, size in zip(offsets, sizes):
        edges += [(off + i, off + (i + 1) % size) for i in range(size)]
        edges += [(off + (i + 1) % size, off + i) for i in range(size)]
    edges.append((0, 2))
    assert len({n_structures, 2 * n_structures, n, len(edges), 3 * n}) == 5
    assert not {n_structures, 2 * n_structures, n} & {1, 2, 3, 6, 9, rows}
    gen = torch.Generator().manual_seed(0)
    n_types = int(like.species.max()) + 1
    batch = Batch(
        species=(torch.arange(n) % n_types).to(device),
        positions=(3.0 * torch.rand(n, 3, generator=gen)).to(device, dtype),
        edge_index=torch.tensor(edges, device=device).T.contiguous(),
        shifts=torch.zeros(len(edges), 3, dtype=dtype, device=device),
        batch=torch.repeat_interleave(torch.arange(n_structures), torch.tensor(sizes)).to(device),
        n_atoms=torch.tensor(sizes, device=device),
        offsets=offsets,
        energy=torch.zeros(n_structures, dtype=dtype, device=device),
        forces=torch.zeros(n, 3, dtype=dtype, device=device),
        graphs=[],
        stress=torch.zeros(n_structures, 6, dtype=dtype, device=device),
        stress_mask=(torch.arange(n_structures) % 2).to(device, dtype),  # both values: no branch is specialized
        volume=torch.full((n_structures,), 100.0, dtype=dtype, device=device),
        # two molecules per structure (its first two atoms, the rest): 2 x structures, a size of its own
        molecule=(2 * torch.repeat_interleave(torch.arange(n_structures), torch.tensor(sizes))
                  + (torch.arange(n) - torch.repeat_interleave(torch.tensor(offsets), torch.tensor(sizes)) >= 2)
                  ).to(device),
        lever=(torch.rand(n, 3, generator=gen) - 0.5).to(device, dtype),
        molecule_mask=(torch.arange(2 * n_structures) // 2 % 2).to(device, dtype),  # both values, as stress_mask
    )
    if not rows:
        return batch, None
    coords = torch.tensor([[3 * off + j % 12 for off in offsets] for j in range(rows)], device=device)
    probes = torch.zeros(rows, 3 * n, dtype=dtype, device=device).scatter_(1, coords, 1.0)
    curvature = torch.ones(rows, n_structures, dtype=dtype, device=device)
    return batch, (probes, torch.zeros(rows, 3 * n, dtype=dtype, device=device), curvature)
