"""Figure 5 (energy conservation): NVE drift and unstable runs of the main student (float32, float64) and
the teacher, through ``engines.run_md`` (ASE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import median

DISCARD = 0.2


def _bond_deviation(traj_path: str, reference) -> float:
    from ase.io import read

    from hessdistill.monitor.analysis import BOND_DEVIATION_THRESHOLD, bond_deviation, trajectory_from_frames

    frames = read(traj_path, index=":")
    periodic = bool(reference.pbc.all())
    symbols = reference.get_chemical_symbols()
    traj = trajectory_from_frames(symbols, np.array([f.positions for f in frames]),
                                  np.array([f.cell.array for f in frames]) if periodic else None)
    ref = trajectory_from_frames(symbols, reference.positions[None], reference.cell.array[None] if periodic else None)
    report = bond_deviation(traj, reference=ref, threshold=BOND_DEVIATION_THRESHOLD)
    return float(report["max_bond_deviation_A"])


def run_model(name: str, model_path, calculator, atoms, steps: int, seeds: int, report_interval: int,
              workdir: Path) -> dict:
    from hessdistill.monitor.analysis import BOND_DEVIATION_THRESHOLD
    from hessdistill.engines import MDOptions, run_md
    from hessdistill.monitor import drift_slope, read_monitor_csv

    drifts, deviations, stopped = [], [], []
    for seed in range(seeds):
        options = MDOptions(steps=steps, timestep_fs=0.5, temperature_K=300.0, ensemble="nve",
                            report_interval=report_interval, seed=seed, max_drift=None, max_deviation=None)
        res = run_md("ase", model_path, atoms, workdir / f"{name}_seed{seed}", options,
                     calculator=calculator() if calculator else None)
        data = read_monitor_csv(res.files["monitor_csv"])
        drifts.append(drift_slope(data["time_ps"], data["total_per_atom_eV"], discard_fraction=DISCARD))
        deviations.append(_bond_deviation(res.files["trajectory"], atoms))
        stopped.append(res.stopped)
    unstable = [s or not (d <= BOND_DEVIATION_THRESHOLD) for s, d in zip(stopped, deviations)]
    return {"steps": steps, "seeds": seeds, "drift_per_seed": drifts,
            "median_abs_drift": median(np.abs(drifts)), "mean_drift": float(np.mean(drifts)),
            "max_abs_drift": float(np.max(np.abs(drifts))), "max_bond_deviation_A_per_seed": deviations,
            "stopped_runs": int(sum(stopped)), "unstable_runs": int(sum(unstable))}


def measure(system: str, dataset, main_record: dict, teacher, size, workdir: Path) -> dict:
    """NVE runs of the student (float32, float64) and the teacher on the system's MD structure."""
    from hessdistill.formats import export_student
    from hessdistill.distill import model_from_checkpoint
    from hessdistill.progress import progress_bar

    atoms = dataset.md_structure
    workdir = Path(workdir) / system / "nve"
    model, _ = model_from_checkpoint(main_record["run_dir"])
    paths = {dt: export_student(model, workdir / f"student_{dt}.pt", dtype=dt, teacher=teacher.name)
             for dt in ("float32", "float64")}
    interval = max(1, min(10, size.nve_student_steps // 20))
    models = {f"student_{dt}": (p, None, size.nve_student_steps) for dt, p in paths.items()}
    models["teacher"] = (None, teacher.as_calculator, size.nve_teacher_steps)
    out = {"system": system, "atoms": len(atoms), "student": main_record["size"], "student_seed": main_record["seed"],
           "timestep_fs": 0.5, "temperature_K": 300.0, "discard_fraction": DISCARD, "report_interval": interval,
           "drift_unit": "eV/atom/ps", "unstable_criterion": "max bond-length deviation > 0.5 A or stopped",
           "models": {}}
    with progress_bar(len(models), f"NVE [{system}]", unit="model") as bar:
        for name, (path, calc, steps) in models.items():
            out["models"][name] = run_model(name, path, calc, atoms, steps, size.nve_seeds, interval, workdir)
            bar.update(1)
    return out
