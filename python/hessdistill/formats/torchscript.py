"""The student file: one TorchScript archive that every engine loads (ASE calculator, OpenMM, LAMMPS).

The archive holds the scripted student (see ``students.common`` for its forward contract) and its metadata as
plain-text extra files, one value per key, so C++ reads them with ``torch::jit::load(path, device, extra_files)``
without a JSON parser:

=====================  ===========================================================================
key                    value
=====================  ===========================================================================
``format``             ``hessdistill-student-1``
``hessdistill_version`` package version that wrote the file
``architecture``       ``painn``, ``schnet`` or ``tensornet``
``cutoff``             radial cutoff, in ``length_unit``
``num_interactions``   message-passing layers
``interaction_range``  num_interactions x cutoff: how far an atom's energy depends on other atoms
``type_names``         element symbols, space separated, in type-index order (``species`` input)
``atomic_numbers``     the matching atomic numbers, space separated
``energy_unit``        ``eV``
``length_unit``        ``A`` (Angstrom)
``dtype``              ``float32`` or ``float64``: the dtype positions must be given in
``teacher``            the teacher the student was distilled from (informational)
=====================  ===========================================================================
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from .. import __version__
from ..devices import resolve_device
from ..dtypes import DTYPES, parse_dtype
from ..errors import ModelFileError, first_line
from ..paths import atomic_path
from ..students import StudentBase
from .evaluate import StudentOutputs, student_outputs

FORMAT = "hessdistill-student-1"
METADATA_KEYS = (
    "format",
    "hessdistill_version",
    "architecture",
    "cutoff",
    "num_interactions",
    "interaction_range",
    "type_names",
    "atomic_numbers",
    "energy_unit",
    "length_unit",
    "dtype",
    "teacher",
)


def export_student(model: StudentBase, path: str | os.PathLike, dtype: str = "float64", teacher: str = "") -> Path:
    """Script ``model`` in ``dtype`` and write it with its metadata to ``path`` (atomically)."""
    torch_dtype = parse_dtype(dtype, "export dtype")
    dtype = str(torch_dtype).replace("torch.", "")
    model = _clone(model).to(torch_dtype).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    scripted = torch.jit.script(model)
    metadata = base_metadata(model, dtype, teacher)
    path = Path(path)
    with atomic_path(path) as tmp:  # no partial file and no stray temporary file on failure
        torch.jit.save(scripted, str(tmp), _extra_files=metadata)
    return path


def base_metadata(model: StudentBase, dtype: str, teacher: str) -> dict:
    """The metadata every student file format carries (:data:`METADATA_KEYS`), as strings."""
    return {
        "format": FORMAT,
        "hessdistill_version": __version__,
        "architecture": model.architecture,
        "cutoff": repr(model.cutoff),
        "num_interactions": str(model.num_interactions),
        "interaction_range": repr(model.cutoff * model.num_interactions),
        "type_names": " ".join(model.type_names),
        "atomic_numbers": " ".join(str(z) for z in model.atomic_numbers),
        "energy_unit": "eV",
        "length_unit": "A",
        "dtype": dtype,
        "teacher": teacher,
    }


def _clone(model: StudentBase) -> StudentBase:
    """A copy of ``model`` in its own dtype: built in the default dtype and loaded, a float64 student's weights
    would be rounded to float32 on the way."""
    from ..students import build_student

    state = model.state_dict()
    dtype = next(v.dtype for v in state.values() if v.is_floating_point())
    copy = build_student(model.architecture, **model.hyperparameters()).to(dtype)
    copy.load_state_dict(state)
    return copy


class StudentFile:
    """A loaded student file: ``module`` (TorchScript), parsed ``metadata`` and convenience accessors."""

    format = "torchscript"

    def __init__(self, path: str | os.PathLike, device: str | torch.device | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"student file {self.path} does not exist")
        if not zipfile.is_zipfile(self.path):
            raise ModelFileError(f"{self.path} is not a TorchScript archive (not a zip file)")
        self.device = resolve_device(device)
        extra = dict.fromkeys(METADATA_KEYS, "")
        try:
            self.module = torch.jit.load(str(self.path), map_location=self.device, _extra_files=extra)
        except Exception as exc:  # torch raises bare RuntimeErrors of many kinds for bad archives
            raise ModelFileError(f"cannot load {self.path} as TorchScript: {first_line(exc)}") from exc
        extra = {k: v.decode() if isinstance(v, bytes) else v for k, v in extra.items()}
        if extra["format"] != FORMAT:
            raise ModelFileError(
                f"{self.path} is not a hessdistill student file (format {extra['format']!r}, expected {FORMAT!r})"
            )
        self.metadata = extra
        self.cutoff = float(extra["cutoff"])
        self.num_interactions = int(extra["num_interactions"])
        self.type_names = extra["type_names"].split()
        self.atomic_numbers = [int(z) for z in extra["atomic_numbers"].split()]
        if extra["dtype"] not in DTYPES:
            raise ModelFileError(f"{self.path}: metadata dtype {extra['dtype']!r} is not one of {', '.join(DTYPES)}")
        self.dtype = DTYPES[extra["dtype"]]

    def species(self, symbols) -> torch.Tensor:
        """Type indices for element symbols; raises UnsupportedElementError for elements not covered."""
        return _species(self, symbols)

    def evaluate(self, positions: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                 shifts: torch.Tensor, local: torch.Tensor | None = None) -> StudentOutputs:
        """Energy, per-atom energies, forces, shift forces and virial by autograd (:mod:`.evaluate`)."""
        return student_outputs(self.module, positions, species, edge_index, shifts, local)


def _species(sf, symbols) -> torch.Tensor:
    """Type indices of a loaded student (either format) for element symbols; UnsupportedElementError otherwise."""
    from ..structures import check_elements

    symbols = list(symbols)
    check_elements(symbols, sf.type_names, f"student {sf.path.name}")
    index = {s: k for k, s in enumerate(sf.type_names)}
    return torch.tensor([index[s] for s in symbols], dtype=torch.long, device=sf.device)


def read_metadata(path: str | os.PathLike) -> dict:
    """Metadata of a student file, without keeping the model."""
    return StudentFile(path, device="cpu").metadata
