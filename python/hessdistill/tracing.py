"""Trace a function that calls autograd into one graph, for ahead-of-time and compiled execution.

``torch.export`` and ``torch.compile`` cannot take a forward that calls ``torch.autograd.grad`` (export fails with
"fake tensor in the exported program constant's list"; compile refuses double backward). ``make_fx`` in symbolic
mode can: it runs the function on fake tensors with symbolic sizes and records every aten op, the backward ops
included, into a plain graph with no autograd left in it. That graph exports with dynamic shapes and compiles.
The student file's compiled format (:mod:`hessdistill.formats.pt2`) traces energy + forces + virial this way;
compiled training can trace loss + parameter gradients the same way.

Example
-------
>>> def energy_forces(x):
...     x = x.detach().requires_grad_(True)
...     e = (x ** 2).sum()
...     return e, -torch.autograd.grad(e, x)[0]
>>> graph = trace_autograd(energy_forces, (torch.ones(5, 3),))
>>> graph(torch.ones(7, 3))[1].shape
torch.Size([7, 3])
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch


def trace_autograd(fn: Callable, example_inputs: Sequence[torch.Tensor]) -> torch.fx.GraphModule:
    """Graph of ``fn(*example_inputs)`` with its autograd calls unrolled into aten ops and symbolic input sizes.

    Tensors ``fn`` closes over (a module's parameters and buffers) become constants of the graph; pass them as
    inputs instead where they must stay variables (training). Sizes of the example inputs should be distinct and
    at least 2: sizes 0 and 1, and sizes shared between inputs, may be specialized into the graph.

    Parameters
    ----------
    fn: function of tensors returning a tensor or a tuple of tensors; may call ``torch.autograd.grad``.
    example_inputs: tensors of the dtypes and devices the graph will be called with.
    """
    from torch.fx.experimental.proxy_tensor import make_fx

    with torch.enable_grad():  # fn's autograd calls need grad mode whatever the caller has set
        return make_fx(fn, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example_inputs)
