"""A user's TorchScript energy model as teacher.

The file must hold a module whose ``forward(positions, atomic_numbers, cell, pbc)`` takes positions (N, 3) in
Angstrom (float64 or float32), atomic numbers (N,) int64, cell (3, 3) and pbc (3,) bool, and returns the total
energy in eV as a scalar tensor that is differentiable in ``positions``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from ase import Atoms

from ..dtypes import parse_dtype
from ..errors import ModelFileError, first_line
from .base import AutogradTeacher


class TorchScriptTeacher(AutogradTeacher):
    name = "torchscript"

    def __init__(self, path: str, dtype: str = "float64", elements=None, **kwargs):
        super().__init__(**kwargs)
        self.path = Path(path)
        self.name = f"torchscript:{self.path.name}"
        self.spec = f"torchscript:{self.path.resolve()}"
        if not self.path.is_file():
            raise ModelFileError(f"teacher model file {self.path} does not exist")
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device)
        except Exception as exc:
            raise ModelFileError(f"cannot load {self.path} as TorchScript: {first_line(exc)}") from exc
        self.dtype = parse_dtype(dtype, "teacher torchscript dtype")
        self.module.to(self.dtype)
        self.elements = frozenset(elements) if elements else None

    def energy_function(self, atoms: Atoms):
        kw = dict(device=self.device)
        pos = torch.tensor(atoms.positions, dtype=self.dtype, **kw)
        numbers = torch.tensor(atoms.numbers, dtype=torch.long, **kw)
        cell = torch.tensor(atoms.cell.array, dtype=self.dtype, **kw)
        pbc = torch.tensor(atoms.pbc, **kw)

        def energy_fn(x: torch.Tensor) -> torch.Tensor:
            return self.module(x, numbers, cell, pbc)

        return energy_fn, pos
