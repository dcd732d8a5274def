"""The studies behind the default loss weights: the same student trained with weight w over seeds, test MAEs
per system and weight (mean over seeds).

    python benchmarks/studies/weight_sweep.py --option hessian_weight   # wH = 0, 10, 30, 100 (BENCHMARKS.md section 2)
    python benchmarks/studies/weight_sweep.py --option stress_weight    # wS = 0, 1, 10, 100 (docs/design/training.md)

hessian_weight trains run.py's main student on run.py's ethanol and Si data; stress_weight a PaiNN 16x2 on
rattled, strained LJ and Si cells, with the student's pressure over -2..+2% volumetric strain against the
teacher's. Each writes ``results/<option>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

from common import in_workers  # noqa: E402

RESULTS = Path(__file__).parent / "results"
# weights, seeds, the test MAEs averaged over seeds, the values also kept per seed
SWEEPS = {
    "hessian_weight": dict(weights=(0.0, 10.0, 30.0, 100.0), seeds=(0, 1, 2),
                           mean=("force_mae", "hessian_mae", "energy_mae_per_atom"), per_seed=("force_mae",)),
    "stress_weight": dict(weights=(0.0, 1.0, 10.0, 100.0), seeds=(0, 1),
                          mean=("force_mae", "energy_mae_per_atom", "stress_mae", "eos_error"),
                          per_seed=("eos_error", "p_student_GPa")),
}
CELLS = {  # stress_weight's systems
    "lj": dict(element="Ar", lattice="fcc", a=5.0, teacher="lj", n=40),
    "si": dict(element="Si", lattice="diamond", a=5.43, teacher="sevennet0", n=40),
}


def _teacher(name):
    from hessdistill.teachers import load_teacher

    return load_teacher(name, cutoff=6.0) if name == "lj" else load_teacher(name)


def _crystal(system):
    from ase.build import bulk

    s = CELLS[system]
    return bulk(s["element"], s["lattice"], a=s["a"], cubic=True)


def datasets(option: str, folder: Path) -> dict:
    """{system: data set}: run.py's (hessian_weight) or label stores of rattled, strained cells (60/20/20)."""
    if option == "hessian_weight":
        import common
        import systems

        return {s: systems.build(s, common.DEFAULT, folder) for s in ("ethanol", "si")}
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, split, strained

    out = {}
    for system, spec in CELLS.items():
        structures = split(strained(rattled(_crystal(system), spec["n"], 0.05, seed=0), 0.01, seed=0), (0.6, 0.2, 0.2))
        out[system] = folder / f"{system}.h5"
        label_structures(structures, _teacher(spec["teacher"]), out[system], rows=4, progress=False)
    return out


def pressure_error(student_path, system: str) -> dict:
    """Student and teacher pressure (GPa) on the perfect crystal at -2 .. +2% volumetric strain."""
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.units import EV_PER_A3_TO_GPA

    start, teacher = _crystal(system), _teacher(CELLS[system]["teacher"])
    calc = StudentCalculator(student_path, device="cpu")
    p_student, p_teacher = [], []
    for dv in np.linspace(-0.02, 0.02, 5):
        a = start.copy()
        a.set_cell(start.cell.array * (1 + dv) ** (1 / 3), scale_atoms=True)
        p_teacher.append(-teacher.stress(a)[:3].mean() * EV_PER_A3_TO_GPA)
        a.calc = calc
        p_student.append(-a.get_stress()[:3].mean() * EV_PER_A3_TO_GPA)
    p_student, p_teacher = np.array(p_student), np.array(p_teacher)
    return {"p_student_GPa": p_student.tolist(), "p_teacher_GPa": p_teacher.tolist(),
            "eos_error": float(np.abs(p_student - p_teacher).max() / np.abs(p_teacher).max())}


def train_one(option: str, system: str, data, folder: str, weight: float, seed: int) -> dict:
    """One training run in a worker process: its test MAEs (and stress_weight's pressure error), flat."""
    import torch

    from hessdistill.distill import DistillConfig, distill

    torch.set_num_threads(1)
    if option == "hessian_weight":
        import accuracy
        import common

        arch, features, layers = common.DEFAULT.students[0]
        job = dict(arch=arch, features=features, layers=layers, seed=seed, hessian_weight=weight, s=1)
        return accuracy.train_one(common.DEFAULT, data, folder, job)["test"]
    config = DistillConfig(architecture="painn", features=16, num_interactions=2, cutoff=5.0, epochs=150,
                           lr_schedule="cosine", compile="off", device="cpu", stress_weight=weight, seed=seed)
    summary = distill(config, data, Path(folder) / f"{system}_ws{weight:g}_seed{seed}", progress=False)
    return {**summary["test"], **pressure_error(summary["student"], system)}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--option", required=True, choices=list(SWEEPS), help="the DistillConfig weight swept")
    option = p.parse_args(argv).option
    sweep = SWEEPS[option]
    with tempfile.TemporaryDirectory() as tmp:
        data = datasets(option, Path(tmp))
        jobs = [(s, w, seed) for s in data for seed in sweep["seeds"] for w in sweep["weights"]]
        records = in_workers(train_one, [(option, s, data[s], tmp, w, seed) for s, w, seed in jobs], 2, option)
    failed = [r["error"] for r in records if "error" in r]
    if failed:
        raise RuntimeError(f"{len(failed)} training run(s) failed: {failed[0]}")
    out: dict = {system: {} for system in data}
    for system in data:
        for w in sweep["weights"]:
            runs = [r for (s, rw, _), r in zip(jobs, records) if s == system and rw == w]
            m = {k: float(np.mean([r[k] for r in runs])) for k in sweep["mean"]}
            m.update({f"{k}_per_seed": [r[k] for r in runs] for k in sweep["per_seed"]})
            if "p_teacher_GPa" in runs[0]:
                m["p_teacher_GPa"] = runs[0]["p_teacher_GPa"]
            out[system][f"{w:g}"] = m
            print(f"{system:8s} {option} {w:5g}: " + ", ".join(f"{k} {m[k]:.4g}" for k in sweep["mean"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{option}.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
