"""The built-in example: distil ANI-1x into a PaiNN student for ethanol, end to end, in minutes on 2 CPU cores.

sample (teacher Langevin MD at 600 K) -> label (energy, forces, full Hessians) -> distill (Hessian-row loss,
s = 1) -> export (TorchScript) -> short ASE NVE run of the student -> fidelity report (:mod:`hessdistill.report`) ->
summary (held-out force MAE against the teacher, speed ratio student/teacher measured side by side, energy drift,
minimum RMSD and frequency error against the teacher).

``hessdistill example`` runs it with the command's process settings (one torch thread, the heap setting of
:mod:`hessdistill.heap`); ``main()`` called from Python changes neither.
"""

from __future__ import annotations

import json
import time
from pathlib import Path



def _time_forces(calc, atoms, repeats: int) -> float:
    a = atoms.copy()
    a.calc = calc
    for _ in range(5):  # warm-up: the TorchScript profiling executor optimizes during the first calls
        a.get_forces()
        a.positions[0, 0] += 1e-6
    t0 = time.perf_counter()
    for k in range(repeats):
        a.positions[0, 0] += 1e-4 * (-1) ** k  # force a recalculation
        a.get_forces()
    return (time.perf_counter() - t0) / repeats


def main(out: str = "example_run", quick: bool = False) -> dict:
    from ..engines.ase.calculator import StudentCalculator
    from ..distill.config import DistillConfig
    from ..engines import MDOptions, run_md
    from ..label.store import label_structures
    from ..sample import split, starting_structure, teacher_md, write_structures
    from ..teachers import load_teacher
    from ..distill import distill
    from ..report import fidelity_report, summary_lines

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = starting_structure("CH3CH2OH")
    teacher = load_teacher("ani1x")

    print("[1/6] sample: ANI-1x Langevin MD of ethanol at 600 K")
    n = 30 if quick else 100
    structures = split(teacher_md(start, teacher.as_calculator(), n, 600.0, interval=10, seed=0), (0.7, 0.1, 0.2))
    write_structures(structures, out / "structures.extxyz")

    print("[2/6] label: energies, forces and full Hessians")
    label_structures(structures, teacher, out / "labels.h5", rows="full")

    print("[3/6] distill: PaiNN student, Hessian-row loss (s = 1)")
    config = DistillConfig(architecture="painn", features=32, num_interactions=2, cutoff=4.0,
                           epochs=15 if quick else 120, patience=40, lr_schedule="cosine", batch_size=4,
                           hessian_rows=1, dtype="float32", export_dtype="float64")  # wH: the package default
    summary = distill(config, out / "labels.h5", out / "distilled")
    student = summary["student"]

    print("[4/6] speed: student vs teacher forces on the same structure, side by side")
    repeats = 10 if quick else 40
    t_teacher = _time_forces(teacher.as_calculator(), start, repeats)
    t_student = _time_forces(StudentCalculator(student), start, repeats)

    print("[5/6] MD: ASE NVE of the student, 0.5 fs")
    md = run_md("ase", student, start, out / "md", MDOptions(steps=200 if quick else 1000, timestep_fs=0.5,
                                                             temperature_K=300.0, report_interval=5, progress=True))

    print("[6/6] fidelity report: held-out errors, minimum and frequencies against the teacher")
    report = fidelity_report(student, out / "labels.h5", out / "report", teacher=teacher)

    result = {
        "teacher": teacher.name,
        "structures": {s: sum(a.info["split"] == s for a in structures) for s in ("train", "val", "test")},
        "student": student,
        "test_force_mae_meV_per_A": summary["test"]["force_mae"] * 1000,
        "test_energy_mae_meV_per_atom": summary["test"]["energy_mae_per_atom"] * 1000,
        "test_hessian_mae_eV_per_A2": summary["test"]["hessian_mae"],
        "teacher_ms_per_force_call": t_teacher * 1000,
        "student_ms_per_force_call": t_student * 1000,
        "speedup": t_teacher / t_student,
        "nve_drift_eV_per_atom_ps": md.drift_eV_per_atom_ps,
        "nve_max_deviation_eV_per_atom": md.max_deviation_eV_per_atom,
        "nve_stopped": md.stopped,
        "fidelity": summary_lines(report),
    }
    (out / "example_summary.json").write_text(json.dumps(result, indent=2))
    print("\nSummary (held-out test structures, errors against the teacher):")
    print(f"  student file           {student}")
    print(f"  force MAE              {result['test_force_mae_meV_per_A']:.1f} meV/A")
    print(f"  energy MAE             {result['test_energy_mae_meV_per_atom']:.2f} meV/atom")
    print(f"  Hessian MAE            {result['test_hessian_mae_eV_per_A2']:.3f} eV/A^2")
    print(f"  speed (forces, 1 core) teacher {t_teacher * 1000:.1f} ms, student {t_student * 1000:.1f} ms: "
          f"{result['speedup']:.1f}x")
    print(f"  NVE drift              {md.drift_eV_per_atom_ps:.2e} eV/atom/ps"
          + (f"  (STOPPED: {md.reason})" if md.stopped else ""))
    for line in result["fidelity"]:
        print(f"  {line}")
    print(f"  plots                  {out / 'distilled' / 'learning_curve.png'}, {md.files['monitor_png']}, "
          f"{out / 'report' / 'report.png'}")
    return result


if __name__ == "__main__":
    main()
