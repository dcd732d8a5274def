"""Figure 1 (speed): MD steps per second of each student against its teacher on the same structure.

ASE VelocityVerlet (0.5 fs, 300 K) drives both. The teacher runs through two calculators, the package's
``TeacherCalculator`` and the teacher's own ASE calculator (torchani float32 / ``SevenNetCalculator``), and the
faster of the two is the reference, so speed-ups are never inflated by a slow teacher wrapper. The main student also
runs in OpenMM (ethanol) or LAMMPS (Si) through ``engines.run_md``; there the time per step is the
difference of a 2N-step and an N-step run, so engine start-up and TorchScript warm-up cancel. All models are
timed in interleaved rounds (teacher, student 1, student 2, ..., teacher, ...); medians give the ratios.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from common import Seconds, guarded, interleaved, median, ratio

TARGET_SPEEDUP = {"si": 25.0}


class AseStepper:
    """VelocityVerlet of one model on its own copy of the structure; ``__call__(n)`` runs n steps and returns the
    seconds per step (the dynamics continue from call to call)."""

    def __init__(self, atoms, calc, warmup: int = 3, seed: int = 0):
        from ase import units
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
        from ase.md.verlet import VelocityVerlet

        self.atoms = atoms.copy()
        self.atoms.calc = calc
        MaxwellBoltzmannDistribution(self.atoms, temperature_K=300.0, rng=np.random.default_rng(seed))
        Stationary(self.atoms)
        self.dyn = VelocityVerlet(self.atoms, 0.5 * units.fs)
        self.dyn.run(warmup)  # the TorchScript profiling executor optimizes during the first calls

    def __call__(self, n: int) -> Seconds:
        import time

        t0 = time.perf_counter()
        self.dyn.run(n)
        return Seconds((time.perf_counter() - t0) / n)


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


def engine_step_time(engine: str, model_path, atoms, steps: int) -> Seconds:
    """Seconds per MD step of ``engine`` (openmm or lammps): (t(2N) - t(N)) / N from two NVE runs."""
    from hessdistill.engines import MDOptions, run_md

    extra = {"openmm": {"analyze": False}}.get(engine, {})
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (steps, 2 * steps):
            options = MDOptions(steps=n, timestep_fs=0.5, temperature_K=300.0, report_interval=n, max_drift=None,
                                max_deviation=None)
            res = run_md(engine, model_path, atoms, Path(tmp) / f"run{n}", options, **extra)
            if res.stopped:
                raise RuntimeError(f"{engine} run stopped: {res.reason}")
            times.append(res.wall_s)  # the MD loop only (LAMMPS: its own loop time)
    return Seconds((times[1] - times[0]) / steps)


def measure(system: str, dataset, records: list[dict], size, acc: dict) -> dict:
    """Steps/s of the teacher (both calculators) and of every distilled student (seed 0), side by side.
    Force errors next to each size come from figure 2 (``acc``: test MAE, mean over seeds)."""
    import accuracy
    import systems
    from hessdistill.engines.ase import StudentCalculator

    atoms = dataset.md_structure
    teacher = systems.teacher(systems.SYSTEMS[system]["teacher"])
    # teachers are not TorchScript: one warm-up step (graph set-up, first allocations) is enough
    models = {"teacher:hessdistill": AseStepper(atoms, teacher.as_calculator(), warmup=1)}
    native = guarded(native_teacher_calculator, teacher.name)
    native_error = native.get("error") if isinstance(native, dict) else None
    if native is not None and native_error is None:
        models["teacher:native"] = AseStepper(atoms, native, warmup=1)
    students = {}
    main = accuracy.student(records, system, accuracy.size_label(*size.students[0]))
    for arch, features, layers in size.students:
        label = accuracy.size_label(arch, features, layers)
        rec = accuracy.student(records, system, label)
        if rec is None:
            continue
        students[label] = rec
        models[f"student:{label}"] = AseStepper(atoms, StudentCalculator(rec["student_float32"], device="cpu"))
    main_f64 = None
    if main is not None:  # the main student exported in float64 as well
        from hessdistill.formats import export_student
        from hessdistill.distill import model_from_checkpoint

        model, _ = model_from_checkpoint(main["run_dir"])
        main_f64 = export_student(model, Path(main["run_dir"]) / "student_float64.pt", dtype="float64",
                                  teacher=teacher.name)
        models[f"student:{main['size']}:float64"] = AseStepper(atoms, StudentCalculator(main_f64, device="cpu"))
    engine = "openmm" if system == "ethanol" else "lammps"
    fns = {}
    for name, stepper in models.items():
        n = size.teacher_md_steps[teacher.name] if name.startswith("teacher") else size.student_md_steps
        fns[name] = (lambda st=stepper, n=n: st(n))
    engine_error = None
    if main is not None:
        probe = guarded(engine_step_time, engine, main["student_float32"], atoms, max(2, size.engine_steps // 10))
        if isinstance(probe, dict):
            engine_error = probe["error"]
        else:
            fns[f"student:{main['size']}:{engine}"] = lambda: engine_step_time(engine, main["student_float32"], atoms,
                                                                              size.engine_steps)
    times = interleaved(fns, size.rounds, desc=f"speed [{system}]")
    ms = {k: 1e3 * median(v) for k, v in times.items()}
    teacher_key = min((k for k in ms if k.startswith("teacher")), key=lambda k: ms[k])
    t_ref = ms[teacher_key]
    out = {
        "structure_atoms": len(atoms), "timestep_fs": 0.5, "rounds": size.rounds, "dtype_students": "float32",
        "teacher": {"name": teacher.name, "reference": teacher_key, "ms_per_step": t_ref, "steps_per_s": 1e3 / t_ref,
                    "calculators_ms_per_step": {k: v for k, v in ms.items() if k.startswith("teacher")}},
        "students": {}, "engine": {"name": engine},
    }
    if native_error:
        out["teacher"]["native_error"] = native_error
    for label, rec in students.items():
        errors = acc.get("sizes", {}).get(label, {})
        entry = {"ms_per_step": ms[f"student:{label}"], "steps_per_s": 1e3 / ms[f"student:{label}"],
                 "speedup": ratio(t_ref, ms[f"student:{label}"]), "parameters": rec["parameters"],
                 "force_mae_distilled": errors.get("distilled", {}).get("force_mae"),
                 "force_mae_undistilled": errors.get("undistilled", {}).get("force_mae")}
        out["students"][label] = entry
    if main is not None:
        f64 = f"student:{main['size']}:float64"
        out["main_float64"] = {"ms_per_step": ms[f64], "speedup": ratio(t_ref, ms[f64])}
        key = f"student:{main['size']}:{engine}"
        if key in ms:
            out["engine"].update({"student": main["size"], "ms_per_step": ms[key], "steps_per_s": 1e3 / ms[key],
                                  "speedup": ratio(t_ref, ms[key]),
                                  "vs_student_ase": ratio(ms[f"student:{main['size']}"], ms[key])})
        else:
            out["engine"]["error"] = engine_error
        m = out["students"][main["size"]]
        out["main_size"] = main["size"]
        out["main_speedup"] = m["speedup"]
        # "at force error no worse than the undistilled student": the main size's distilled force MAE (mean over
        # seeds, from figure 2) against the undistilled one of the same size.
        out["main_force_mae_not_worse"] = bool(m["force_mae_undistilled"] is not None and m["force_mae_distilled"]
                                               is not None and m["force_mae_distilled"] <= m["force_mae_undistilled"])
        if system in TARGET_SPEEDUP:
            out["target_speedup"] = TARGET_SPEEDUP[system]
            out["target_met"] = bool(m["speedup"] >= TARGET_SPEEDUP[system] and out["main_force_mae_not_worse"])
    return out
