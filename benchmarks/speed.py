"""Figure 1 (speed): MD steps per second of each student against its teacher (ASE, OpenMM or LAMMPS, .pt2).

Run alone, one mode: the ASE calculator's time per energy+forces call, TorchScript against .pt2 (docs/design/pt2.md):

    OMP_NUM_THREADS=1 python benchmarks/speed.py pt2 [--rounds 7] [--sizes ethanol si64 si512] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from common import guarded
from timing import Seconds, clock, interleaved, spread

TARGET_SPEEDUP = {"si": 25.0}


def ase_md(atoms, calc, seed: int = 0):
    """VelocityVerlet of one model on its own copy of ``atoms``, started at 300 K; ``run(n)`` continues it."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.md.verlet import VelocityVerlet

    atoms = atoms.copy()
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return VelocityVerlet(atoms, 0.5 * units.fs)


def native_teacher_calculator(teacher_name: str):
    """The teacher's own ASE calculator (None if there is none)."""
    if teacher_name == "ani1x":
        import torchani

        from hessdistill.teachers.ani import build_ani1x

        model, species = build_ani1x()
        return torchani.ase.Calculator(species, model.float().eval())
    if teacher_name == "sevennet0":
        from sevenn.calculator import SevenNetCalculator

        return SevenNetCalculator("7net-0", device="cpu")
    return None


def engine_step_time(engine: str, model_path, atoms, steps: int, repeats: int = 2) -> Seconds:
    """CPU seconds per MD step of ``engine`` (openmm or lammps, both in this process): (t(2N) - t(N)) / N from NVE
    runs, so set-up, file writing and plotting cancel. Each length runs ``repeats`` times and its fastest run
    counts: a one-off cost inside one run (garbage collection of the previous run's context, a slow first
    TorchScript optimisation) otherwise made the difference negative now and then (seen in CI at 100 steps)."""
    from hessdistill.engines import MDOptions, run_md

    extra = {"openmm": {"analyze": False}}.get(engine, {})
    times = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            for n in (steps, 2 * steps):
                options = MDOptions(steps=n, timestep_fs=0.5, temperature_K=300.0, report_interval=n,
                                    max_drift=None, max_deviation=None)
                t0 = clock()
                res = run_md(engine, model_path, atoms, Path(tmp) / f"run{n}.{rep}", options, **extra)
                elapsed = clock() - t0
                if res.stopped:
                    raise RuntimeError(f"{engine} MD stopped: {res.reason}")
                times[n] = min(times.get(n, elapsed), elapsed)
    return Seconds((times[2 * steps] - times[steps]) / steps)


def measure(system: str, dataset, records: list[dict], size, acc: dict) -> dict:
    """Steps/s of the teacher (both calculators) and of every distilled student (seed 0), side by side.
    Force errors next to each size come from figure 2 (``acc``: test MAE, mean over seeds)."""
    import accuracy
    import systems
    from hessdistill.distill import model_from_checkpoint
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.formats import export_student, save_student

    atoms = dataset.md_structure
    teacher = systems.teacher(systems.SYSTEMS[system]["teacher"])
    calcs = {"teacher:hessdistill": teacher.as_calculator()}
    native = guarded(native_teacher_calculator, teacher.name)
    if native is not None and not isinstance(native, dict):
        calcs["teacher:native"] = native
    students = {accuracy.size_label(*s): accuracy.student(records, system, accuracy.size_label(*s))
                for s in size.students}
    students = {label: rec for label, rec in students.items() if rec is not None}
    for label, rec in students.items():
        calcs[f"student:{label}"] = StudentCalculator(rec["student_float32"], device="cpu")
    main = accuracy.student(records, system, accuracy.size_label(*size.students[0]))
    engine = "openmm" if system == "ethanol" else "lammps"
    main_pt2 = None
    if main is not None:  # the main student exported in float64 as well
        model, _ = model_from_checkpoint(main["run_dir"])
        main_f64 = export_student(model, Path(main["run_dir"]) / "student_float64.pt", dtype="float64",
                                  teacher=teacher.name)
        calcs[f"student:{main['size']}:float64"] = StudentCalculator(main_f64, device="cpu")
        main_pt2 = guarded(save_student, model, Path(main["run_dir"]) / "student_float32.pt2", dtype="float32",
                           teacher=teacher.name)
        if not isinstance(main_pt2, dict):  # an error (no compiler) leaves the TorchScript rows standing
            calcs[f"student:{main['size']}:pt2"] = StudentCalculator(main_pt2, device="cpu")
    fns, units = {}, {}
    for name, calc in calcs.items():
        units[name] = size.teacher_md_steps[teacher.name] if name.startswith("teacher") else size.student_md_steps
        fns[name] = (lambda dyn=ase_md(atoms, calc), n=units[name]: dyn.run(n))
    engine_keys, engine_errors = {}, {}
    files = {} if main is None else {"torchscript": main["student_float32"]}
    if main_pt2 is not None and not isinstance(main_pt2, dict):
        files["pt2"] = main_pt2
    skipped = {}
    if engine == "openmm" and "pt2" in files:  # runs a .pt2 only through PythonForce (OpenMM >= 8.5)
        from hessdistill.engines.openmm.backend import backend_for

        unable = guarded(backend_for, files["pt2"])
        if isinstance(unable, dict):
            skipped["pt2"] = unable["error"].replace(str(files["pt2"]), "the package")
            del files["pt2"]
    for fmt, path in files.items():  # a short run first: an engine that fails leaves the other timings standing
        probe = guarded(engine_step_time, engine, path, atoms, max(2, size.engine_steps // 10))
        if isinstance(probe, dict):
            engine_errors[fmt] = probe["error"]
        else:
            key = engine_keys[fmt] = f"student:{main['size']}:{engine}" + (":pt2" if fmt == "pt2" else "")
            fns[key] = lambda path=path: engine_step_time(engine, path, atoms, size.engine_steps)
    t = interleaved(fns, size.rounds, units=units, desc=f"speed [{system}]")
    teachers = [k for k in fns if k.startswith("teacher")]
    ref = t.fastest(teachers)
    ms = {k: 1e3 * t.median(k) for k in fns}
    out = {
        "structure_atoms": len(atoms), "timestep_fs": 0.5, "rounds": size.rounds, "dtype_students": "float32",
        "teacher": {"name": teacher.name, "reference": ref, "ms_per_step": ms[ref],
                    "calculators_ms_per_step": {k: ms[k] for k in teachers}},
        "students": {label: {"ms_per_step": ms[f"student:{label}"], "speedup": t.ratio(ref, f"student:{label}"),
                             "parameters": rec["parameters"],
                             **{f"force_mae_{arm}": acc.get("sizes", {}).get(label, {}).get(arm, {}).get("force_mae")
                                for arm in ("distilled", "undistilled")}}
                     for label, rec in students.items()},
        "engine": {"name": engine}, "timing": t.summary(),
    }
    if isinstance(native, dict):
        out["teacher"]["native_error"] = native["error"]
    if main is None:
        return out
    f64, pt2 = f"student:{main['size']}:float64", f"student:{main['size']}:pt2"
    out["main_float64"] = {"ms_per_step": ms[f64], "speedup": t.ratio(ref, f64)}
    if pt2 in ms:
        out["main_pt2"] = {"ms_per_step": ms[pt2], "speedup": t.ratio(ref, pt2),
                           "over_torchscript": t.ratio(f"student:{main['size']}", pt2)}
    else:
        out["main_pt2"] = {"error": main_pt2["error"]}
    out["engine"]["student"] = main["size"]
    if "torchscript" in engine_keys:
        key = engine_keys["torchscript"]
        out["engine"].update({"ms_per_step": ms[key], "speedup": t.ratio(ref, key),
                              "vs_student_ase": t.ratio(f"student:{main['size']}", key)})
    else:
        out["engine"]["error"] = engine_errors.get("torchscript")
    if "pt2" in engine_keys:
        key = engine_keys["pt2"]
        out["engine"]["pt2"] = {"ms_per_step": ms[key], "speedup": t.ratio(ref, key),
                                "over_torchscript": t.ratio(engine_keys.get("torchscript", key), key)}
    elif "pt2" in files:
        out["engine"]["pt2"] = {"error": engine_errors["pt2"]}
    elif "pt2" in skipped:
        out["engine"]["pt2"] = {"skipped": skipped["pt2"]}
    m = out["students"][main["size"]]
    out["main_size"] = main["size"]
    out["main_speedup"] = m["speedup"]["median"]
    # "at force error no worse than the undistilled student": the main size's distilled force MAE (mean over
    # seeds, from figure 2) against the undistilled one of the same size.
    out["main_force_mae_not_worse"] = bool(m["force_mae_undistilled"] is not None and m["force_mae_distilled"]
                                           is not None and m["force_mae_distilled"] <= m["force_mae_undistilled"])
    if system in TARGET_SPEEDUP:
        out["target_speedup"] = TARGET_SPEEDUP[system]
        out["target_met"] = bool(out["main_speedup"] >= TARGET_SPEEDUP[system] and out["main_force_mae_not_worse"])
    return out


def pt2_in_ase(sizes, dtypes, rounds: int) -> dict:
    """Per dtype and structure: ms per energy+forces call of the ASE calculator ("ase") and of the model on a
    ready neighbour list ("model"), TorchScript against .pt2, and the per-round speed-up."""
    import torch
    from ase.build import molecule
    from ase.calculators.calculator import all_changes

    from common import default_student
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.formats import save_student
    from hessdistill.heap import keep_freed_memory
    from hessdistill.neighbors import neighbor_list
    from systems import silicon

    torch.set_num_threads(1)
    # the heap setting the CLI applies and a user's MD script is told to (heap.py): without it TorchScript's
    # per-call page faults made its times vary 1.5x between runs of this benchmark, the package's hardly
    keep_freed_memory()
    model = default_student(["H", "C", "O", "Si"], [1, 6, 8, 14])
    structures = {}
    for name in sizes:
        structures[name] = molecule("CH3CH2OH") if name == "ethanol" else silicon(SI_CELLS[name], seed=1)
        if name == "ethanol":
            structures[name].rattle(0.05, seed=1)

    def ase_call(calc, atoms, rng) -> None:  # positions move a little each call, so nothing is cached
        atoms.positions += rng.normal(scale=1e-4, size=atoms.positions.shape)
        calc.calculate(atoms, ["energy", "forces"], all_changes)

    def model_call(student, atoms):
        ei, sh = neighbor_list(atoms, student.cutoff)
        inputs = (torch.tensor(atoms.positions, dtype=student.dtype), student.species(atoms.get_chemical_symbols()),
                  torch.tensor(ei), torch.tensor(sh, dtype=student.dtype))
        return lambda: student.evaluate(*inputs)

    results = {"torch": torch.__version__, "clock": "process_time", "threads": 1, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in dtypes:
            calcs = {fmt: StudentCalculator(save_student(model, Path(tmp) / f"s_{dtype}{suffix}", dtype=dtype,
                                                         format=fmt), device="cpu")
                     for fmt, suffix in (("torchscript", ".pt"), ("pt2", ".pt2"))}
            for name, atoms in structures.items():
                fns = {}
                for fmt, calc in calcs.items():
                    fns[f"ase {fmt}"] = lambda c=calc, a=atoms.copy(), r=np.random.default_rng(0): ase_call(c, a, r)
                    fns[f"model {fmt}"] = model_call(calc.student, atoms)
                calls = max(2, int(2000 / len(atoms)))
                # 3 warm-up calls each: TorchScript's profiling executor optimizes during the first calls
                seconds = interleaved(fns, rounds, calls=calls, warmup=3, desc=f"{name} {dtype}").seconds
                for what in ("ase", "model"):
                    ts, pt2 = (np.asarray(seconds[f"{what} {fmt}"]) for fmt in ("torchscript", "pt2"))
                    row = {"system": name, "atoms": len(atoms), "dtype": dtype, "what": what, "calls_per_round": calls,
                           "ms_torchscript": 1e3 * float(np.median(ts)), "ms_pt2": 1e3 * float(np.median(pt2)),
                           "speedup": spread(ts / pt2), "seconds": {"torchscript": ts.tolist(), "pt2": pt2.tolist()}}
                    results["rows"].append(row)
                    sp = row["speedup"]
                    print(f"{name:8s} {len(atoms):4d} atoms {dtype} {what:5s}: TorchScript "
                          f"{row['ms_torchscript']:8.3f} ms, pt2 {row['ms_pt2']:8.3f} ms, speed-up "
                          f"{sp['median']:.2f}x ({sp['min']:.2f}-{sp['max']:.2f})", flush=True)
    return results


SI_CELLS = {"si8": 1, "si64": 2, "si216": 3, "si512": 4}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip())
    p.add_argument("mode", choices=["pt2"], help="the mode (figure 1 itself runs in run.py)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sizes", nargs="+", default=["ethanol", "si64", "si512"], choices=["ethanol", *SI_CELLS])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    results = pt2_in_ase(a.sizes, a.dtypes, a.rounds)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
