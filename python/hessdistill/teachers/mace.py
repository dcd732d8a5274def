"""MACE teacher from a model file (mace-torch 0.3.x): MACE-OFF, MACE-MP-0 or any MACE energy model a user has.

The file is what mace-torch writes and ``MACECalculator(model_paths=...)`` reads: ``torch.save`` of the whole
module (``*.model``). The model is made a function of Cartesian positions with mace-torch's own graph builder
(``config_from_atoms`` -> ``AtomicData.from_config``, built once per structure): each call puts the positions
tensor into the graph and runs the model without its own force output, so autograd gives forces and Hessian rows.
The stress comes from mace-torch's symmetric strain ("displacement") of positions and cell, differentiated here.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

# `import mace` sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which turns off torch.load's weights-only safety for the
# whole process; it is put back as it was after the import. e3nn 0.4.4 reads its constants with a plain torch.load,
# which on torch >= 2.6 needs `slice` allowed; that is granted for the import only (older torch loads it anyway).
_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
_env_before = os.environ.get(_NO_WEIGHTS_ONLY)
_allow_slice = getattr(torch.serialization, "safe_globals", None)
try:
    with warnings.catch_warnings(), (_allow_slice([slice]) if _allow_slice else contextlib.nullcontext()):
        warnings.simplefilter("ignore")  # TorchScript annotation warnings while e3nn compiles its modules
        import e3nn.o3  # noqa: F401
        from mace import data as mace_data
        from mace.tools import torch_geometric, torch_tools
        from mace.tools.utils import AtomicNumberTable
finally:
    if _env_before is None:
        os.environ.pop(_NO_WEIGHTS_ONLY, None)
    else:
        os.environ[_NO_WEIGHTS_ONLY] = _env_before

from ..dtypes import parse_dtype
from ..errors import ConfigError, ModelFileError, StructureError, first_line
from ..structures import check_elements
from .base import AutogradTeacher, EnergyFn

# The keys MACECalculator reads from atoms.info / atoms.arrays (total charge and spin for models that embed them).
_INFO_KEYS = {"total_spin": "spin", "total_charge": "charge", "external_field": "external_field"}
_ARRAYS_KEYS = {"charges": "Qs"}


def load_mace_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The MACE module saved in ``path`` (``torch.save`` of the whole module, as mace-torch writes ``*.model``).

    The file is unpickled (``weights_only=False``), which runs code from it: load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"MACE model file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.load(str(path), map_location=device, weights_only=False)
    except Exception as exc:  # pickle, zip and torch errors all mean "not a readable model file"
        raise ModelFileError(f"cannot load {path} as a MACE model: {first_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "atomic_numbers") or not hasattr(model, "r_max"):
        found = type(model).__name__
        hint = " (a training checkpoint or state dict? save the module: torch.save(model, 'x.model'))" \
            if isinstance(model, dict) else ""
        raise ModelFileError(
            f"{path} holds a {found}, expected a MACE model module with atomic_numbers and r_max{hint}"
        )
    if not hasattr(model, "atomic_energies_fn"):
        raise ModelFileError(f"{path} holds a {type(model).__name__}, which predicts no energy; expected an energy "
                             "model such as MACE or ScaleShiftMACE")
    return model


class MACETeacher(AutogradTeacher):
    """A MACE model file as teacher: energy in eV, positions in Angstrom, stress in eV/A^3.

    Elements are those of the model's ``atomic_numbers``. Periodic, partly periodic and free structures work;
    the graph is fixed at the structure's positions (exact for derivatives there: MACE's radial cutoff is smooth).

    Parameters
    ----------
    path:
        The model file (e.g. ``MACE-OFF23_small.model``, ``mace-mp-0-medium.model`` or one of your own).
    dtype:
        ``"float64"`` (default; the model is converted, as ``MACECalculator(default_dtype="float64")`` does) or
        ``"float32"``.
    head:
        Head of a multi-head model; default the only head, else the one named "default" (as MACECalculator).
    hessian_mode, chunk_size, device:
        See ``AutogradTeacher``; "auto" is the row loop (measured faster than batched VJPs for MACE models).

    Example
    -------
    >>> from ase.build import molecule
    >>> teacher = MACETeacher("MACE-OFF23_small.model")
    >>> label = teacher.label(molecule("CH3CH2OH"))  # energy (eV), forces (eV/A), Hessian (eV/A^2)
    >>> teacher.stress(bulk_atoms)  # Voigt (xx, yy, zz, yz, xz, xy), eV/A^3, ASE's sign convention
    """

    name = "mace"
    # The row loop beats batched VJPs and vmap at real model sizes: "auto" always loops (docs/design/pt2.md)
    loop_above_atoms = 0
    has_stress = True

    def __init__(self, path: str | os.PathLike, dtype: str = "float64", head: str | None = None,
                 hessian_mode: str = "auto", chunk_size: int = 64, device: str | None = None):
        super().__init__(hessian_mode=hessian_mode, chunk_size=chunk_size, device=device)
        self.dtype = parse_dtype(dtype, "teacher mace dtype")
        self.path = Path(path)
        self.name = f"mace:{self.path.name}"
        self.spec = f"mace:{self.path.resolve()}"
        model = load_mace_model(self.path, self.device)
        model = model.to(self.device, self.dtype).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.r_max = float(model.r_max)
        self.z_table = AtomicNumberTable([int(z) for z in model.atomic_numbers])
        self.elements = frozenset(chemical_symbols[z] for z in self.z_table.zs)
        self.heads = list(getattr(model, "heads", None) or ["Default"])
        self.head = self._pick_head(head)

    def _pick_head(self, head: str | None) -> str:
        if head is not None:
            if head not in self.heads:
                raise ConfigError(f"teacher {self.name} has no head {head!r}; its heads: {', '.join(self.heads)}")
            return head
        if len(self.heads) == 1:
            return self.heads[0]
        default = [h for h in self.heads if h.lower() == "default"]
        if not default:
            raise ConfigError(f"teacher {self.name} has several heads ({', '.join(self.heads)}) and none is "
                              "'default'; choose one: load_teacher(spec, head=NAME)")
        return default[0]

    def _graph(self, atoms: Atoms) -> dict[str, torch.Tensor]:
        """mace-torch's input dict for one structure (a batch of one graph), on this teacher's device and dtype."""
        check_elements(atoms, self.elements, f"teacher {self.name}")
        keyspec = mace_data.KeySpecification(info_keys=dict(_INFO_KEYS), arrays_keys=dict(_ARRAYS_KEYS))
        with torch_tools.default_dtype(self.dtype):
            config = mace_data.config_from_atoms(atoms, key_specification=keyspec, head_name=self.head)
            graph = mace_data.AtomicData.from_config(config, z_table=self.z_table, cutoff=self.r_max,
                                                     heads=self.heads)
        batch = torch_geometric.Batch.from_data_list([graph]).to(self.device).to_dict()
        return {k: v.to(self.dtype) if torch.is_tensor(v) and v.is_floating_point() else v for k, v in batch.items()}

    def energy_function(self, atoms: Atoms) -> tuple[EnergyFn, torch.Tensor]:
        graph = self._graph(atoms)
        pos = graph["positions"].detach().clone()
        model = self.model

        def energy_fn(x: torch.Tensor) -> torch.Tensor:
            data = dict(graph)  # shallow: the model writes keys into its input, the shared tensors stay untouched
            data["positions"] = x
            return model(data, training=False, compute_force=False)["energy"].reshape(())

        return energy_fn, pos

    def stress(self, atoms: Atoms, voigt: bool = True) -> np.ndarray:
        """Stress (1/V) dE/d(strain) in eV/A^3, ASE's sign convention (positive under tension), for a periodic cell.

        Returns Voigt order (xx, yy, zz, yz, xz, xy) like ``atoms.get_stress()``, or the 3x3 tensor if not ``voigt``.
        """
        self.check(atoms)
        volume = abs(np.linalg.det(atoms.cell.array))
        if not atoms.pbc.all() or volume < 1e-6:
            raise StructureError(f"teacher {self.name}: stress needs a periodic cell in all three directions, got "
                                 f"pbc={atoms.pbc.tolist()} and volume {volume:.3g} A^3")
        data = self._graph(atoms)
        # mace-torch applies the symmetric part of "displacement" as a strain to positions and cell.
        strain = torch.zeros((1, 3, 3), dtype=self.dtype, device=self.device, requires_grad=True)
        data["displacement"] = strain
        with torch.enable_grad():
            energy = self.model(data, training=False, compute_force=False, compute_displacement=True)["energy"]
            grad = torch.autograd.grad(energy.sum(), strain)[0][0]
        s = grad.detach().cpu().double().numpy() / volume
        if not voigt:
            return s
        return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
