"""Student file formats: export a trained student and load it back (the one loader every engine goes through).

Two formats with the same metadata and the same :meth:`evaluate` (:mod:`.evaluate`):

- TorchScript (``.pt``, :mod:`.torchscript`): portable, runs on any machine and device; OpenMM's TorchForce
  takes only this.
- AOTInductor package (``.pt2``, :mod:`.pt2`): energy, forces and virial compiled into machine code for one
  machine kind, device and torch version; several times faster.

A third format is written for other programs only: a metatomic ``AtomisticModel`` (:mod:`.metatomic`), which
metatomic's engines run (ASE through metatomic-ase, i-PI, PLUMED, LAMMPS-metatomic builds); hessdistill's own
engines do not load it.

:func:`load_student` picks the loader from the file's content.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from ..errors import ModelFileError
from .evaluate import INPUTS, OUTPUTS, StudentOutputs, student_outputs  # noqa: F401
from .torchscript import DTYPES, FORMAT, METADATA_KEYS, StudentFile, export_student  # noqa: F401

FORMATS = ("torchscript", "pt2", "metatomic")

__all__ = ["DTYPES", "FORMAT", "FORMATS", "METADATA_KEYS", "StudentFile", "StudentOutputs", "export_student",
           "file_format", "load_student", "read_metadata", "save_student", "student_outputs"]


def file_format(path: str | os.PathLike) -> str:
    """``pt2`` for an AOTInductor package, ``metatomic`` for a metatomic model, else ``torchscript`` (by content;
    a missing file by its suffix)."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return "pt2" if path.suffix == ".pt2" else "torchscript"
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        root = names[0].split("/")[0] if names else ""
        if f"{root}/archive_format" in names and z.read(f"{root}/archive_format") == b"pt2":
            return "pt2"
        return "metatomic" if f"{root}/extra/metatomic-version" in names else "torchscript"


def load_student(path: str | os.PathLike, device=None):
    """The student in ``path``, TorchScript or .pt2: a :class:`StudentFile` or :class:`.pt2.Pt2StudentFile`."""
    kind = file_format(path)
    if kind == "metatomic":
        raise ModelFileError(f"{path} is a metatomic model: run it with metatomic's engines (ASE: "
                             f"metatomic_ase.MetatomicCalculator), or export the run as torchscript or pt2")
    if kind == "pt2":
        from .pt2 import Pt2StudentFile

        return Pt2StudentFile(path, device=device)
    return StudentFile(path, device=device)


def read_metadata(path: str | os.PathLike) -> dict:
    """Metadata of a student file of any format, without keeping the model (a .pt2 or metatomic file is not even
    loaded)."""
    if file_format(path) == "metatomic":
        from .metatomic import read_metatomic_metadata

        return read_metatomic_metadata(path)
    if file_format(path) == "pt2":
        from .pt2 import read_pt2_metadata

        return read_pt2_metadata(path)
    from .torchscript import read_metadata as read_torchscript_metadata

    return read_torchscript_metadata(path)


def save_student(model, path: str | os.PathLike, dtype: str = "float64", teacher: str = "",
                 format: str | None = None, device: str = "cpu") -> Path:
    """Export ``model`` to ``path`` as ``format`` (one of :data:`FORMATS`; default: ``pt2`` for a ``.pt2`` suffix,
    else ``torchscript``). ``device`` matters only for pt2 (the device the package is compiled for)."""
    format = format or ("pt2" if Path(path).suffix == ".pt2" else "torchscript")
    if format == "torchscript":
        return export_student(model, path, dtype=dtype, teacher=teacher)
    if format == "pt2":
        from .pt2 import export_pt2

        return export_pt2(model, path, dtype=dtype, teacher=teacher, device=device)
    if format == "metatomic":
        from .metatomic import export_metatomic

        return export_metatomic(model, path, dtype=dtype, teacher=teacher)
    raise ModelFileError(f"student file format must be one of {', '.join(FORMATS)}, got {format!r}")
