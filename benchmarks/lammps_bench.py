"""LAMMPS benchmarks of pair_style hessdistill, with the inputs ``hessdistill md --engine lammps`` runs.

    python benchmarks/lammps_bench.py --mode speed [--quick]     # step / bare student, 1k-32k atoms (section 6)
    python benchmarks/lammps_bench.py --mode scaling [--quick] [--only work|accuracy] [--wall]   # section 8
    python benchmarks/lammps_bench.py --mode pt2 [--rounds 5] [--cells 2 4 8]   # .pt2 over TorchScript

Methods: BENCHMARKS.md sections 6 and 8, docs/design/pt2.md and docs/design/performance.md.
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
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import bare_student, default_student, jsonable, machine, now, size_label, versions  # noqa: E402
from systems import silicon  # noqa: E402
from timing import clock, interleaved, lammps_steps, spread  # noqa: E402

TARGET_RATIO = 1.1  # speed: LAMMPS step / bare student
TARGET_FLATNESS = 1.2  # speed: max / min cost per atom-step over the sizes
TARGET_WORK_RATIO = 1.3  # scaling: work at 8 ranks on 32768 atoms / one rank, strictly local student
TARGET_EFFICIENCY = 0.8  # scaling: wall clock, 2 ranks on 4096 atoms
MAX_STEPS = 3000  # scaling: optimizer steps of each accuracy run
RESULTS = BENCH / "results"


def nve_input(model, atoms, workdir: Path, plugin, steps: int = 2, before_run: str = "", name: str = "") -> str:
    """run_md's LAMMPS input (velocities at 300 K in the data file, 1 fs, monitor reporting only) for ``atoms``,
    with ``before_run`` commands placed before its ``run``."""
    from ase.io import write
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from hessdistill.engines import MDOptions
    from hessdistill.engines.lammps import md_input

    atoms = atoms.copy()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(12345))
    data = workdir / f"si{len(atoms)}.data"
    write(data, atoms, format="lammps-data", specorder=["Si"], masses=True, units="metal", atom_style="atomic",
          velocities=True)
    options = MDOptions(steps=steps, timestep_fs=1.0, report_interval=1000, max_drift=None, max_deviation=None)
    text = md_input(data=data, model=model, plugin=plugin, elements=["Si"], options=options, threads=1,
                    memory="cache", monitor_csv=workdir / f"monitor{name or len(atoms)}.csv")
    head, run = text.rsplit("\nrun ", 1)
    return f"{head}\n{before_run}run {run}"


def instance(model, atoms, plugin, workdir: Path, name: str):
    """A LAMMPS instance in this process (the lammps module) after ``nve_input``'s 2 steps; its log path."""
    from hessdistill.engines.lammps import lammps_module

    log = workdir / f"log.{name}"
    lmp = lammps_module().lammps(cmdargs=["-screen", "none", "-log", str(log), "-nocite"])
    lmp.commands_string(nve_input(model, atoms, workdir, plugin, name=name))
    return lmp, log


def lmp_run(script: str, nprocs: int, workdir: Path, name: str) -> str:
    """``script`` run by the wheel's lmp on ``nprocs`` ranks (one thread each); the log text."""
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


def measure(model_path, atoms, plugin, workdir: Path, rounds: int = 3) -> dict:
    """Interleaved rounds of bare forward + backward and LAMMPS steps, the same number of each per round."""
    bare, n_edges = bare_student(model_path, [atoms])
    bare()
    bare()  # TorchScript profiling runs
    t0 = clock()
    bare()
    steps = max(1, round(2.0 / (clock() - t0)))
    lmp, log = instance(model_path, atoms, plugin, workdir, f"bench{len(atoms)}")
    try:
        t = interleaved({"bare": lambda: [bare() for _ in range(steps)],
                         "lammps": lambda: lmp.command(f"run {steps} pre no post yes")},
                        rounds, warmup=0, units={"bare": steps, "lammps": steps}, desc=f"lammps {len(atoms)}")
    finally:
        lmp.close()
        torch.set_num_threads(1)
    # Pair's share of the loop time in each timed run (timing line "Pair | min | avg | max | %varavg | %total")
    share = re.findall(r"^Pair\s*\|(?:\s*\S+\s*\|){4}\s*(\S+)", log.read_text(), flags=re.M)[-rounds:]
    bare_s, step_s = t.median("bare"), t.median("lammps")
    return {"atoms": len(atoms), "edges": n_edges, "bare_ms": 1e3 * bare_s, "step_ms": 1e3 * step_s,
            "pair_ms": 1e3 * step_s * float(np.median([float(s) / 100 for s in share])),
            "ratio": t.ratio("lammps", "bare"), "us_per_atom_step": 1e6 * step_s / len(atoms),
            "bare_us_per_atom": 1e6 * bare_s / len(atoms), "steps_per_round": steps, "timing": t.summary()}


def run(quick: bool = False) -> dict:
    """run.py's engine figure: {"student", "sizes": [measure(...), ...], "flatness": {cost: max / min}}."""
    from hessdistill.engines.lammps import build_plugin
    from hessdistill.formats import export_student
    from hessdistill.heap import keep_freed_memory

    keep_freed_memory()  # the bare student runs in Python: the heap setting a user opts in to (as the CLI does)
    torch.set_num_threads(1)
    plugin = build_plugin()
    model = default_student(["Si"], [14])
    results = {"student": {"architecture": "painn", **model.hyperparameters(), "dtype": "float64"}, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_student(model, Path(tmp) / "student.pt", dtype="float64")
        for n in [3, 5] if quick else [5, 8, 10, 13, 16]:
            results["sizes"].append(measure(path, silicon(n), plugin, Path(tmp), rounds=3 if n < 13 else 2))
            print(json.dumps(results["sizes"][-1]), flush=True)
    results["flatness"] = {key: max(r[key] for r in results["sizes"]) / min(r[key] for r in results["sizes"])
                           for key in ("us_per_atom_step", "bare_us_per_atom")}
    return results


def random_student(path: Path, dtype: str, **hyper) -> Path:
    from hessdistill.formats import export_student

    return export_student(default_student(["Si"], [14], **hyper), path, dtype=dtype)


def work(plugin: Path, quick: bool) -> dict:
    """Nodes + edges summed over ranks / one rank's, per student, size and rank count."""
    from hessdistill.distill import DistillConfig
    from hessdistill.engines.lammps import read_log

    sizes = {216: 3, 512: 4} if quick else {4096: 8, 32768: 16}
    ranks = (1, 2, 4) if quick else (1, 2, 4, 8)
    out: dict = {"ranks": list(ranks), "students": {}, "target_ratio": TARGET_WORK_RATIO}
    count = "compute work all pair hessdistill\nthermo_style custom step pe c_work[1] c_work[2]\n"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for layers in (1, 2, 3):
            model = random_student(tmp / f"x{layers}.pt", "float32", num_interactions=layers, features=8)  # narrow: 8 ranks fit in memory
            entry = out["students"][f"painn x{layers}"] = {"num_interactions": layers,
                                                           "cutoff_A": DistillConfig().cutoff, "sizes": {}}
            for atoms, cells in sizes.items():
                script = nve_input(model, silicon(cells), tmp, plugin, steps=0, before_run=count)
                rows = {}
                try:
                    for n in ranks:
                        log = lmp_run(script, n, tmp, f"count{n}")
                        thermo, ghosts = read_log(tmp / f"log.count{n}"), re.search(r"^Nghost:\s+(\S+) ave", log, re.M)
                        rows[n] = {"nodes": int(thermo["c_work[1]"][0]), "edges": int(thermo["c_work[2]"][0]),
                                   "lammps_ghosts_per_rank": float(ghosts.group(1)) if ghosts else None}
                except (RuntimeError, subprocess.SubprocessError) as exc:  # e.g. out of memory: the others go on
                    entry["sizes"][str(atoms)] = {"error": str(exc)[-500:]}
                    continue
                one = rows[1]
                for r in rows.values():
                    r.update(nodes_ratio=r["nodes"] / one["nodes"], edges_ratio=r["edges"] / one["edges"],
                             ratio=(r["nodes"] + r["edges"]) / (one["nodes"] + one["edges"]))
                entry["sizes"][str(atoms)] = {str(n): r for n, r in rows.items()}
                print(f"painn x{layers}", atoms, {n: round(r["ratio"], 3) for n, r in rows.items()}, flush=True)
    last = out["students"]["painn x1"]["sizes"][str(max(sizes))].get(str(max(ranks)), {}).get("ratio", float("inf"))
    out["target_met"] = None if quick else bool(last <= TARGET_WORK_RATIO)
    return out


def accuracy(plugin: Path, quick: bool, workdir: Path) -> dict:
    """The default PaiNN (2 interactions), the strictly local one (1) and the local one at 6 A, on run.py's Si data:
    errors, and the LAMMPS step of each."""
    import common
    import systems
    from hessdistill.distill import DistillConfig, distill
    from hessdistill.distill.data import load_splits

    size = common.QUICK if quick else common.DEFAULT
    workdir = workdir / size.name
    ds = systems.build("si", size, workdir)  # resumes a finished labelling
    mean_f = float(np.abs(np.concatenate([s.forces.ravel() for s in load_splits(ds.labels)["test"]])).mean())
    frames = systems.transfer_set("si", size.si_transfer)
    max_steps = 20 if quick else MAX_STEPS
    out = {"data": ds.summary(), "teacher_mean_abs_force_component": mean_f, "max_steps": max_steps,
           "transfer_atoms": len(frames[0]["atoms"]) if frames else None, "students": {}}
    paths = {}
    for layers, cutoff in ((2, None), (1, None), (1, 6.0)):
        cfg = DistillConfig(num_interactions=layers, max_steps=max_steps, device="cpu", compile="off")
        cfg = cfg.replace(cutoff=cutoff or cfg.cutoff)
        label = size_label(cfg.architecture, cfg.features, layers) + (f"-rc{cutoff:g}" if cutoff else "")
        summary = distill(cfg, ds.labels, workdir / "si" / "runs" / label, resume=False, progress=False)
        paths[label], test = summary["student"], summary["test"]
        out["students"][label] = {
            "num_interactions": layers, "interaction_range_A": layers * cfg.cutoff, "parameters": summary["parameters"],
            "config": {k: summary["config"][k] for k in ("architecture", "features", "cutoff", "num_interactions",
                                                         "hessian_weight", "max_steps", "lr_schedule", "dtype")},
            "stop_reason": summary["stop_reason"], "train_seconds": summary["train_seconds"],
            "force_mae": test["force_mae"], "force_mae_percent_of_mean_abs_force": 100 * test["force_mae"] / mean_f,
            "energy_mae_per_atom": test["energy_mae_per_atom"], "hessian_mae": test["hessian_mae"],
            "transfer_force_mae": common.frames_force_mae(summary["student"], frames) if frames else None}
        print(label, json.dumps(out["students"][label]), flush=True)
    torch.set_num_threads(1)
    atoms, steps = silicon(4 if quick else 8), 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        lmps = {label: instance(p, atoms, plugin, Path(tmp), label)[0] for label, p in paths.items()}
        try:
            t = interleaved({label: lambda lm=lm: lm.command(f"run {steps} pre no post no") for label, lm in lmps.items()},
                            rounds=1 if quick else 3, units=dict.fromkeys(lmps, steps), desc="lammps speed")
        finally:
            for lm in lmps.values():
                lm.close()
    for label in lmps:
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
        for layers in (2, 1):
            script = nve_input(random_student(tmp / f"x{layers}.pt", "float64", num_interactions=layers), atoms, tmp, plugin)
            script += f"run {steps}\n"
            seconds: dict[int, list[float]] = {1: [], 2: []}
            for _ in range(rounds):
                for n in (1, 2):
                    log = lmp_run(script, n, tmp, f"wall{layers}_{n}")
                    loop = re.findall(r"^Loop time of (\S+) on (\d+) procs for (\d+) steps", log, flags=re.M)[-1]
                    seconds[n].append(float(loop[0]) / int(loop[2]))
            eff = np.asarray(seconds[1]) / (2 * np.asarray(seconds[2]))
            out["students"][size_label("painn", 32, layers)] = {
                "num_interactions": layers, "seconds_per_step": {str(n): s for n, s in seconds.items()},
                "efficiency": spread(eff)}
            print(layers, out["students"][size_label("painn", 32, layers)], flush=True)
    local = out["students"][size_label("painn", 32, 1)]["efficiency"]["median"]
    out["target_met"] = None if quick else bool(local >= TARGET_EFFICIENCY)
    out["load_average_at_end"] = os.getloadavg()
    return out


def pt2(plugin: Path, cells_list, dtypes, rounds: int, seconds: float) -> dict:
    """TorchScript against .pt2 in LAMMPS: per dtype and size, the median within-round speed-up."""
    from hessdistill.formats import save_student

    model = default_student(["Si"], [14])
    results = {"torch": torch.__version__, "clock": "process_time", "threads": 1, "ranks": 1,
               "student": {"architecture": "painn", **model.hyperparameters()}, "rows": []}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dtype in dtypes:
            paths = {fmt: save_student(model, tmp / f"s_{dtype}{suffix}", dtype=dtype, format=fmt)
                     for fmt, suffix in (("torchscript", ".pt"), ("pt2", ".pt2"))}
            for cells in cells_list:
                atoms = silicon(cells)
                lmps = {fmt: instance(path, atoms, plugin, tmp, fmt)[0] for fmt, path in paths.items()}
                try:
                    n = max(1, round(seconds / max(lammps_steps(lmp, 2) for lmp in lmps.values())))
                    t = interleaved({fmt: (lambda lmp=lmp: lammps_steps(lmp, n)) for fmt, lmp in lmps.items()}, rounds,
                                    warmup=0, desc=f"{dtype} {len(atoms)} atoms")
                finally:
                    for lmp in lmps.values():
                        lmp.close()
                ts, p2 = (np.asarray(t.seconds[fmt]) for fmt in ("torchscript", "pt2"))
                ratio = ts / p2
                row = {"atoms": len(atoms), "dtype": dtype, "steps_per_round": n,
                       "ms_per_step": {"torchscript": 1e3 * float(np.median(ts)), "pt2": 1e3 * float(np.median(p2))},
                       "us_per_atom_step": {"torchscript": 1e6 * float(np.median(ts)) / len(atoms),
                                            "pt2": 1e6 * float(np.median(p2)) / len(atoms)},
                       "speedup": spread(ratio),
                       "seconds_per_step": {"torchscript": ts.tolist(), "pt2": p2.tolist()}}
                results["rows"].append(row)
                print(f"{dtype} {len(atoms)} atoms: {row['us_per_atom_step']}, speed-up {row['speedup']}", flush=True)
    return results


def main(argv=None) -> int:
    from hessdistill.engines.lammps import build_plugin

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("speed", "scaling", "pt2"), default="speed")
    p.add_argument("--quick", action="store_true", help="small sizes, a few steps: proves the harness works")
    p.add_argument("--wall", action="store_true", help="scaling: only the wall-clock efficiency (quiet machine)")
    p.add_argument("--only", choices=("work", "accuracy"), help="scaling: only this part (default: both)")
    p.add_argument("--workdir", default=str(RESULTS / "work" / "scaling"), help="scaling: labels and training runs")
    p.add_argument("--rounds", type=int, default=5, help="pt2: interleaved rounds")
    p.add_argument("--cells", type=int, nargs="+", default=[2, 4, 8], help="pt2: conventional cells per side")
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"], help="pt2: export dtypes")
    p.add_argument("--seconds", type=float, default=0.5, help="pt2: CPU seconds per timed call")
    p.add_argument("--out", help="results JSON (default: results/lammps_<mode>.json; speed prints only)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    if a.mode == "speed":
        print(json.dumps(run(a.quick), indent=2))
        return 0
    plugin = build_plugin()
    default = RESULTS / ("work/lammps_scaling_quick.json" if a.quick else "lammps_scaling.json")
    path = Path(a.out or (default if a.mode == "scaling" else RESULTS / "lammps_pt2.json"))
    if a.mode == "pt2":
        res = pt2(plugin, a.cells, a.dtypes, a.rounds, a.seconds)
    else:
        res = json.loads(path.read_text()) if path.exists() else {}
        context = {"date": now(), "quick": a.quick, "machine": machine(), "versions": versions()}
        if a.wall:
            res["wall"] = {**context, **wall(plugin, a.quick)}
        if not a.wall and a.only != "accuracy":
            res["work"] = {**context, **work(plugin, a.quick)}
        if not a.wall and a.only != "work":
            res["accuracy"] = {**context, **accuracy(plugin, a.quick, Path(a.workdir))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(res), indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
