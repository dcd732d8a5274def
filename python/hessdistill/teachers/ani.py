"""ANI-1x teacher (torchani 2.2.4): the 8-model ensemble, built offline from the files shipped in the wheel.

torchani's own ``ANI1x()`` loader reads an index file that is empty in the 2.2.4 wheel and then tries to
download the weights; this module builds the same ensemble (AEV computer -> 8 networks -> self energies)
directly from ``torchani/resources/ani-1x_8x/``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from ase import Atoms

with warnings.catch_warnings():  # "cuaev not installed": the CUDA AEV extension is optional
    warnings.simplefilter("ignore")
    import torchani
    from torchani import neurochem
    from torchani.utils import map2central

from ..dtypes import parse_dtype
from ..errors import ModelFileError
from ..structures import check_elements
from ..units import HARTREE_TO_EV
from .base import AutogradTeacher, EnergyFn

_RESOURCE_DIR = os.path.join(os.path.dirname(torchani.__file__), "resources", "ani-1x_8x")
_CONSTANTS = "rHCNO-5.2R_16-3.5A_a4-8.params"
_SELF_ENERGIES = "sae_linfit.dat"
_ENSEMBLE_SIZE = 8


def _generic_rotation() -> np.ndarray:
    """A fixed rotation about an axis and by an angle unrelated to the coordinate axes (Rodrigues' formula)."""
    axis = np.array([1.0, np.sqrt(2.0), np.sqrt(5.0)])
    axis /= np.linalg.norm(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    angle = 1.0
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * k @ k


#: torchani's angular terms multiply the components of neighbour vectors with ``torch.prod``, whose double
#: backward (when no factor is exactly zero) subtracts two terms of size b / a; with a component a ~ 1e-17 (a
#: planar molecule on the xy plane, with rounding noise) next to an O(1) partner b, the out-of-plane Hessian is off
#: by up to ~10 eV/A^2, and whether any factor is exactly zero depends on the last bits of the input. The energy
#: is rotation invariant, so it is evaluated in this generically rotated frame, where no component is tiny unless
#: the structure is chance-aligned with it; autograd takes the rotation back into the derivatives.
_FRAME = _generic_rotation()


def build_ani1x(resource_dir: str = _RESOURCE_DIR) -> tuple[torch.nn.Module, list[str]]:
    """The ANI-1x ensemble as ``torchani.nn.Sequential(aev, ensemble, shifter)`` and its species order.

    The module maps ``(species indices (1, N), positions (1, N, 3) A)`` to energies in Hartree.
    """
    needed = [_CONSTANTS, _SELF_ENERGIES] + [f"train{i}" for i in range(_ENSEMBLE_SIZE)]
    missing = [f for f in needed if not os.path.exists(os.path.join(resource_dir, f))]
    if missing:
        raise ModelFileError(
            f"ANI-1x files missing in {resource_dir}: {', '.join(missing)}; "
            "expected the torchani==2.2.4 wheel, which ships them"
        )
    consts = neurochem.Constants(os.path.join(resource_dir, _CONSTANTS))
    aev = torchani.AEVComputer(**consts)
    shifter = neurochem.load_sae(os.path.join(resource_dir, _SELF_ENERGIES))
    nets = neurochem.load_model_ensemble(consts.species, os.path.join(resource_dir, "train"), _ENSEMBLE_SIZE)
    return torchani.nn.Sequential(aev, nets, shifter), list(consts.species)


class ANI1xTeacher(AutogradTeacher):
    """ANI-1x (wB97X/6-31G(d), H C N O) as a teacher; energies converted from Hartree to eV.

    Periodic and partly periodic boxes work (atoms are wrapped into the cell inside the energy function, which
    does not change the energy or its derivatives); a box periodic in all three directions has a stress, the
    strain derivative of the same energy. Caveat: ANI's CELU activations make the Hessian slightly
    non-smooth, so finite-difference checks need float64 and small steps (~1e-5 A).

    Parameters
    ----------
    dtype:
        ``"float64"`` (default) or ``"float32"``.
    hessian_mode, chunk_size, device:
        See ``AutogradTeacher``.

    Example
    -------
    >>> from ase.build import molecule
    >>> teacher = ANI1xTeacher()
    >>> label = teacher.label(molecule("CH4"))  # energy (eV), forces (eV/A), Hessian (eV/A^2)
    """

    name = "ani1x"
    elements = frozenset("HCNO")
    has_stress = True  # periodic boxes (molecular liquids) get stress labels: the strain derivative below

    def __init__(self, dtype: str = "float64", hessian_mode: str = "auto", chunk_size: int = 64,
                 device: str | None = None):
        super().__init__(hessian_mode=hessian_mode, chunk_size=chunk_size, device=device)
        self.dtype = parse_dtype(dtype, "teacher ani1x dtype")
        model, species = build_ani1x()
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._index = {s: i for i, s in enumerate(species)}

    def energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        check_elements(atoms, self.elements, f"teacher {self.name}")
        kw = {"device": self.device}
        species = torch.tensor([[self._index[s] for s in atoms.get_chemical_symbols()]], dtype=torch.long, **kw)
        pos = torch.tensor(atoms.get_positions(), dtype=self.dtype, **kw)
        model = self.model
        frame = torch.tensor(_FRAME, dtype=self.dtype, **kw)
        if not atoms.pbc.any():

            def energy_fn(x: torch.Tensor) -> torch.Tensor:
                return model((species, (x @ frame).unsqueeze(0))).energies[0] * HARTREE_TO_EV

            return energy_fn, pos
        # complete(): unit vectors in non-periodic directions, so the cell stays invertible.
        cell = torch.tensor(atoms.cell.complete().array, dtype=self.dtype, **kw) @ frame
        pbc = torch.tensor(atoms.pbc, dtype=torch.bool, **kw)

        def energy_fn_pbc(x: torch.Tensor) -> torch.Tensor:
            # torchani's periodic neighbour search needs atoms inside the cell; wrapping has unit Jacobian.
            xc = map2central(cell, (x @ frame).unsqueeze(0), pbc)
            return model((species, xc), cell=cell, pbc=pbc).energies[0] * HARTREE_TO_EV

        return energy_fn_pbc, pos

    def strain_energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        # cell and positions strained together: fractional coordinates, so the wrap into the cell, stay the same
        check_elements(atoms, self.elements, f"teacher {self.name}")
        species = torch.tensor([[self._index[s] for s in atoms.get_chemical_symbols()]], dtype=torch.long,
                               device=self.device)
        pos = torch.tensor(atoms.get_positions(), dtype=self.dtype, device=self.device)
        cell = torch.tensor(atoms.cell.array, dtype=self.dtype, device=self.device)
        pbc = torch.tensor(atoms.pbc, dtype=torch.bool, device=self.device)
        eye = torch.eye(3, dtype=self.dtype, device=self.device)
        frame = torch.tensor(_FRAME, dtype=self.dtype, device=self.device)  # as in energy_function
        model = self.model

        def strained_energy(eps: torch.Tensor) -> torch.Tensor:
            deformed = cell @ (eye + eps) @ frame
            xc = map2central(deformed, (pos @ (eye + eps) @ frame).unsqueeze(0), pbc)
            return model((species, xc), cell=deformed, pbc=pbc).energies[0] * HARTREE_TO_EV

        return strained_energy, torch.zeros(3, 3, dtype=self.dtype, device=self.device)
