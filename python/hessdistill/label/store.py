"""The label store: teacher energy, forces and Hessian rows per structure, in HDF5.

Crash safety: HDF5 files have no journal, so a SIGKILL during a write can leave a file unreadable. Each finished
structure is therefore committed as its own small HDF5 file in ``<store>.parts/`` (written under a temporary name,
then renamed, which is atomic), and ``merge`` gathers the parts into the single store file ``<store>``. Resuming
skips every structure whose part exists. ``--shard i/n`` makes a process label only structures k with
k % n == i, so shards on several processes or jobs share the parts folder and never write the same file.
Several shards finishing together may each merge: every writer uses its own temporary file, renamed over the
store when complete, so the store is always one complete merge (the last rename wins; all are equal).

Layout of a part and of each ``/structures/NNNNNN`` group of the merged store: datasets ``numbers`` (N,),
``positions`` (N, 3) A, ``cell`` (3, 3) A, ``pbc`` (3,), ``forces`` (N, 3) eV/A, ``hessian_rows`` (R,) and
``hessian`` (R, 3N) eV/A^2, and for periodic cells of teachers with stress ``stress`` (6,) eV/A^3 (Voigt xx, yy,
zz, yz, xz, xy; ASE's sign, positive under tension); attributes ``energy`` (eV), ``split``, ``index``. Labelled
along random probes (``probes="random"``, :mod:`hessdistill.label.probes`) a structure stores ``probes`` (k, N, 3)
unit directions and ``hvp`` (k, N, 3) eV/A^2, the products H v, and no rows (``hessian_rows`` (0,)); so does a
structure labelled along the teacher's normal modes at a minimum (``probes="modes"``). A part records its
``teacher`` and ``hessian_probes`` (rows, random or modes; for modes ``probe_minimum``, the minimum's fingerprint)
as file attributes; the merged store records ``teacher``, ``hessian_probes`` and ``format``.
"""

from __future__ import annotations

import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
from ase import Atoms

from .. import __version__
from ..errors import InputError, LabelStoreError, first_line
from ..teachers.base import Label, Teacher
from .probes import check_probe_kind, choose_probes, minimum_modes, mode_probes

SPLITS = ("train", "val", "test")


@dataclass
class LabeledStructure:
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float
    forces: np.ndarray
    hessian_rows: np.ndarray
    hessian: np.ndarray
    split: str
    index: int
    stress: np.ndarray | None = None  # (6,) eV/A^3, Voigt; None where the teacher gave none (or not periodic)
    probes: np.ndarray | None = None  # (k, N, 3) unit probe directions; None: the rows are the probes
    hvp: np.ndarray | None = None  # (k, N, 3) eV/A^2, H v along each probe

    def atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)

    def probe_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(probes, H v), each (k, 3N): the stored probes, or for Cartesian rows their unit vectors and rows."""
        if self.probes is not None:
            return self.probes.reshape(len(self.probes), -1), self.hvp.reshape(len(self.hvp), -1)
        return np.eye(3 * len(self.numbers))[np.asarray(self.hessian_rows, dtype=np.int64)], self.hessian


def parts_dir(store: str | os.PathLike) -> Path:
    return Path(str(store) + ".parts")


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise InputError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from exc
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return i, n


def choose_rows(n_atoms: int, rows: str | int, index: int, seed: int = 0) -> np.ndarray:
    """Which Hessian rows to store: all 3N ('full'), or a seeded uniform subset of ``rows`` of them."""
    n3 = 3 * n_atoms
    if rows == "full" or rows is None:
        return np.arange(n3)
    k = int(rows)
    if not 0 < k <= n3:
        raise InputError(f"rows per structure must be in 1..3N = {n3}, got {k}")
    rng = np.random.default_rng([seed, index])
    return np.sort(rng.choice(n3, size=k, replace=False))


def _write_group(group: h5py.Group, atoms: Atoms, label: Label, split: str, index: int) -> None:
    group.create_dataset("numbers", data=atoms.numbers.astype(np.int64))
    group.create_dataset("positions", data=atoms.positions)
    group.create_dataset("cell", data=atoms.cell.array)
    group.create_dataset("pbc", data=atoms.pbc.astype(bool))
    group.create_dataset("forces", data=label.forces)
    rows = label.hessian_rows if label.hessian_rows is not None else np.zeros(0, dtype=np.int64)
    hess = label.hessian if label.hessian is not None else np.zeros((0, 3 * len(atoms)))
    group.create_dataset("hessian_rows", data=rows)
    group.create_dataset("hessian", data=hess, compression="gzip" if hess.size > 4096 else None)
    if label.probes is not None:
        group.create_dataset("probes", data=np.asarray(label.probes, dtype=np.float64))
        group.create_dataset("hvp", data=np.asarray(label.hvp, dtype=np.float64))
    if label.stress is not None:
        group.create_dataset("stress", data=np.asarray(label.stress, dtype=np.float64).reshape(6))
    group.attrs["energy"] = float(label.energy)
    group.attrs["split"] = split
    group.attrs["index"] = int(index)


def _read_group(group: h5py.Group) -> LabeledStructure:
    return LabeledStructure(
        numbers=group["numbers"][()],
        positions=group["positions"][()],
        cell=group["cell"][()],
        pbc=group["pbc"][()],
        energy=float(group.attrs["energy"]),
        forces=group["forces"][()],
        hessian_rows=group["hessian_rows"][()],
        hessian=group["hessian"][()],
        split=str(group.attrs["split"]),
        index=int(group.attrs["index"]),
        stress=group["stress"][()] if "stress" in group else None,
        probes=group["probes"][()] if "probes" in group else None,
        hvp=group["hvp"][()] if "hvp" in group else None,
    )


def _part_path(store, index: int) -> Path:
    return parts_dir(store) / f"{index:06d}.h5"


@contextmanager
def _atomic_h5(path: str | os.PathLike):
    """An HDF5 file open for writing under a name no other process uses, renamed to ``path`` once complete
    (removed on error): readers and concurrent writers only ever see complete files."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp"  # not mkstemp: its mode is 0600
    try:
        with h5py.File(tmp, "w-") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_part(path: Path) -> LabeledStructure | None:
    try:
        with h5py.File(path, "r") as f:
            return _read_group(f["structure"])
    except (OSError, KeyError):
        return None


def _part_attrs(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f.attrs[k] for k in ("teacher", "teacher_fingerprint", "structures_fingerprint", "n_structures",
                                        "hessian_probes", "probe_minimum") if k in f.attrs}


def label_structures(
    structures: Sequence[Atoms],
    teacher: Teacher,
    store: str | os.PathLike,
    rows: str | int = "full",
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    progress: bool = True,
    merge_when_done: bool = True,
    relabel: bool = False,
    probes: str = "rows",
    minimum: Atoms | None = None,
) -> dict:
    """Label this shard's structures into ``<store>.parts/``, skipping finished ones; merge when all are done.

    ``rows`` Hessian rows per structure ("full": 3N), or with ``probes="random"`` as many products H v along
    random probe directions, or with ``probes="modes"`` along the softest normal modes of the teacher at
    ``minimum`` (a relaxed structure of the same atoms; :mod:`hessdistill.label.probes`). Parts record the
    teacher, the structure set (:mod:`hessdistill.provenance`) and the probe kind (and minimum): finished parts of
    another teacher, set, kind or minimum are refused, or with ``relabel`` deleted first. Returns counts:
    {"labelled", "skipped", "total", "merged"}.
    """
    from ..progress import progress_bar
    from ..provenance import structures_fingerprint, teacher_fingerprint

    if len(structures) == 0:
        raise InputError("no structures to label (empty input)")
    check_probe_kind(probes)
    if (probes == "modes") != (minimum is not None):
        raise InputError("Hessian probes 'modes' need the minimum whose modes they are (and only they use one), got "
                         f"probes {probes!r} and {'a' if minimum is not None else 'no'} minimum")
    probe_attrs = {"hessian_probes": probes}
    if probes == "modes":
        teacher.check(minimum)
        modes = minimum_modes(minimum, teacher)
        probe_attrs["probe_minimum"] = structures_fingerprint([minimum])
    for k, atoms in enumerate(structures):  # a bad row count fails before any folder or label is made
        chosen = choose_rows(len(atoms), rows, k, seed)
        if probes == "modes":
            mode_probes(modes, minimum, atoms, len(chosen), k)
    pdir = parts_dir(store)
    if pdir.exists() and not pdir.is_dir():
        raise LabelStoreError(f"parts folder {pdir} exists and is not a directory")
    t_name, t_fp, s_fp = teacher.spec or teacher.name, teacher_fingerprint(teacher), structures_fingerprint(structures)
    if relabel and pdir.is_dir():
        for old in pdir.glob("[0-9]*.h5"):
            old.unlink()
    pdir.mkdir(parents=True, exist_ok=True)
    i_shard, n_shard = shard
    mine = [k for k in range(len(structures)) if k % n_shard == i_shard]
    todo, skipped = [], 0
    for k in mine:
        done = _part_path(store, k)
        if done.exists():
            part = _read_part(done)
            if part is not None:  # an unreadable part (killed mid-write by an old version) is labelled again
                _check_part(done, _part_attrs(done), t_name, t_fp, s_fp, probe_attrs, pdir)
                if part.positions.shape != structures[k].positions.shape or not np.allclose(
                    part.positions, structures[k].positions
                ):
                    raise LabelStoreError(
                        f"{done} holds a different structure than input #{k}: the parts folder {pdir} belongs to "
                        "another structure set; remove it, choose another store path, or pass --relabel"
                    )
                skipped += 1
                continue
        todo.append(k)
    with progress_bar(len(todo), f"label [{teacher.name}]", unit="struct", enabled=progress) as bar:
        for k in todo:
            atoms = structures[k]
            chosen = choose_rows(len(atoms), rows, k, seed)
            if probes == "rows":
                label = teacher.label(atoms, rows=chosen)
            elif probes == "random":
                label = teacher.label(atoms, probes=choose_probes(len(atoms), len(chosen), k, seed))
            else:
                label = teacher.label(atoms, probes=mode_probes(modes, minimum, atoms, len(chosen), k))
            split = str(atoms.info.get("split", "train"))
            with _atomic_h5(_part_path(store, k)) as f:
                _write_group(f.create_group("structure"), atoms, label, split, k)
                f.attrs.update({"teacher": t_name, "teacher_fingerprint": t_fp, "structures_fingerprint": s_fp,
                                "n_structures": len(structures), **probe_attrs})
            bar.update(1)
    merged = False
    if merge_when_done and all(_part_path(store, k).exists() for k in range(len(structures))):
        merge(store, len(structures), teacher_name=t_name)
        merged = True
    return {"labelled": len(todo), "skipped": skipped, "total": len(structures), "merged": merged}


def _check_part(path: Path, attrs: dict, t_name: str, t_fp: str, s_fp: str, probe_attrs: dict, pdir: Path
                ) -> None:
    """Refuse a finished part of another teacher, structure set or probe kind (parts of older versions record
    neither teacher nor set, and hold Cartesian rows)."""
    fix = f"pass --relabel to delete the parts in {pdir} and label again, or choose another store path"
    if "teacher_fingerprint" in attrs and str(attrs["teacher_fingerprint"]) != t_fp:
        raise LabelStoreError(f"{path} was labelled by teacher {attrs.get('teacher', '?')} (fingerprint "
                              f"{attrs['teacher_fingerprint']}), not by {t_name} ({t_fp}); {fix}")
    if "structures_fingerprint" in attrs and str(attrs["structures_fingerprint"]) != s_fp:
        raise LabelStoreError(f"{path} belongs to another structure set (fingerprint {attrs['structures_fingerprint']}"
                              f", this one is {s_fp}); {fix}")
    if str(attrs.get("hessian_probes", "rows")) != probe_attrs["hessian_probes"]:
        raise LabelStoreError(f"{path} holds Hessian probes of kind {attrs.get('hessian_probes', 'rows')}, not "
                              f"{probe_attrs['hessian_probes']}; {fix}")
    if str(attrs.get("probe_minimum", "")) != probe_attrs.get("probe_minimum", ""):
        raise LabelStoreError(f"{path} holds the normal modes of another minimum (fingerprint "
                              f"{attrs.get('probe_minimum')}, this one is {probe_attrs.get('probe_minimum')}); {fix}")


def merge(store: str | os.PathLike, n_structures: int | None = None, teacher_name: str = "") -> Path:
    """Gather the parts of ``store`` into the single HDF5 file ``store`` (atomically). All parts must exist, be
    readable and come from one teacher and one structure set; the set size is the one the parts record."""
    pdir = parts_dir(store)
    if not pdir.is_dir():
        raise LabelStoreError(f"no parts folder {pdir}: run `hessdistill label` first")
    if Path(store).is_dir():
        raise LabelStoreError(f"label store {store} is a directory; expected a file path")
    files = sorted(pdir.glob("[0-9]*.h5"))
    indices = [int(p.stem) for p in files if p.stem.isdigit()]
    attrs, corrupt = {}, []
    for k, p in zip(indices, files):
        try:
            attrs[k] = _part_attrs(p)
            if _read_part(p) is None:
                corrupt.append(k)
        except OSError:
            corrupt.append(k)
    if corrupt:
        raise LabelStoreError(f"cannot merge {store}: part(s) #{corrupt[:10]} unreadable (e.g. "
                              f"{_part_path(store, corrupt[0])}); run `hessdistill label` again to relabel them")
    recorded = {int(a["n_structures"]) for a in attrs.values() if "n_structures" in a}
    if len(recorded) > 1 or any(len({str(a.get(key)) for a in attrs.values() if key in a}) > 1
                                for key in ("teacher_fingerprint", "structures_fingerprint")) or len(
            {(str(a.get("hessian_probes", "rows")), str(a.get("probe_minimum", ""))) for a in attrs.values()}) > 1:
        raise LabelStoreError(f"cannot merge {store}: the parts in {pdir} come from different teachers, structure "
                              "sets or Hessian probe kinds; label again with --relabel")
    n = n_structures if n_structures is not None else (
        recorded.pop() if recorded else (max(indices) + 1 if indices else 0))
    missing = sorted(set(range(n)) - set(indices))
    if n == 0 or missing:
        raise LabelStoreError(
            f"cannot merge {store}: {len(missing)} of {n} structures not labelled yet (#{missing[:10]}); "
            "run the remaining shards"
        )
    first = attrs.get(0, {})
    with _atomic_h5(store) as out:
        out.attrs.update(
            {"format": "hessdistill-labels-1", "version": __version__, "energy_unit": "eV", "length_unit": "A",
             "n_structures": n, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        )
        for key in ("teacher_fingerprint", "structures_fingerprint"):
            if key in first:
                out.attrs[key] = str(first[key])
        out.attrs["hessian_probes"] = str(first.get("hessian_probes", "rows"))
        grp = out.create_group("structures")
        for k in range(n):
            with h5py.File(_part_path(store, k), "r") as f:
                f.copy(f["structure"], grp, name=f"{k:06d}")
                teacher_name = teacher_name or str(f.attrs["teacher"])
        out.attrs["teacher"] = teacher_name
    return Path(store)


def write_store(items: Sequence[LabeledStructure], store: str | os.PathLike, teacher_name: str = "") -> Path:
    """Write labelled structures (e.g. two stores' ``load_labels`` joined) as one merged store, atomically;
    they are renumbered in the given order."""
    if not items:
        raise InputError("no labelled structures to write")
    Path(store).parent.mkdir(parents=True, exist_ok=True)
    with _atomic_h5(store) as out:
        out.attrs.update(
            {"format": "hessdistill-labels-1", "version": __version__, "energy_unit": "eV", "length_unit": "A",
             "n_structures": len(items), "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "teacher": teacher_name}
        )
        grp = out.create_group("structures")
        for k, it in enumerate(items):
            label = Label(it.energy, it.forces, it.hessian_rows, it.hessian, it.stress, it.probes, it.hvp)
            _write_group(grp.create_group(f"{k:06d}"), it.atoms(), label, it.split, k)
    return Path(store)


def load_labels(store: str | os.PathLike) -> list[LabeledStructure]:
    """All structures of a merged store, in index order."""
    path = Path(store)
    if path.is_dir():
        raise LabelStoreError(f"label store {path} is a directory; expected a file")
    if not path.is_file():
        hint = " (labelling unfinished? run `hessdistill merge`)" if parts_dir(path).is_dir() else ""
        raise LabelStoreError(f"label store {path} does not exist{hint}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != "hessdistill-labels-1":
                raise LabelStoreError(f"{path} is not a hessdistill label store")
            items = [_read_group(f["structures"][k]) for k in sorted(f["structures"])]
    except (OSError, KeyError) as exc:
        raise LabelStoreError(f"cannot read label store {path}: {first_line(exc)}") from exc
    if not items:
        raise LabelStoreError(f"label store {path} holds no structures")
    return items


def store_teacher(store: str | os.PathLike) -> str:
    """The name of the teacher that labelled a merged store ('' when the store records none)."""
    try:
        with h5py.File(store, "r") as f:
            return str(f.attrs.get("teacher", ""))
    except OSError as exc:
        raise LabelStoreError(f"cannot read label store {store}: {first_line(exc)}") from exc
