"""CHGNet teacher (chgnet 0.4.2, pretrained CHGNet 0.3.0 shipped in the wheel; Z = 1..94, PBE/MPtrj).

The crystal graph is built once per structure; each call sets the graph's fractional coordinates from the
Cartesian positions tensor (``x @ inv(cell)``), so autograd on positions gives forces and Hessians, and the stress
is the derivative with the lattice strained at fixed fractional coordinates. CHGNet predicts eV/atom; the teacher
returns the total energy (times N).
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from chgnet.model import CHGNet
from pymatgen.io.ase import AseAtomsAdaptor

from ..dtypes import parse_dtype
from ..errors import ConfigError, StructureError
from ..structures import check_elements
from .base import AutogradTeacher, EnergyFn


class CHGNetTeacher(AutogradTeacher):
    """CHGNet as a teacher: energy in eV (total, not per atom), positions in Angstrom.

    Needs a cell with three non-zero vectors (CHGNet is a crystal model; put a molecule in a box).
    Caveats: the energy surface is rough on the 0.01 A scale, so finite-difference checks need float64 and steps
    ~1e-4 A. In float64 the composition (reference energy) term stays float32: it is a constant in the positions.
    The graph is fixed at the structure's positions (exact for derivatives there).

    Parameters
    ----------
    model_name:
        CHGNet pretrained version (default ``"0.3.0"``).
    dtype:
        ``"float64"`` (default; smoother derivatives) or ``"float32"`` (CHGNet's native precision, faster).
    hessian_mode, chunk_size, device:
        See ``AutogradTeacher``; "auto" switches to the row loop above ``loop_above_atoms`` atoms.

    Example
    -------
    >>> from ase.build import bulk
    >>> label = CHGNetTeacher().label(bulk("Si"))
    """

    name = "chgnet"
    elements = frozenset(chemical_symbols[1:95])
    has_stress = True
    loop_above_atoms = 20

    def __init__(self, model_name: str = "0.3.0", dtype: str = "float64", hessian_mode: str = "auto",
                 chunk_size: int = 64, device: str | None = None):
        super().__init__(hessian_mode=hessian_mode, chunk_size=chunk_size, device=device)
        self.dtype = parse_dtype(dtype, "teacher chgnet dtype")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count on load
                model = CHGNet.load(model_name=model_name, use_device=str(self.device), verbose=False)
        except ValueError as exc:
            raise ConfigError(f"teacher chgnet: {exc}; known versions: 0.3.0, 0.2.0, r2scan") from exc
        if model_name != "0.3.0":
            self.name = f"chgnet:{model_name}"
        model = model.to(self.dtype).eval()
        if model.composition_model is not None:
            model.composition_model.float()  # it builds float32 features itself; its output is position-free
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model

    def _graph(self, atoms: Atoms):
        """(graph, cell, inverse cell, positions) of one structure, in the teacher's dtype and device."""
        check_elements(atoms, self.elements, f"teacher {self.name}")
        cell_np = atoms.cell.array
        if atoms.cell.rank < 3 or abs(np.linalg.det(cell_np)) < 1e-6:
            raise StructureError(
                f"teacher {self.name} needs a cell with three non-zero vectors, got {atoms.cell.cellpar().round(3)}; "
                "CHGNet is a crystal model: for a molecule use atoms.center(vacuum=10.0) and atoms.pbc = True"
            )
        graph = self.model.graph_converter(AseAtomsAdaptor.get_structure(atoms)).to(str(self.device))
        kw = {"dtype": self.dtype, "device": self.device}
        cell = torch.tensor(cell_np, **kw)
        graph.lattice = cell
        graph.neighbor_image = graph.neighbor_image.to(**kw)
        return graph, cell, torch.linalg.inv(cell), torch.tensor(atoms.get_positions(), **kw)

    def _energy(self, graph, frac: torch.Tensor, lattice: torch.Tensor) -> torch.Tensor:
        g = copy.copy(graph)  # shallow: only the fractional coordinates and the lattice change
        g.atom_frac_coord = frac
        g.lattice = lattice
        scale = len(frac) if self.model.is_intensive else 1
        return self.model([g], task="e")["e"].reshape(()) * scale

    def energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        graph, cell, inv_cell, pos = self._graph(atoms)
        return (lambda x: self._energy(graph, x @ inv_cell, cell)), pos

    def strain_energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        # CHGNet's own stress does the same: lattice (1 + eps) at fixed fractional coordinates
        graph, cell, inv_cell, pos = self._graph(atoms)
        frac = pos @ inv_cell
        return (lambda eps: self._energy(graph, frac, cell + cell @ eps)), torch.zeros_like(cell)
