"""The CLI defaults on three new systems (BENCHMARKS.md section 10, methods in report.md): accuracy,
physics, data efficiency, time and capacity, every run a ``hessdistill`` command; an interrupted run resumes.

    OMP_NUM_THREADS=1 python benchmarks/studies/targets.py [--systems acetic_acid complex mgo] [--seeds 2] [--quick]

Molecules that move (the default student only, every seed; section 10's second part): the complex again, the
alanine dipeptide and a methanol liquid, with per-molecule net force and torque errors, soft- and stiff-mode
errors, minimum RMSD, the liquid's RDFs and NPT density against the teacher's, labels-to-student wall time and the
exported .pt2 student's cost per atom-step:

    OMP_NUM_THREADS=1 python benchmarks/studies/targets.py --systems complex dipeptide methanol --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import numpy as np  # noqa: E402

import common  # noqa: E402
import plots  # noqa: E402
import timing  # noqa: E402
from common import hessdistill_cli, jsonable  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# arm -> flags of `hessdistill distill` besides --out and --seed; "distilled" is the defaults
ARMS = {"distilled": (), "baseline": ("--baseline",),
        "painn-64x3": ("--features", "64", "--num-interactions", "3"),  # capacity: a larger student
        "tensornet": ("--architecture", "tensornet"),  # and another architecture (rank-2 tensors), same width
        "tensornet-64": ("--architecture", "tensornet", "--features", "64")}  # and twice as wide
TARGETS = {"force_mae_relative": 0.02, "frequency_rms_relative": 0.02, "pressure_error_relative": 0.05,
           "distill_minutes": 60.0}
# molecules that move: system -> {figure of the summary: its upper limit} (median over seeds); relative figures are
# fractions of the teacher's own (mean |F| component, per-molecule mean |net force| component, frequency)
MOVING_TARGETS = {
    "complex": {"force_mae_relative": 0.04, "net_force_mae_relative": 0.10, "soft_frequency_mae_cm": 15.0,
                "stiff_frequency_rms_relative": 0.02, "minimum_rmsd": 0.1, "labels_to_student_minutes": 60.0},
    "dipeptide": {"force_mae_relative": 0.03, "soft_frequency_mae_cm": 10.0, "labels_to_student_minutes": 60.0},
    "methanol": {"net_force_mae_relative": 0.10, "rdf_peak_height_relative": 0.05, "rdf_peak_shift_A": 0.05,
                 "density_error_relative": 0.02, "labels_to_student_minutes": 60.0},
}
# the liquid's MD, ps, at the engines' 0.5 fs. NVT (the report's --md: student and teacher from one frame with one
# seed, RDFs after the first 20%): g_OO's first-peak height from 32 molecules over 3 ps scatters by a few % between
# runs, so the 5% target is near the noise. NPT (1 atm, 300 K; density from the mean volume over the second half):
# 32 molecules' volume fluctuates by sqrt(kT kappa_T / V) ~ 5% (kappa_T ~ 1.2 / GPa) and decorrelates in about the
# barostat time, 0.25 ps here (500 steps; the default 1 ps would leave 2 samples), so the 2 ps averaged give ~2% per
# run: the 2% target is at the noise; 4x longer runs halve it. Cost: ANI-1x on 192 atoms takes ~0.15 s per force call
# and ~0.45 s with the stress NPT needs (one CPU thread), so the teacher's NPT run is ~1 h and each seed's NVT pair
# ~20 min
LIQUID_MD_PS = {"full": {"rdf": 4.0, "npt": 4.0}, "quick": {"rdf": 0.05, "npt": 0.05}}
NPT = {"temperature": 300.0, "pressure_bar": 1.01325, "timestep_fs": 0.5, "barostat_time_ps": 0.25}


@dataclass(frozen=True)
class Size:
    name: str
    train: int  # the main training set (accuracy and physics targets); the curve uses train/9, train/3, train, 3 train
    val: int
    test: int
    seeds: int
    distill_flags: tuple = ()  # none for the benchmark: defaults only


FULL = Size("full", train=180, val=20, test=50, seeds=2)
QUICK = Size("quick", train=9, val=3, test=4, seeds=1, distill_flags=("--max-steps", 60))

SYSTEMS = {
    "acetic_acid": dict(teacher="ani1x", start="CH3COOH", rows="full", md_fraction=0.6, temperatures="300,600",
                        extra="--normal-modes"),
    # MD only: straight-line normal modes of a hydrogen-bonded cluster are far from harmonic at 350 K (the
    # sampler's teacher-energy test kept 15 of 6000 proposals)
    "complex": dict(teacher="ani1x", start="complex.xyz", rows="full", md_fraction=1.0, temperatures="200,350",
                    extra=None, moving=True),
    "mgo": dict(teacher="sevennet0", start="mgo.xyz", rows="12", md_fraction=0.6, temperatures="300,1000",
                extra="--rattle", strain=0.01),
    # molecules that move, defaults only (plan "seeds": the default student at the full set, every seed).
    # The alanine dipeptide: MD at 600 K crosses the phi/psi barriers; normal modes cover the minimum's soft modes
    "dipeptide": dict(teacher="ani1x", start="dipeptide.xyz", rows="full", md_fraction=0.6, temperatures="300,600",
                      extra="--normal-modes", plan="seeds", moving=True),
    # methanol liquid, 192 atoms, MD only at constant volume. 24 rows of 576: training draws one stored row per
    # structure and step (hessian_rows=1), so 24 still vary over the epochs, at 1/24 of the labelling cost: ANI-1x
    # took 2.2 s of CPU for 24 rows of one box, ~10 min for the 250 structures; the full Hessian (~60 s per box)
    # would take ~4 h, over the 60-minute target alone
    "methanol": dict(teacher="ani1x", start="methanol.xyz", rows="24", md_fraction=1.0, temperatures="300,350",
                     extra=None, plan="seeds", moving=True, liquid=True),
}


def build_complex(path: Path, seed: int = 0) -> Path:
    """Acetamide + 2 methanol + 4 water on a 3x3 grid (3.2 A apart, random orientations), relaxed by ANI-1x."""
    from ase import Atoms
    from ase.build import molecule
    from ase.optimize import FIRE
    from scipy.spatial.transform import Rotation

    from hessdistill.teachers import load_teacher

    rng = np.random.default_rng(seed)
    names = ["CH3CONH2", "CH3OH", "CH3OH", "H2O", "H2O", "H2O", "H2O"]
    sites = [np.array([i, j, k], float) * 3.2 for i in range(2) for j in range(2) for k in range(2)]
    cluster = Atoms()
    for name, site in zip(names, sites):
        m = molecule(name)
        m.positions -= m.get_center_of_mass()
        m.positions = Rotation.random(random_state=int(rng.integers(1 << 31))).apply(m.positions) + site
        cluster += m
    cluster.center(vacuum=6.0)
    cluster.pbc = False
    cluster.calc = load_teacher("ani1x").as_calculator()
    FIRE(cluster, logfile=None).run(fmax=0.01, steps=3000)
    cluster.calc = None
    cluster.write(path)
    return path


def _place(a, b, c, bond: float, angle: float, dihedral: float) -> np.ndarray:
    """The position of atom d bonded to c with |cd| = bond, angle b-c-d and dihedral a-b-c-d (degrees)."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    th, ph = np.radians(angle), np.radians(dihedral)
    d = np.array([-np.cos(th), np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph)]) * bond
    return c + np.column_stack([bc, np.cross(n, bc), n]) @ d


# Ace-Ala-NMe (the alanine dipeptide) as a Z-matrix: (element, bonded atom, angle atom, dihedral atom, bond A,
# angle deg, dihedral deg); the backbone dihedrals phi (C-N-CA-C) and psi (N-CA-C-N) start near the C7eq minimum.
# Only the dihedrals' relative values matter: ANI-1x gives mirror images the same energy, so handedness is moot.
PHI, PSI = -83.0, 73.0
DIPEPTIDE = [
    ("C", None, None, None, 0, 0, 0),  # 0 acetyl methyl
    ("C", 0, None, None, 1.52, 0, 0),  # 1 acetyl carbonyl C
    ("N", 1, 0, None, 1.33, 116, 0),  # 2
    ("C", 2, 1, 0, 1.46, 122, 180),  # 3 CA (omega trans)
    ("C", 3, 2, 1, 1.52, 111, PHI),  # 4 carbonyl C
    ("N", 4, 3, 2, 1.33, 116, PSI),  # 5
    ("C", 5, 4, 3, 1.46, 122, 180),  # 6 N-methyl (omega trans)
    ("O", 1, 2, 3, 1.23, 123, 0),  # 7
    ("O", 4, 5, 6, 1.23, 123, 0),  # 8
    ("H", 2, 1, 7, 1.01, 120, 180),  # 9 amide H trans to O
    ("H", 5, 4, 8, 1.01, 120, 180),  # 10
    ("C", 3, 2, 1, 1.53, 110, PHI + 120),  # 11 CB
    ("H", 3, 2, 1, 1.09, 109, PHI - 120),  # 12 HA
    *[("H", 0, 1, 2, 1.09, 109.5, t) for t in (0, 120, 240)],  # acetyl methyl H
    *[("H", 11, 3, 2, 1.09, 109.5, t) for t in (60, 180, 300)],  # CB methyl H
    *[("H", 6, 5, 4, 1.09, 109.5, t) for t in (60, 180, 300)],  # N-methyl H
]


def rotatable_bonds(atoms) -> int:
    """Rotatable bonds: bonds between two heavy atoms that each have another heavy neighbour, not in a ring, not
    between two unsaturated atoms (fewer neighbours than C 4, N 3, O 2: a double or conjugated bond) and not an
    amide C-N (the carbon also bonded to an oxygen)."""
    from hessdistill.structures import covalent_bonds

    i, j, _ = covalent_bonds(atoms)
    symbols = atoms.get_chemical_symbols()
    neighbours = [set(j[i == k].tolist()) for k in range(len(atoms))]
    heavy = [s != "H" for s in symbols]

    def unsaturated(k):
        return len(neighbours[k]) < {"C": 4, "N": 3, "O": 2}.get(symbols[k], 0)

    def amide(c, n):
        return symbols[c] == "C" and symbols[n] == "N" and any(symbols[m] == "O" for m in neighbours[c])

    def in_ring(a, b):  # b still reachable from a without the bond a-b
        seen, todo = {a}, [m for m in neighbours[a] if m != b]
        while todo:
            k = todo.pop()
            if k == b:
                return True
            if k not in seen:
                seen.add(k)
                todo += [m for m in neighbours[k] if m not in seen]
        return False

    def rotatable(a, b):
        if not (heavy[a] and heavy[b]) or min(sum(heavy[m] for m in neighbours[k]) for k in (a, b)) < 2:
            return False
        return not (unsaturated(a) and unsaturated(b)) and not (amide(a, b) or amide(b, a)) and not in_ring(a, b)

    return sum(rotatable(a, b) for a, b in zip(i.tolist(), j.tolist()) if a < b)


def dipeptide_atoms():
    """Ace-Ala-NMe (22 atoms, phi and psi rotatable) placed from :data:`DIPEPTIDE`, in a box with 6 A of vacuum."""
    from ase import Atoms

    positions: list = []
    for _, c, b, a, bond, angle, dihedral in DIPEPTIDE:
        if c is None:
            x = np.zeros(3)
        elif b is None:
            x = positions[c] + [bond, 0.0, 0.0]
        else:  # the third atom: any reference point off the line of the first two
            ref = positions[a] if a is not None else positions[b] + [0.0, 1.0, 0.0]
            x = _place(ref, positions[b], positions[c], bond, angle, dihedral)
        positions.append(np.asarray(x, float))
    molecule = Atoms([row[0] for row in DIPEPTIDE], positions=positions)
    molecule.center(vacuum=6.0)
    return molecule


def build_dipeptide(path: Path) -> Path:
    """:func:`dipeptide_atoms` relaxed by ANI-1x."""
    from ase.optimize import FIRE

    from hessdistill.teachers import load_teacher

    molecule = dipeptide_atoms()
    molecule.calc = load_teacher("ani1x").as_calculator()
    FIRE(molecule, logfile=None).run(fmax=0.01, steps=3000)
    molecule.calc = None
    molecule.write(path)
    return path


#: methanol liquid: molecules and density (g/cm^3, the experimental one at 298 K)
METHANOL_MOLECULES, METHANOL_DENSITY = 32, 0.79


def build_methanol(path: Path, seed: int = 0) -> Path:
    """32 methanol molecules in a cubic box at 0.79 g/cm^3: on an fcc grid (2 x 2 x 2 cells, 4.6 A apart) with
    random orientations, then a short ANI-1x relaxation at constant cell (removes the worst contacts; the
    sampling MD equilibrates)."""
    from ase import Atoms
    from ase.build import molecule
    from ase.optimize import FIRE
    from ase.units import _amu
    from scipy.spatial.transform import Rotation

    from hessdistill.teachers import load_teacher

    rng = np.random.default_rng(seed)
    m = molecule("CH3OH")
    m.positions -= m.get_center_of_mass()
    length = (METHANOL_MOLECULES * m.get_masses().sum() * _amu * 1e3 / METHANOL_DENSITY) ** (1 / 3) * 1e8  # A
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    sites = [(np.array([i, j, k]) + b) * length / 2 for i in range(2) for j in range(2) for k in range(2)
             for b in basis]
    liquid = Atoms(cell=[length] * 3, pbc=True)
    for site in sites:
        copy = m.copy()
        copy.positions = Rotation.random(random_state=int(rng.integers(1 << 31))).apply(copy.positions) + site
        liquid += copy
    liquid.wrap()
    liquid.calc = load_teacher("ani1x").as_calculator()
    FIRE(liquid, logfile=None).run(fmax=0.1, steps=300)
    liquid.calc = None
    liquid.write(path)
    return path


def build_mgo(path: Path) -> Path:
    from ase.build import bulk

    bulk("MgO", "rocksalt", a=4.21, cubic=True).write(path)
    return path


def describe(path) -> str:
    """Atoms, molecules, rotatable bonds and (periodic cells) density of a start structure, for the log."""
    from ase.io import read
    from ase.units import _amu

    from hessdistill.molecules import molecules

    atoms = read(path)
    text = f"{len(atoms)} atoms, {len(molecules(atoms)[0])} molecule(s), {rotatable_bonds(atoms)} rotatable bond(s)"
    if atoms.pbc.all():
        text += f", {atoms.get_masses().sum() * _amu * 1e3 / (atoms.get_volume() * 1e-24):.3f} g/cm^3"
    return text


BUILDERS = {"complex.xyz": build_complex, "dipeptide.xyz": build_dipeptide, "methanol.xyz": build_methanol,
            "mgo.xyz": build_mgo}


def sample_and_label(spec: dict, start: str, n: int, split: str, seed: int, folder: Path, name: str) -> dict:
    """``hessdistill sample`` of ``n`` structures of a system's mix into ``folder/<name>.extxyz``, then
    ``hessdistill label`` into ``folder/<name>.h5``: wall times and the sampling command as run."""
    n_md = int(round(spec["md_fraction"] * n))
    args = (["sample", "--start", start, "--teacher", spec["teacher"], "--md", n_md, "--temperature",
             spec["temperatures"], *([spec["extra"], n - n_md] if spec["extra"] else []), "--split", split,
             "--seed", seed] + (["--strain", spec["strain"]] if spec.get("strain") else []))
    structures, log = folder / f"{name}.extxyz", folder / "log.txt"
    sample_s = hessdistill_cli(*args, "-o", structures, log=log)["wall"]
    label_s = hessdistill_cli("label", structures, "--teacher", spec["teacher"], "--rows", spec["rows"], "-o",
                              folder / f"{name}.h5", log=log)["wall"]
    return {"sample_wall_s": sample_s, "label_wall_s": label_s,  # the command line with file names, not paths
            "sampling": " ".join(Path(str(x)).name if str(x).startswith(str(folder)) else str(x) for x in args)}


def build_labels(system: str, size: Size, folder: Path) -> dict:
    """Sample and label the system's structures into ``folder/labels.h5`` (kept between runs)."""
    spec = SYSTEMS[system]
    folder.mkdir(parents=True, exist_ok=True)
    labels, info_path = folder / "labels.h5", folder / "labels.json"
    if labels.is_file() and info_path.is_file():
        return json.loads(info_path.read_text())
    start = spec["start"]
    if start in BUILDERS:
        start = str(folder / start) if (folder / start).is_file() else str(BUILDERS[start](folder / start))
        print(f"[{system}] start {start}: {describe(start)}", flush=True)
    n = size.train + size.val + size.test
    run = sample_and_label(spec, start, n, f"{size.train / n:.6f},{size.val / n:.6f},{size.test / n:.6f}", 0, folder,
                           "labels")
    from hessdistill.label import load_labels

    items = load_labels(labels)
    counts = {s: sum(it.split == s for it in items) for s in ("train", "val", "test")}
    info = {"start": start, "atoms": len(items[0].numbers), "teacher": spec["teacher"], "rows": spec["rows"],
            "counts": counts, **run}
    info_path.write_text(json.dumps(info, indent=1))
    return info


def subset_store(labels: Path, n_train: int, path: Path) -> Path:
    """The first ``n_train`` training structures (nested sets) with every val and test structure."""
    from hessdistill.label import load_labels, write_store
    from hessdistill.label.store import store_teacher

    if path.is_file():
        return path
    items = load_labels(labels)
    train = [it for it in items if it.split == "train"][:n_train]
    rest = [it for it in items if it.split != "train"]
    return write_store(train + rest, path, teacher_name=store_teacher(labels))


def more_labels(system: str, size: Size, folder: Path) -> Path:
    """``folder/labels-n{3 train}.h5``: the main training set, 2 x train more training structures (a second
    ``hessdistill sample``, seed 1, the same mix; labelled alike) and the main val and test sets."""
    from hessdistill.label import load_labels, write_store
    from hessdistill.label.store import store_teacher

    n_more = 2 * size.train
    path = folder / f"labels-n{size.train + n_more}.h5"
    if path.is_file():
        return path
    spec, info_path = SYSTEMS[system], folder / "labels.json"
    info = json.loads(info_path.read_text())
    # n_more + 2: the split keeps one val and one test structure; they are dropped
    run = sample_and_label(spec, info["start"], n_more + 2, "1,0,0", 1, folder, "more")
    items = load_labels(folder / "labels.h5")
    more = [it for it in load_labels(folder / "more.h5") if it.split == "train"][:n_more]
    train = [it for it in items if it.split == "train"]
    write_store(train + more + [it for it in items if it.split != "train"], path,
                teacher_name=store_teacher(folder / "labels.h5"))
    info["more"] = {"train": len(more), **run}
    info_path.write_text(json.dumps(info, indent=1))
    return path


def plan(size: Size, seeds: int, kind: str = "all") -> list[tuple[str, int, int]]:
    """(arm, training structures, seed), most informative first; ``kind`` "seeds": the default student at the main
    set only, every seed."""
    n = size.train
    if kind == "seeds":
        return [("distilled", n, s) for s in range(seeds)]
    runs = [("distilled", n, 0), ("baseline", n, 0), ("distilled", n // 3, 0), ("baseline", n // 3, 0),
            ("distilled", n // 9, 0), ("baseline", n // 9, 0)]
    runs += [("distilled", n, s) for s in range(1, seeds)]
    runs += [("painn-64x3", n, 0), ("tensornet", n, 0), ("tensornet-64", n, 0)]
    runs += [("baseline", 3 * n, 0), ("distilled", 3 * n, 0)]  # the curve's last point: a second sample
    return runs


def one_run(system: str, size: Size, folder: Path, arm: str, n_train: int, seed: int) -> dict:
    name = f"{arm}-n{n_train}-seed{seed}"
    run_dir = folder / name
    done = run_dir / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    if n_train > size.train:
        store = more_labels(system, size, folder)
    else:
        store = subset_store(folder / "labels.h5", n_train, folder / f"labels-n{n_train}.h5")
    args = ["distill", store, "--out", run_dir, "--seed", seed, *size.distill_flags, *ARMS[arm]]
    wall = hessdistill_cli(*args, log=folder / "log.txt")["wall"]
    summary = json.loads((run_dir / "summary.json").read_text())
    report = json.loads((run_dir / "report" / "report.json").read_text())
    physics = {k: v for k, v in report.get("physics", {}).items()
               if not isinstance(v, list) or k in ("teacher_pressure_GPa", "student_pressure_GPa", "strains")}
    result = {"system": system, "arm": arm, "train": n_train, "seed": seed, "distill_wall_s": wall,
              "train_seconds": summary["train_seconds"], "epochs": summary["epochs"],
              "stop_reason": summary["stop_reason"], "compiled": summary["compiled"],
              "parameters": summary["parameters"], "student": summary["student"], "label_errors": report["label_errors"], "physics": physics}
    done.write_text(json.dumps(jsonable(result), indent=1))
    return result


def run_system(system: str, size: Size, workdir: Path, seeds: int, kind: str | None = None) -> list[dict]:
    folder = workdir / system
    info = build_labels(system, size, folder)
    print(f"[{system}] labels: {info['counts']} ({info['atoms']} atoms)", flush=True)
    results = []
    spec = SYSTEMS[system]
    for arm, n_train, seed in plan(size, seeds, kind or spec.get("plan", "all")):
        t0 = time.perf_counter()
        r = common.guarded(one_run, system, size, folder, arm, n_train, seed)
        if "error" not in r and spec.get("moving") and arm == "distilled" and n_train == size.train:
            r = common.guarded(moving_figures, system, size, folder, r)
        if "error" in r:
            print(f"[{system}] {arm} n={n_train} seed={seed}: {r['error']}", flush=True)
            continue
        results.append(r)
        if arm not in ("distilled", "baseline"):
            (folder / "speed.json").write_text(json.dumps(jsonable(student_speed(folder, results)), indent=1))
        e = r["label_errors"]
        print(f"[{system}] {arm} n={n_train} seed={seed}: force MAE {1e3 * e['force_mae']:.1f} meV/A = "
              f"{100 * e['force_mae_relative']:.2f}% ({r['stop_reason']}, {r['epochs']} epochs, "
              f"{r['distill_wall_s'] / 60:.1f} min; {time.perf_counter() - t0:.0f} s)", flush=True)
        write(workdir)
    return results


def moving_figures(system: str, size: Size, folder: Path, r: dict) -> dict:
    """The figures of molecules that move for a main run, added to its result.json: the per-molecule net force and
    torque errors (a report of the student alone where the run's report predates them), for seed 0 the .pt2
    export's cost per atom-step, and for the liquid the RDFs and the NPT density against the teacher's."""
    run_dir, log = folder / f"{r['arm']}-n{r['train']}-seed{r['seed']}", folder / "log.txt"
    if "most_molecules" not in r["label_errors"]:
        hessdistill_cli("report", r["student"], folder / "labels.h5", "-o", run_dir / "report-labels", "--no-physics",
                        log=log)
        r["label_errors"] = json.loads((run_dir / "report-labels" / "report.json").read_text())["label_errors"]
    if r["seed"] == 0 and "cost" not in r:
        r["cost"] = student_cost(run_dir, r["student"], folder, log)
    if SYSTEMS[system].get("liquid") and "liquid" not in r:
        r["liquid"] = liquid_figures(system, size, folder, run_dir, r["student"], log)
    (run_dir / "result.json").write_text(json.dumps(jsonable(r), indent=1))
    return r


def student_cost(run_dir: Path, student: str, folder: Path, log: Path) -> dict:
    """CPU us per atom-step of the run's student as exported (TorchScript) and as a ``hessdistill export`` .pt2
    package, on the first test structure (energy + forces, neighbour list excluded; the size ladder's timer)."""
    import torch

    from hessdistill.distill.sizes import time_student
    from hessdistill.label import load_labels

    torch.set_num_threads(1)
    pt2 = run_dir / "student.pt2"
    if not pt2.is_file():
        hessdistill_cli("export", run_dir, "-o", pt2, log=log)
    atoms = next(it for it in load_labels(folder / "labels.h5") if it.split == "test").atoms()
    return {"torchscript": time_student(student, atoms), "pt2": time_student(pt2, atoms)}


def md_start(folder: Path) -> Path:
    """The lowest-energy labelled structure (per atom) as a file: where the report's MD comparison starts, and the
    NPT runs of the teacher and the students."""
    from hessdistill.label import load_labels

    path = folder / "md-start.extxyz"
    if not path.is_file():
        min(load_labels(folder / "labels.h5"), key=lambda it: it.energy / len(it.numbers)).atoms().write(path)
    return path


def npt_density(monitor_csv: Path, mass_amu: float) -> dict:
    """Density (g/cm^3) from the mean volume over the second half of an NPT run's monitor, and its spread."""
    from ase.units import _amu

    from hessdistill.monitor.plot import read_monitor_csv

    volume = read_monitor_csv(monitor_csv)["volume_A3"]
    half = volume[len(volume) // 2:]
    grams = mass_amu * _amu * 1e3
    return {"density_g_cm3": grams / (float(np.mean(half)) * 1e-24),
            "density_std_g_cm3": float(np.std(grams / (half * 1e-24))), "samples": int(len(half))}


def npt_steps(size: Size) -> int:
    return max(1, round(1000 * LIQUID_MD_PS[size.name]["npt"] / NPT["timestep_fs"]))


def teacher_npt(system: str, size: Size, folder: Path) -> dict:
    """The teacher's NPT run from :func:`md_start` (ASE engine, the teacher's calculator: the CLI runs students only),
    kept in ``folder/teacher-npt.json``."""
    from ase.io import read

    from hessdistill.engines import MDOptions, run_md
    from hessdistill.teachers import load_teacher

    done = folder / "teacher-npt.json"
    if done.is_file():
        return json.loads(done.read_text())
    atoms = read(md_start(folder))
    options = MDOptions(steps=npt_steps(size), timestep_fs=NPT["timestep_fs"], temperature_K=NPT["temperature"],
                        ensemble="npt", pressure_bar=NPT["pressure_bar"], barostat_time_ps=NPT["barostat_time_ps"],
                        seed=0)
    calculator = load_teacher(SYSTEMS[system]["teacher"]).as_calculator()
    result = run_md("ase", None, atoms, folder / "teacher-npt", options, calculator=calculator)
    if result.stopped:
        raise RuntimeError(f"the teacher's NPT run stopped: {result.reason}")
    out = {**npt_density(result.files["monitor_csv"], float(atoms.get_masses().sum())), "wall_s": result.wall_s}
    done.write_text(json.dumps(jsonable(out), indent=1))
    return out


def liquid_figures(system: str, size: Size, folder: Path, run_dir: Path, student: str, log: Path) -> dict:
    """RDFs of NVT runs of the student and the teacher (``hessdistill report --md``) and the NPT density of the
    student (``hessdistill md --ensemble npt``) against the teacher's, both from :func:`md_start` with seed 0."""
    from ase.io import read

    ps = LIQUID_MD_PS[size.name]
    hessdistill_cli("report", student, folder / "labels.h5", "-o", run_dir / "report-md", "--md", ps["rdf"],
                    "--no-physics", log=log)
    md = json.loads((run_dir / "report-md" / "report.json").read_text())["md"]
    if "skipped" in md:
        raise RuntimeError(f"the MD comparison was skipped: {md['skipped']}")
    teacher = teacher_npt(system, size, folder)
    start = md_start(folder)
    hessdistill_cli("md", "--engine", "ase", "--model", student, "--structure", start, "--ensemble", "npt",
                    "--pressure", NPT["pressure_bar"], "--temperature", NPT["temperature"], "--timestep",
                    NPT["timestep_fs"], "--barostat-time", NPT["barostat_time_ps"], "--steps", npt_steps(size),
                    "--seed", 0, "--no-progress", "--out",
                    run_dir / "npt", log=log)
    density = npt_density(run_dir / "npt" / "monitor.csv", float(read(start).get_masses().sum()))
    return {"rdf": {k: md[k] for k in ("ps", "temperature_K", "max_rdf_difference", "worst_pair", "pairs", "runs")},
            "npt": {"ps": LIQUID_MD_PS[size.name]["npt"], **NPT, "teacher": teacher, "student": density,
                    "density_error_relative": density["density_g_cm3"] / teacher["density_g_cm3"] - 1.0}}


def student_speed(folder: Path, runs: list[dict], rounds: int = 7) -> dict:
    """CPU ms per energy + forces call of each arm's seed-0 student at the full set (ASE calculator), and the ratio
    to the default student's, within each interleaved round."""
    import torch

    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.label import load_labels
    from timing import interleaved

    torch.set_num_threads(1)
    n = next((r["train"] for r in runs if r["arm"] not in ("distilled", "baseline")), None)  # the main set
    chosen = {r["arm"]: r for r in runs if r["train"] == n and r["seed"] == 0 and r["arm"] != "baseline"}
    chosen = {arm: chosen[arm] for arm in ARMS if arm in chosen}  # the table's order
    if "distilled" not in chosen or len(chosen) < 2:
        return {}
    atoms = next(it for it in load_labels(folder / "labels.h5") if it.split == "test").atoms()
    calls = {}
    for arm, r in chosen.items():
        a = atoms.copy()
        a.calc = StudentCalculator(r["student"])

        def call(a=a):
            a.positions[0, 0] += 1e-6  # a new configuration each call: no cached result
            return a.get_forces()
        calls[arm] = call
    t = interleaved(calls, rounds=rounds, calls=20, warmup=3, desc=f"speed {folder.name}")
    return {arm: {"ms_per_call": 1e3 * t.median(arm), "parameters": chosen[arm]["parameters"],
                  "force_mae_relative": chosen[arm]["label_errors"]["force_mae_relative"],
                  "time_ratio_to_default": t.ratio(arm, "distilled")} for arm in chosen}


def spread(values) -> dict:
    return {**timing.spread(values), "n": len(values)}


def summarize(system: str, info: dict, runs: list[dict]) -> dict:
    main = [r for r in runs if r["arm"] == "distilled" and r["train"] == info["counts"]["train"]]
    out = {"data": info, "runs": runs}
    if main:
        out["force_mae_relative"] = spread([r["label_errors"]["force_mae_relative"] for r in main])
        out["force_mae_meV"] = spread([1e3 * r["label_errors"]["force_mae"] for r in main])
        out["distill_minutes"] = spread([r["distill_wall_s"] / 60 for r in main])
        for key in ("frequency_rms_relative", "stiff_frequency_rms_relative", "soft_frequency_mae_cm",
                    "pressure_error_relative", "minimum_rmsd"):
            vals = [r["physics"][key] for r in main if r["physics"].get(key) is not None]
            if vals:
                out[key] = spread(vals)
        out.update(moving_summary(info, main))
    curve: dict = {}
    for r in runs:
        if r["seed"] == 0 and r["arm"] in ("distilled", "baseline"):
            curve.setdefault(r["arm"], {})[r["train"]] = r["label_errors"]["force_mae"]
    out["curve"] = curve
    d, b = curve.get("distilled", {}), curve.get("baseline", {})
    pairs = []  # each baseline size m: the smallest distilled size reaching its error; met if that is <= m / 3
    for n in sorted(b, reverse=True):
        reach = [m for m in sorted(d) if d[m] <= b[n]]
        pairs.append({"baseline_n": n, "baseline_force_mae": b[n],
                      "smallest_distilled_n_reaching_it": reach[0] if reach else None,
                      "fraction": (reach[0] / n) if reach else None,
                      "met": bool(reach and reach[0] <= n / 3 + 1e-9) if (n // 3) in d else None})
    judged = [p for p in pairs if p["met"] is not None]
    if pairs:  # the verdict at the largest baseline size whose third was run
        out["data_efficiency"] = {**(judged or pairs)[0], "pairs": pairs}
    return out


#: the liquid's RDF pair judged: O-O, the hydrogen-bond peak near 2.7 A (the first peaks of C-O, O-H and H-H are
#: bonds inside a molecule)
LIQUID_PAIR = "O-O"


def moving_summary(info: dict, main: list[dict]) -> dict:
    """The figures of molecules that move over the main runs (those they were measured on)."""
    out = {}
    for key in ("net_force_mae_relative", "net_torque_mae_relative"):
        vals = [r["label_errors"][key] for r in main if key in r["label_errors"]]
        if vals:
            out[key] = spread(vals)
    if "sample_wall_s" in info:
        out["labels_to_student_minutes"] = spread([(info["sample_wall_s"] + info["label_wall_s"]
                                                    + r["distill_wall_s"]) / 60 for r in main])
    cost = [r["cost"] for r in main if r.get("cost")]
    if cost:
        out["cost"] = cost[0]
    liquid = [r["liquid"] for r in main if r.get("liquid")]
    if liquid:
        pairs = [x["rdf"]["pairs"][LIQUID_PAIR] for x in liquid]
        out["rdf_difference"] = spread([x["rdf"]["max_rdf_difference"] for x in liquid])
        out["rdf_peak_height_relative"] = spread([abs(p["student_first_peak_height"] / p["teacher_first_peak_height"]
                                                      - 1.0) for p in pairs])
        out["rdf_peak_shift_A"] = spread([abs(p["first_peak_shift_A"]) for p in pairs])
        out["density_error_relative"] = spread([abs(x["npt"]["density_error_relative"]) for x in liquid])
        out["student_density_g_cm3"] = spread([x["npt"]["student"]["density_g_cm3"] for x in liquid])
        out["teacher_density_g_cm3"] = liquid[0]["npt"]["teacher"]["density_g_cm3"]
        out["liquid_md"] = {"rdf_ps": liquid[0]["rdf"]["ps"], "npt_ps": liquid[0]["npt"]["ps"],
                            "barostat_time_ps": liquid[0]["npt"]["barostat_time_ps"], "rdf_pair": LIQUID_PAIR}
    return out


def checks(summary: dict, system: str = "") -> dict:
    """Target -> met (None where not measured) from a system's summary (median over seeds): the section's targets
    (not for the systems run with the default student only) and those of molecules that move."""
    def le(key, limit):
        return None if key not in summary else bool(summary[key]["median"] <= limit)

    out = {} if SYSTEMS.get(system, {}).get("plan") == "seeds" else {
        "force_mae_le_2pct": le("force_mae_relative", TARGETS["force_mae_relative"]),
        "frequencies_le_2pct_rms": le("frequency_rms_relative", TARGETS["frequency_rms_relative"]),
        "pressure_within_5pct": le("pressure_error_relative", TARGETS["pressure_error_relative"]),
        "distill_le_60_min": le("distill_minutes", TARGETS["distill_minutes"]),
        "hessian_rows_third_of_data": summary.get("data_efficiency", {}).get("met")}
    return {**out, **{f"{key}_le_{limit:g}": le(key, limit) for key, limit in MOVING_TARGETS.get(system, {}).items()}}


_STATE: dict = {"meta": {}, "size": None}


def write(workdir: Path) -> dict:
    """Collect every finished run under ``workdir`` into the results JSON and the plot."""
    systems = {}
    for system in SYSTEMS:
        folder = workdir / system
        if not (folder / "labels.json").is_file():
            continue
        info = json.loads((folder / "labels.json").read_text())
        runs = [json.loads(p.read_text()) for p in sorted(folder.glob("*/result.json"))]
        if runs:
            s = summarize(system, info, runs)
            speed = folder / "speed.json"
            if speed.is_file():
                s["capacity"] = json.loads(speed.read_text())
            s["targets"] = checks(s, system)
            systems[system] = s
    out = {**_STATE["meta"], "written": common.now(), "targets": TARGETS, "moving_targets": MOVING_TARGETS,
           "systems": systems, "plot": "targets.png"}
    path = _STATE["out"] / "targets.json"
    path.write_text(json.dumps(jsonable(out), indent=1))
    plot(out, _STATE["out"] / "targets.png")
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    systems = results["systems"]
    if not systems:
        return
    fig, axes = plots.subplots(1, len(systems), figsize=(4.2 * len(systems), 3.6), squeeze=False)
    for ax, (name, s) in zip(axes[0], systems.items()):
        for arm, style in (("distilled", "o-"), ("baseline", "s--")):
            c = s["curve"].get(arm, {})
            if c:
                n = sorted(c)
                ax.loglog(n, [1e3 * c[k] for k in n], style, label=f"{arm} (wH={'100' if arm == 'distilled' else 0})")
        sizes = sorted({int(k) for c in s["curve"].values() for k in c})
        ax.set_xticks(sizes, [str(k) for k in sizes])  # the sizes run, not log-scale minor labels that overlap
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        scale = s["runs"][0]["label_errors"]["teacher_mean_abs_force"]
        ax.axhline(1e3 * 0.02 * scale, color="gray", lw=0.8, ls=":", label="2% of teacher mean |F|")
        ax.set_title(f"{name} ({s['data']['atoms']} atoms, {s['data']['teacher']})")
        ax.set_xlabel("training structures")
        ax.set_ylabel("held-out force MAE (meV/A)")
        ax.legend(fontsize=7)
    plots.save(fig, path)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--workdir", default="/tmp/hessdistill-targets")
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=1, help="systems run side by side")
    ap.add_argument("--plan", choices=("all", "seeds"), default=None,
                    help="seeds: the default student at the main set only, every seed (default: the system's own)")
    ap.add_argument("--quick", action="store_true", help="tiny sets (a smoke test of the script)")
    a = ap.parse_args(argv)
    size = QUICK if a.quick else FULL
    seeds = a.seeds or size.seeds
    workdir = Path(a.workdir + ("-quick" if a.quick else ""))
    workdir.mkdir(parents=True, exist_ok=True)
    _STATE["out"] = Path(a.out) if a.out else (workdir if a.quick else RESULTS)
    _STATE["out"].mkdir(parents=True, exist_ok=True)
    _STATE["meta"] = {**common.study_record("targets.py", argv), "size": size.__dict__, "seeds": seeds}
    with ThreadPoolExecutor(a.jobs) as pool:
        list(pool.map(lambda s: run_system(s, size, workdir, seeds, a.plan), a.systems))
    out = write(workdir)
    for name, s in out["systems"].items():
        print(name, json.dumps(s["targets"]))
    return out


if __name__ == "__main__":
    main()
