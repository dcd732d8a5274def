"""SevenNet-0 teacher (sevenn 0.13.0, checkpoint ``7net-0`` shipped in the wheel; 89 elements, PBE/MPtrj).

The model is made a function of Cartesian positions: the neighbour graph is built once per structure (at its
given positions), then each call sets the edge vectors ``pos[dst] - pos[src] + shift @ cell`` from the positions
tensor and runs the model without its own force-output module, so autograd gives forces and Hessians.
"""

from __future__ import annotations

import copy
import warnings

import torch
from ase import Atoms
from ase.data import chemical_symbols

import sevenn._keys as KEY
from sevenn.atom_graph_data import AtomGraphData
from sevenn.train.dataload import unlabeled_atoms_to_graph
from sevenn.util import load_checkpoint

from ..dtypes import parse_dtype
from ..errors import ConfigError, ModelFileError
from ..structures import check_elements
from .base import AutogradTeacher, EnergyFn


class SevenNetTeacher(AutogradTeacher):
    """SevenNet-0 as a teacher: energy in eV, positions in Angstrom, float32 only.

    Caveats: ``.double()`` fails on e3nn constants, so derivatives carry float32 round-off (finite-difference
    checks need steps ~1e-3 A and loose tolerances). The graph is fixed at the structure's positions, which is
    exact for derivatives there (edges at the 5 A cutoff have zero weight and slope).

    Parameters
    ----------
    checkpoint:
        A sevenn pretrained name or checkpoint path (default ``"7net-0"``).
    dtype:
        Must be ``"float32"``.
    hessian_mode, chunk_size, device:
        See ``AutogradTeacher``; "auto" switches to the row loop above ``loop_above_atoms`` atoms.

    Example
    -------
    >>> from ase.build import bulk
    >>> label = SevenNetTeacher().label(bulk("Si"))
    """

    name = "sevennet0"
    has_stress = True
    # The row loop beats batched VJPs in time and memory from Si8 on: "auto" always loops (docs/design/pt2.md)
    loop_above_atoms = 0

    def __init__(self, checkpoint: str = "7net-0", dtype: str = "float32", hessian_mode: str = "auto",
                 chunk_size: int = 64, device: str | None = None):
        super().__init__(hessian_mode=hessian_mode, chunk_size=chunk_size, device=device)
        self.dtype = parse_dtype(dtype, "teacher sevennet0 (e3nn constants fail in float64): dtype", ("float32",))
        try:
            cp = load_checkpoint(checkpoint)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"cannot load SevenNet checkpoint {checkpoint!r}: {exc}") from exc
        if checkpoint != "7net-0":
            self.name = f"sevennet:{checkpoint}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no tensor product accelerator": none exists on CPU
            model = cp.build_model()
        if model.modal_map:
            raise ConfigError(f"SevenNet checkpoint {checkpoint!r} is multi-fidelity; only single-modal models work")
        model.set_is_batch_data(False)
        model.delete_module_by_key("force_output")  # forces and Hessians come from autograd on positions
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cutoff = float(cp.config[KEY.CUTOFF])
        self.elements = frozenset(chemical_symbols[z] for z in cp.config[KEY.TYPE_MAP])

    def _graph(self, atoms: Atoms):
        """(graph, src, dst, shift, positions): edge e runs src -> dst with vector x[dst] - x[src] + shift[e]."""
        check_elements(atoms, self.elements, f"teacher {self.name}")
        graph = AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, self.cutoff, with_shift=True))
        graph = graph.to(self.device)
        cell = torch.tensor(atoms.cell.array, dtype=self.dtype, device=self.device)
        # Integer image shifts are zero along non-periodic directions, so the (possibly zero) cell is safe there.
        shift = graph[KEY.CELL_SHIFT].to(self.dtype) @ cell
        pos = torch.tensor(atoms.get_positions(), dtype=self.dtype, device=self.device)
        return graph, graph[KEY.EDGE_IDX][0], graph[KEY.EDGE_IDX][1], shift, pos

    def _energy(self, graph, positions: torch.Tensor, edge_vectors: torch.Tensor) -> torch.Tensor:
        data = copy.copy(graph)  # shallow: the model adds keys, the shared tensors stay untouched
        data[KEY.POS] = positions
        data[KEY.EDGE_VEC] = edge_vectors
        return self.model(data)[KEY.PRED_TOTAL_ENERGY].reshape(())

    def energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        graph, src, dst, shift, pos = self._graph(atoms)
        return (lambda x: self._energy(graph, x, x[dst] - x[src] + shift)), pos

    def strain_energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        # strained cell and positions: every edge vector, image shifts included, becomes v (1 + eps)
        graph, src, dst, shift, pos = self._graph(atoms)
        vectors = pos[dst] - pos[src] + shift
        zero = torch.zeros(3, 3, dtype=self.dtype, device=self.device)
        return (lambda eps: self._energy(graph, pos + pos @ eps, vectors + vectors @ eps)), zero
