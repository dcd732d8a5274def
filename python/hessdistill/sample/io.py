"""Structures in and out: a starting structure from a name or file, ase.io files read and checked, extxyz
written with the split kept.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ase import Atoms
from ase.io import read, write

from ..errors import InputError
from ..structures import check_structure


def starting_structure(spec: str) -> Atoms:
    """A structure from a file path, an ase g2 molecule name (``ethanol``), or ``bulk:Si`` / ``bulk:Si:2``
    (diamond Si, cubic cell repeated 2x2x2)."""
    if os.path.exists(spec):
        return read(spec)
    if spec.startswith("bulk:"):
        from ase.build import bulk

        parts = spec.split(":")
        atoms = bulk(parts[1], cubic=True)
        if len(parts) > 2:
            atoms = atoms.repeat(int(parts[2]))
        return atoms
    from ase.build import molecule
    from ase.collections import g2

    if spec in g2.names:
        atoms = molecule(spec)
        atoms.center(vacuum=5.0)
        atoms.pbc = False
        return atoms
    raise InputError(f"starting structure {spec!r} is neither a file, an ase g2 molecule name, nor bulk:ELEMENT")


def read_structures(path: str | os.PathLike) -> list[Atoms]:
    """All frames of an ase.io-readable file, checked."""
    if not Path(path).exists():
        raise InputError(f"structure file {path} does not exist")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path} holds no structures (empty file)")
    try:
        frames = read(path, index=":")
    except Exception as exc:
        raise InputError(f"cannot read structures from {path}: {exc}") from exc
    if not frames:
        raise InputError(f"{path} holds no structures")
    for k, a in enumerate(frames):
        try:
            check_structure(a)
        except InputError as exc:
            raise type(exc)(f"{path} frame {k}: {exc}") from exc
    return frames


def write_structures(structures: Sequence[Atoms], path: str | os.PathLike) -> None:
    """Write extxyz (keeps ``split`` in the info line)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    clean = []
    for a in structures:
        b = Atoms(a.numbers, a.positions, cell=a.cell, pbc=a.pbc)
        b.info["split"] = a.info.get("split", "train")
        clean.append(b)
    write(path, clean, format="extxyz")
