"""The hessdistill benchmark: every figure of BENCHMARKS.md sections 1-6 in one run (methods: report.md).

    python benchmarks/run.py [--quick] [--out benchmarks/results] [--engines auto|quick|full|skip] [--jobs N]

Writes ``<out>/results.json`` after every part and the PNGs; a default-size run also renders BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from common import REPO, guarded, jsonable  # noqa: E402

FIGURES = ("speed", "accuracy", "training_cost", "labeling_cost", "conservation", "engines")


class Results(dict):
    """The results dict, saved to JSON whenever a part finishes."""

    def __init__(self, path: Path, **kw):
        super().__init__(**kw)
        self.path = path

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(jsonable(dict(self)), indent=1))
        os.replace(tmp, self.path)


def timed(results: Results, name: str, fn, *args, **kwargs):
    t0 = time.perf_counter()
    value = guarded(fn, *args, **kwargs)
    results.setdefault("section_seconds", {})[name] = round(time.perf_counter() - t0, 1)
    results.save()
    return value


def run(quick: bool, out: Path, jobs: int = 2, engines: str = "auto") -> dict:
    import torch

    from hessdistill.heap import keep_freed_memory

    keep_freed_memory()  # before any timing: teachers and students then run with the same heap (as the CLI does)
    torch.set_num_threads(1)
    import accuracy
    import conservation
    import labeling_cost
    import plots
    import report
    import speed
    import systems
    import training_cost

    size = common.QUICK if quick else common.DEFAULT
    out.mkdir(parents=True, exist_ok=True)
    if not (out / ".gitignore").exists():  # label stores, checkpoints and MD files stay out of git
        (out / ".gitignore").write_text("work/\n")
    work = out / "work" / size.name
    if work.exists():
        shutil.rmtree(work)  # fresh data and runs: the labelling and training times are part of the results
    work.mkdir(parents=True)
    start = time.perf_counter()
    res = Results(out / "results.json", command=" ".join(["python", "benchmarks/run.py", *sys.argv[1:]]),
                  date=common.now(), quick=quick, size=size.__dict__, machine=common.machine(),
                  versions=common.versions(), torch_threads=torch.get_num_threads(), training_processes=jobs,
                  engine_bench_size=engines if engines != "auto" else ("quick" if quick else "full"))
    for f in FIGURES:
        res[f] = {}
    res["data"] = {}
    res.save()

    datasets, records = {}, {}
    for system in ("ethanol", "si"):
        ds = timed(res, f"data:{system}", systems.build, system, size, work)
        if isinstance(ds, dict):  # failed
            res["data"][system] = ds
            for f in ("speed", "accuracy", "training_cost"):
                res[f][system] = {"error": f"no data: {ds['error']}"}
            continue
        datasets[system] = ds
        res["data"][system] = ds.summary()
    memory_probes = labeling_cost.start_memory_probes(size, max(2, jobs))  # no timing: may overlap training
    trained = timed(res, "train", accuracy.train, size, list(datasets.values()), work, jobs)
    for system in datasets:
        recs = trained.get(system, trained) if isinstance(trained, dict) else trained
        if isinstance(recs, dict):  # an error
            for f in ("speed", "accuracy"):
                res[f][system] = {"error": f"training failed: {recs.get('error')}"}
            continue
        records[system] = recs
        res.setdefault("runs", {})[system] = recs
        frames = guarded(systems.transfer_set, system, size.si_transfer)
        transfer = accuracy.transfer_errors(recs, size, frames) if isinstance(frames, list) else frames
        res["accuracy"][system] = guarded(accuracy.summarize, recs, size, transfer)
        res.save()

    res["training_cost"]["s_curve"] = {s: accuracy.s_curve(r, size) for s, r in records.items()
                                       if datasets[s].rows == "full"}
    for system, recs in records.items():
        res["speed"][system] = timed(res, f"speed:{system}", speed.measure, system, datasets[system], recs, size,
                                     res["accuracy"].get(system, {}))
    for system, ds in datasets.items():
        res["training_cost"][system] = timed(res, f"training_cost:{system}", training_cost.measure, ds, size)
    res["labeling_cost"] = timed(res, "labeling_cost", labeling_cost.measure, size,
                                 {n: systems.teacher(n) for n in ("ani1x", "sevennet0")}, memory_probes)
    if "ethanol" in records:
        main = accuracy.student(records["ethanol"], "ethanol", common.size_label(*size.students[0]))
        res["conservation"]["ethanol"] = timed(res, "conservation:ethanol", conservation.measure, "ethanol",
                                               datasets["ethanol"], main, systems.teacher("ani1x"), size, work)
    else:
        res["conservation"]["ethanol"] = {"error": "no ethanol student (data or training failed)"}
    for engine in ("openmm", "lammps"):
        if res["engine_bench_size"] == "skip":
            res["engines"][engine] = {"error": "skipped (--engines skip)"}
            continue
        res["engines"][engine] = timed(res, f"engines:{engine}", common.call_in_subprocess, f"{engine}_bench", "run",
                                       {"quick": res["engine_bench_size"] == "quick"}, timeout=3600,
                                       log_path=work / f"{engine}_bench.log")
    res["targets"] = targets(res)
    res["plots"] = plots.make_all(res, out)
    res["total_seconds"] = round(time.perf_counter() - start, 1)
    res.save()
    if not quick and out == report.RESULTS:
        report.write(out, plots=False)  # made above
    return res


def targets(res: dict) -> dict:
    """The targets: value, target and whether it was met (None when that part failed)."""
    import accuracy
    import lammps_bench
    import openmm_bench
    import speed
    import training_cost

    def get(part, *keys):
        for k in keys:
            if not isinstance(part, dict) or k not in part:
                return None
            part = part[k]
        return part

    def worst(ratios):  # the largest median ratio, None if none was measured
        values = [r["median"] for r in ratios if isinstance(r, dict)]
        return max(values) if values else None

    om = get(res, "engines", "openmm") or {}
    openmm = worst(e[k]["ratio"] for e in om.values() if isinstance(e, dict) for k in e
                   if isinstance(e[k], dict) and "ratio" in e[k])
    lammps = worst(r["ratio"] for r in get(res, "engines", "lammps", "sizes") or [])
    flat = get(res, "engines", "lammps", "flatness", "us_per_atom_step")
    rows = {f"speedup_si_sevennet0 (>= {speed.TARGET_SPEEDUP['si']:g}x, force MAE <= undistilled)":
            (get(res, "speed", "si", "main_speedup"), speed.TARGET_SPEEDUP["si"], get(res, "speed", "si", "target_met"))}
    for system in ("ethanol", "si"):
        rows[f"force_mae_ratio_{system} (<= {accuracy.TARGET_FORCE_RATIO:g})"] = (
            get(res, "accuracy", system, "force_mae_ratio"), accuracy.TARGET_FORCE_RATIO,
            get(res, "accuracy", system, "target_met"))
    for system in ("ethanol", "si"):
        rows[f"epoch_time_ratio_s1_{system} (<= {training_cost.TARGET_S1_RATIO:g}x)"] = (
            get(res, "training_cost", system, "s1_ratio"), training_cost.TARGET_S1_RATIO,
            get(res, "training_cost", system, "target_met"))
    for name, value, target in (("openmm_step_over_bare_worst", openmm, openmm_bench.TARGET_RATIO),
                                ("lammps_step_over_bare_worst", lammps, lammps_bench.TARGET_RATIO),
                                ("lammps_cost_per_atom_step_max_over_min", flat, lammps_bench.TARGET_FLATNESS)):
        rows[f"{name} (<= {target:g})"] = (value, target, None if value is None else bool(value <= target))
    return {k: {"value": v, "target": t, "met": m} for k, (v, t, m) in rows.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the harness works")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for results.json and PNGs")
    p.add_argument("--engines", choices=("auto", "quick", "full", "skip"), default="auto",
                   help="size of openmm_bench/lammps_bench: auto = quick with --quick, else full (LAMMPS 1k-32k "
                        "atoms, the longest part of a default run)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel training processes (training runs and memory probes only; every timing runs "
                        "alone); default 2 (1 with --quick: starting workers costs more than the tiny runs)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    jobs = args.jobs if args.jobs is not None else (1 if args.quick else min(2, os.cpu_count() or 1))
    res = run(args.quick, out, jobs=max(1, jobs), engines=args.engines)
    print(json.dumps(jsonable(res.get("targets", {})), indent=1))
    print(f"results: {out / 'results.json'} ({res['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
