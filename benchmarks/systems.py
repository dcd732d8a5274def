"""The benchmark systems (ethanol with ANI-1x, Si with SevenNet-0) and their labelled data sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ase import Atoms

from timing import clock  # CPU seconds, as every timing

SYSTEMS = {
    # name: teacher, starting structure of the data, structure for speed/MD, student cutoff (A)
    "ethanol": {"teacher": "ani1x", "data_start": "CH3CH2OH", "md_structure": "CH3CH2OH", "cutoff": 4.0},
    "si": {"teacher": "sevennet0", "data_start": "bulk:Si", "md_structure": "bulk:Si:2", "cutoff": 5.0},
}


@dataclass
class Dataset:
    system: str
    teacher_name: str
    labels: Path
    md_structure: Atoms
    cutoff: float
    counts: dict
    rows: str | int
    seconds: dict

    def summary(self) -> dict:
        return {"teacher": self.teacher_name, "structures": self.counts, "hessian_rows_stored": self.rows,
                "md_structure_atoms": len(self.md_structure), "seconds": self.seconds, "labels": str(self.labels)}


_TEACHERS: dict = {}


def teacher(name: str):
    """One loaded teacher per name for the whole run (loading SevenNet-0 takes seconds)."""
    from hessdistill.teachers import load_teacher

    if name not in _TEACHERS:
        _TEACHERS[name] = load_teacher(name)
    return _TEACHERS[name]


def silicon(cells: int, rattle: float = 0.05, seed: int | None = None) -> Atoms:
    """Diamond Si, ``cells``^3 cubic cells of 8 atoms, rattled by ``rattle`` A (seed: ``cells`` unless given); the
    engine benchmarks' structure."""
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(cells)
    atoms.rattle(rattle, seed=cells if seed is None else seed)
    return atoms


def md_structure(system: str) -> Atoms:
    from hessdistill.sample import starting_structure

    atoms = starting_structure(SYSTEMS[system]["md_structure"])
    if atoms.pbc.all():
        atoms.rattle(0.02, seed=7)  # off the perfect lattice, where forces vanish by symmetry
    return atoms


def build(system: str, size, workdir: Path) -> Dataset:
    """Sample, split and label one system's structures into ``workdir/<system>/labels.h5`` (resumable)."""
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, split, starting_structure, teacher_md

    spec = SYSTEMS[system]
    folder = Path(workdir) / system
    folder.mkdir(parents=True, exist_ok=True)
    t = teacher(spec["teacher"])
    start = starting_structure(spec["data_start"])
    counts = size.ethanol_counts if system == "ethanol" else size.si_counts
    n = sum(counts)
    t0 = clock()
    if system == "ethanol":
        structures = teacher_md(start, t.as_calculator(), n, 600.0, interval=size.ethanol_interval, equilibration=50,
                                seed=0)
        rows: str | int = "full"
    else:
        structures = rattled(start, n, 0.1, seed=0)
        rows = size.si_rows
    structures = split(structures, tuple(c / n for c in counts), seed=0)
    t1 = clock()
    store = folder / "labels.h5"
    label_structures(structures, t, store, rows=rows, seed=0)
    t2 = clock()
    counts = {s: sum(a.info["split"] == s for a in structures) for s in ("train", "val", "test")}
    return Dataset(system, t.name, store, md_structure(system), spec["cutoff"], counts, rows,
                   {"sample": t1 - t0, "label": t2 - t1})


def transfer_set(system: str, n: int, seed: int = 11) -> list[dict]:
    """``n`` rattled copies of the MD structure with teacher energy and forces (a check of the students on the
    larger cell they run MD on); empty for systems whose data already are the MD structure."""
    if system != "si" or n <= 0:
        return []
    from hessdistill.sample import rattled

    t = teacher(SYSTEMS[system]["teacher"])
    out = []
    for atoms in rattled(md_structure(system), n, 0.1, seed=seed):
        energy, forces = t.energy_forces(atoms)
        out.append({"atoms": atoms, "energy": energy, "forces": forces})
    return out
