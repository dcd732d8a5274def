"""Build the specialized structure set: teacher MD (ASE Langevin, at one or several temperatures), normal-mode
sampling around the teacher's minimum (:mod:`hessdistill.modes`) and/or rattling around a starting structure, or
user structures read with ase.io; optionally strained cells (so a periodic student learns the teacher's equation of
state, not one volume); then a seeded train/validation/test split stored in ``atoms.info["split"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units
from ase.io import read, write

from .errors import InputError
from .structures import check_structure


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


def rattled(atoms: Atoms, n: int, stdev: float, seed: int) -> list[Atoms]:
    """``n`` copies with Gaussian displacements of ``stdev`` A (seeded)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = atoms.copy()
        a.positions += rng.normal(scale=stdev, size=a.positions.shape)
        out.append(a)
    return out


def share_out(n: int, parts: int) -> list[int]:
    """``n`` items shared out over ``parts`` as evenly as possible, the first parts taking the remainder."""
    return [n // parts + (1 if k < n % parts else 0) for k in range(parts)]


def strained(structures: Sequence[Atoms], strain: float, seed: int) -> list[Atoms]:
    """Copies of periodic ``structures``, each with its cell and atoms deformed by its own random strain (seeded).

    The strain is ``u * I + shear``: an isotropic linear strain u uniform in [-strain, strain] (volume change about
    3u) plus a symmetric traceless shear with components uniform in [-strain/4, strain/4]; positions move with the
    cell (fractional coordinates kept).

    Example
    -------
    >>> cells = strained(rattled(bulk("Si", cubic=True), 20, 0.05, seed=0), 0.01, seed=0)  # +-3% in volume
    """
    if not (np.isfinite(strain) and 0 < strain < 0.5):
        raise InputError(f"strain must be a linear strain in (0, 0.5), e.g. 0.01 for about +-3% in volume; "
                         f"got {strain}")
    rng = np.random.default_rng([seed, 2])  # its own stream: the same seed's rattling stays as it was
    out = []
    for atoms in structures:
        if not atoms.pbc.all():
            raise InputError(f"straining needs cells periodic in all three directions, got pbc={atoms.pbc.tolist()} "
                             f"for {atoms.get_chemical_formula()}")
        shear = rng.uniform(-strain / 4, strain / 4, size=(3, 3))
        shear = 0.5 * (shear + shear.T)
        shear -= np.trace(shear) / 3 * np.eye(3)
        eps = rng.uniform(-strain, strain) * np.eye(3) + shear
        a = atoms.copy()
        a.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
        out.append(a)
    return out


def teacher_md(
    atoms: Atoms, calculator, n: int, temperature: float, interval: int = 10, timestep_fs: float = 0.5,
    friction: float = 0.02, equilibration: int = 100, seed: int = 0, progress: bool = True,
) -> list[Atoms]:
    """``n`` snapshots every ``interval`` steps of Langevin MD at ``temperature`` K driven by the teacher."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from .progress import progress_bar

    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature, rng=rng)
    # fixcm=False: ASE's fixed-centre-of-mass Langevin does not sample NVT exactly (and is deprecated)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=friction, rng=rng, fixcm=False)
    snaps: list[Atoms] = []
    bar = progress_bar(equilibration + n * interval, "teacher MD", unit="step", enabled=progress)
    dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)  # observers also run before step 1
    dyn.run(equilibration)
    for _ in range(n):
        dyn.run(interval)
        snap = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.copy(), pbc=atoms.pbc.copy())
        check_structure(snap)  # an exploding teacher run should stop here, not poison the data set
        snaps.append(snap)
    bar.close()
    return snaps


def split(structures: Sequence[Atoms], fractions=(0.8, 0.1, 0.1), seed: int = 0) -> list[Atoms]:
    """Assign train/val/test at random (seeded) in the given fractions; returns the structures in input order."""
    n = len(structures)
    if n < 3:
        raise InputError(f"need at least 3 structures for a train/val/test split, got {n}")
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise InputError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(f[1] * n)))
    n_test = max(1, int(round(f[2] * n)))
    labels = np.array(["train"] * n, dtype=object)
    labels[order[:n_val]] = "val"
    labels[order[n_val : n_val + n_test]] = "test"
    for atoms, lab in zip(structures, labels):
        atoms.info["split"] = str(lab)
    return list(structures)


def read_structures(path: str | os.PathLike) -> list[Atoms]:
    """All frames of an ase.io-readable file, checked."""
    if not Path(path).exists():
        raise InputError(f"structure file {path} does not exist")
    if Path(path).stat().st_size == 0:
        raise InputError(f"{path} holds no structures (empty file)")
    try:
        frames = read(path, index=":")
    except Exception as exc:
        raise InputError(f"cannot read structures from {path}: {exc}") from None
    if not frames:
        raise InputError(f"{path} holds no structures")
    for k, a in enumerate(frames):
        try:
            check_structure(a)
        except InputError as exc:
            raise type(exc)(f"{path} frame {k}: {exc}") from None
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
