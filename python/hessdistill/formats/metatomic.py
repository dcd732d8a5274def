"""The metatomic format: a student as a metatomic ``AtomisticModel`` (one TorchScript file for many engines).

A metatomic model runs unchanged in ASE (``metatomic-ase``), i-PI, PLUMED, torch-sim, eOn and the metatomic
LAMMPS build. The engine hands the model ``System`` objects (atomic numbers, positions, cell, pbc) with the
neighbour list the model asked for, and takes forces and stress by autograd through positions and cell.

:class:`MetatomicStudent` is the adapter: it asks for a full, strict neighbour list at the student's cutoff,
turns metatomic's pair list (samples ``first_atom, second_atom, cell_shift_a/b/c``; distance vector
``x[second] - x[first] + shift . cell``) into the student's graph (edge from centre ``first`` to neighbour
``second``, ``shifts = cell_shift . cell``: the same vector), and returns the ``energy`` output, per structure or
per atom, restricted to ``selected_atoms`` when the engine gives them (domain decomposition: ghost atoms feed
their neighbours but their own energies do not count). Edge vectors are recomputed from ``system.positions`` and
``system.cell`` rather than read from the list, so gradients reach both (forces and stress) whatever the engine
did to register the list with autograd.

The file also carries hessdistill's own metadata (``torchscript.METADATA_KEYS``) in the model metadata's
``extra`` field: :func:`read_metatomic_metadata` reads it back.

Requires ``metatomic-torch`` (see requirements.txt); :func:`export_metatomic` says so when it is missing.
"""

# no ``from __future__ import annotations``: AtomisticModel checks forward's annotations as real types
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..dtypes import parse_dtype
from ..errors import EngineError, ModelFileError, first_line
from ..paths import atomic_path
from ..students import StudentBase
from .torchscript import _clone, base_metadata

try:
    from metatensor.torch import Labels, TensorBlock, TensorMap
    from metatomic.torch import (AtomisticModel, ModelCapabilities, ModelMetadata, ModelOutput,
                                 NeighborListOptions, System)
except ImportError as exc:  # optional dependency: only this format needs it
    _IMPORT_ERROR: Optional[ImportError] = exc
else:
    _IMPORT_ERROR = None

REFERENCES = {
    "painn": ["Schutt, Unke, Gastegger, Equivariant message passing for the prediction of tensorial properties "
              "and molecular spectra, ICML 2021, arXiv:2102.03150"],
    "schnet": ["Schutt et al., SchNet - a deep learning architecture for molecules and materials, "
               "J. Chem. Phys. 148, 241722 (2018)"],
}


def require_metatomic() -> None:
    """Raise EngineError with the install line when metatomic-torch cannot be imported."""
    if _IMPORT_ERROR is not None:
        raise EngineError(f"the metatomic format needs metatomic-torch (pip install metatomic-torch==0.1.19): "
                          f"{_IMPORT_ERROR}")


if _IMPORT_ERROR is None:

    class MetatomicStudent(torch.nn.Module):
        """A student behind metatomic's model interface: ``forward(systems, outputs, selected_atoms)``."""

        def __init__(self, student: StudentBase):
            super().__init__()
            self.student = student
            numbers = torch.tensor(student.atomic_numbers, dtype=torch.long)
            # atomic number -> type index; -1 never reaches the student: AtomisticModel rejects unknown types
            table = torch.full((int(numbers.max()) + 1,), -1, dtype=torch.long)
            table[numbers] = torch.arange(len(numbers))
            self.register_buffer("type_index", table)
            self.neighbors = NeighborListOptions(cutoff=float(student.cutoff), full_list=True, strict=True,
                                                 requestor="hessdistill")

        def requested_neighbor_lists(self) -> List[NeighborListOptions]:
            return [self.neighbors]

        def forward(self, systems: List[System], outputs: Dict[str, ModelOutput],
                    selected_atoms: Optional[Labels]) -> Dict[str, TensorMap]:
            results: Dict[str, TensorMap] = {}
            if "energy" not in outputs or len(systems) == 0:
                return results
            device = systems[0].positions.device
            positions: List[torch.Tensor] = []
            species: List[torch.Tensor] = []
            edges: List[torch.Tensor] = []
            shifts: List[torch.Tensor] = []
            sample_system: List[torch.Tensor] = []
            first = torch.zeros(len(systems) + 1, dtype=torch.long, device=device)  # first node of each system
            for s, system in enumerate(systems):
                n = len(system)
                pairs = system.get_neighbor_list(self.neighbors).samples.values
                positions.append(system.positions)
                species.append(self.type_index.index_select(0, system.types.to(torch.long)))
                edges.append(pairs[:, 0:2].t().to(torch.long) + first[s])
                shifts.append(pairs[:, 2:5].to(system.positions.dtype) @ system.cell)
                sample_system.append(torch.full((n,), s, dtype=torch.int32, device=device))
                first[s + 1] = first[s] + n
            energies = self.student(torch.cat(positions), torch.cat(species), torch.cat(edges, dim=1),
                                    torch.cat(shifts))
            system_of = torch.cat(sample_system)
            atom_of = torch.arange(energies.shape[0], dtype=torch.int32, device=device) \
                - first.index_select(0, system_of.to(torch.long)).to(torch.int32)
            if selected_atoms is None:
                samples = torch.stack([system_of, atom_of], dim=1)
            else:
                samples = selected_atoms.values.to(device=device, dtype=torch.int32)
                node = first.index_select(0, samples[:, 0].to(torch.long)) + samples[:, 1].to(torch.long)
                energies = energies.index_select(0, node)
            if outputs["energy"].sample_kind == "atom":
                values = energies.unsqueeze(1)
                labels = Labels(["system", "atom"], samples)
            else:
                values = torch.zeros(len(systems), 1, dtype=energies.dtype, device=device)
                values = values.index_add(0, samples[:, 0].to(torch.long), energies.unsqueeze(1))
                labels = Labels(["system"], torch.arange(len(systems), dtype=torch.int32, device=device)
                                .unsqueeze(1))
            block = TensorBlock(values=values, samples=labels, components=[],
                                properties=Labels(["energy"], torch.zeros(1, 1, dtype=torch.int32, device=device)))
            results["energy"] = TensorMap(Labels(["_"], torch.zeros(1, 1, dtype=torch.int32, device=device)),
                                          [block])
            return results


def atomistic_model(model: StudentBase, dtype: str = "float64", teacher: str = ""):
    """``model`` (in ``dtype``) wrapped as a metatomic ``AtomisticModel``, ready to ``save``."""
    require_metatomic()
    torch_dtype = parse_dtype(dtype, "export dtype")
    dtype = str(torch_dtype).replace("torch.", "")
    student = _clone(model).to(torch_dtype).eval()
    wrapper = MetatomicStudent(student).eval()
    metadata = base_metadata(student, dtype, teacher)
    capabilities = ModelCapabilities(
        outputs={"energy": ModelOutput(unit="eV", sample_kind="atom", explicit_gradients=[])},
        atomic_types=list(student.atomic_numbers),
        interaction_range=float(student.cutoff * student.num_interactions),
        length_unit="angstrom",
        supported_devices=["cuda", "cpu"],  # order of preference: cuda where there is one
        dtype=dtype,
    )
    description = (f"hessdistill {student.architecture} student ({', '.join(student.type_names)}; cutoff "
                   f"{student.cutoff:g} A, {student.num_interactions} interactions)"
                   + (f" distilled from {teacher}" if teacher else ""))
    info = ModelMetadata(name=f"hessdistill-{student.architecture}", description=description,
                         references={"architecture": REFERENCES.get(student.architecture, [])},
                         extra=metadata)
    return AtomisticModel(wrapper, info, capabilities)


def export_metatomic(model: StudentBase, path: str | os.PathLike, dtype: str = "float64", teacher: str = "",
                     collect_extensions: str | os.PathLike | None = None) -> Path:
    """Write ``model`` to ``path`` as a metatomic model (atomically).

    The student needs no TorchScript extension beyond metatomic's own; ``collect_extensions`` (a folder) is passed
    to ``AtomisticModel.save`` for callers that load others in the same process and want them shipped.
    """
    am = atomistic_model(model, dtype=dtype, teacher=teacher)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        am.save(str(tmp), collect_extensions=None if collect_extensions is None else str(collect_extensions))
    return path


def read_metatomic_metadata(path: str | os.PathLike) -> dict:
    """hessdistill's metadata (``torchscript.METADATA_KEYS``) of a metatomic student file, without loading it."""
    require_metatomic()
    from metatomic.torch import read_model_metadata

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"student file {path} does not exist")
    try:
        return dict(read_model_metadata(str(path)).extra)
    except Exception as exc:  # metatomic raises RuntimeErrors for files that are not its models
        raise ModelFileError(f"cannot read {path} as a metatomic model: {first_line(exc)}") from exc
