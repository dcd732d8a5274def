"""Structures in and out: a starting structure from a name or file, ase.io files read and checked, extxyz
written with the split kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ase import Atoms
from ase.io import read, write

from ..errors import InputError, first_line
from ..paths import atomic_path, check_input_file
from ..structures import check_structure


def starting_structure(spec: str) -> Atoms:
    """A structure from a file path (its last frame), an ase g2 molecule name (``ethanol``), or ``bulk:Si`` /
    ``bulk:Si:2`` (diamond Si, cubic cell repeated 2x2x2); checked like every structure input
    (:func:`read_structures`, :func:`hessdistill.structures.check_structure`)."""
    if os.path.exists(spec):
        return read_structures(spec)[-1]
    if spec.startswith("bulk:"):
        return _bulk(spec)
    from ase.build import molecule
    from ase.collections import g2

    if spec in g2.names:
        atoms = molecule(spec)
        atoms.center(vacuum=5.0)
        atoms.pbc = False
        return atoms
    raise InputError(f"starting structure {spec!r} is neither a file, an ase g2 molecule name, nor bulk:ELEMENT")


def _bulk(spec: str) -> Atoms:
    from ase.build import bulk

    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise InputError(f"bulk structure must be bulk:ELEMENT or bulk:ELEMENT:REPEAT, got {spec!r}")
    try:
        atoms = bulk(parts[1], cubic=True)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"{spec}: ase knows no reference crystal for {parts[1]!r} ({first_line(exc)}); give a "
                         "structure file instead") from exc
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise InputError(f"{spec}: REPEAT must be a whole number >= 1, got {parts[2]!r}")
        atoms = atoms.repeat(int(parts[2]))
    check_structure(atoms)
    return atoms


def read_structures(path: str | os.PathLike) -> list[Atoms]:
    """All frames of an ase.io-readable file, checked: the one reader of structure files of every command."""
    check_input_file(path, "structure file")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path} holds no structures (empty file)")
    try:
        frames = read(path, index=":")
    except Exception as exc:
        raise InputError(f"cannot read structures from {path}: {first_line(exc, named=True)}") from exc
    if not frames:
        raise InputError(f"{path} holds no structures")
    for k, a in enumerate(frames):
        try:
            check_structure(a)
        except InputError as exc:
            raise type(exc)(f"{path} frame {k}: {exc}") from exc
    return frames


def write_structures(structures: Sequence[Atoms], path: str | os.PathLike) -> None:
    """Write extxyz (keeps ``split`` in the info line), atomically."""
    clean = []
    for a in structures:
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        b.info["split"] = a.info.get("split", "train")
        clean.append(b)
    with atomic_path(path) as tmp:
        write(tmp, clean, format="extxyz")
