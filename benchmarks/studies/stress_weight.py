"""The study behind the default stress-loss weight wS (docs/design/training.md): wS = 0, 1, 10, 100 on
rattled, strained LJ and Si cells; test MAEs and the equation-of-state error.

    python benchmarks/studies/stress_weight.py        # writes results/stress_weight.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import json  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

WEIGHTS = (0.0, 1.0, 10.0, 100.0)
SEEDS = (0, 1)
RESULTS = Path(__file__).parent / "results"
SYSTEMS = {
    "lj": dict(element="Ar", lattice="fcc", a=5.0, teacher="lj", n=40),
    "si": dict(element="Si", lattice="diamond", a=5.43, teacher="sevennet0", n=40),
}


def _teacher(name):
    from hessdistill.teachers import load_teacher

    return load_teacher(name, cutoff=6.0) if name == "lj" else load_teacher(name)


def _start(system):
    from ase.build import bulk

    s = SYSTEMS[system]
    return bulk(s["element"], s["lattice"], a=s["a"], cubic=True)


def build(system: str, folder: Path) -> Path:
    """The label store of one system (rattled, strained cells; 60/20/20 split)."""
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, split, strained

    path = folder / f"{system}.h5"
    structures = split(strained(rattled(_start(system), SYSTEMS[system]["n"], 0.05, seed=0), 0.01, seed=0),
                       (0.6, 0.2, 0.2))
    label_structures(structures, _teacher(SYSTEMS[system]["teacher"]), path, rows=4, progress=False)
    return path


def eos_error(student_path, system: str) -> dict:
    """Student and teacher pressure (GPa) on the perfect crystal at -2 .. +2% volumetric strain."""
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.units import EV_PER_A3_TO_GPA

    start, teacher = _start(system), _teacher(SYSTEMS[system]["teacher"])
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


def train_one(system: str, labels: str, folder: str, ws: float, seed: int) -> dict:
    import torch

    from hessdistill.distill import DistillConfig, distill

    torch.set_num_threads(1)
    config = DistillConfig(architecture="painn", features=16, num_interactions=2, cutoff=5.0, epochs=150,
                           lr_schedule="cosine", compile="off", device="cpu", stress_weight=ws, seed=seed)
    t0 = time.perf_counter()
    summary = distill(config, labels, Path(folder) / f"{system}_ws{ws:g}_seed{seed}", progress=False)
    return {"system": system, "stress_weight": ws, "seed": seed, "seconds": time.perf_counter() - t0,
            "test": summary["test"], **eos_error(summary["student"], system)}


def main() -> dict:
    from hessdistill.units import EV_PER_A3_TO_GPA

    with tempfile.TemporaryDirectory() as tmp:
        data = {s: build(s, Path(tmp)) for s in SYSTEMS}
        jobs = [(s, str(data[s]), tmp, ws, seed) for s in SYSTEMS for seed in SEEDS for ws in WEIGHTS]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            records = [f.result() for f in [pool.submit(train_one, *job) for job in jobs]]
    out = {}
    for system in SYSTEMS:
        out[system] = {}
        for ws in WEIGHTS:
            runs = [r for r in records if r["system"] == system and r["stress_weight"] == ws]
            m = {k: float(np.mean([r["test"][k] for r in runs]))
                 for k in ("force_mae", "energy_mae_per_atom", "stress_mae")}
            m["eos_error"] = float(np.mean([r["eos_error"] for r in runs]))
            m["eos_error_per_seed"] = [r["eos_error"] for r in runs]
            m["p_teacher_GPa"] = runs[0]["p_teacher_GPa"]
            m["p_student_GPa_per_seed"] = [r["p_student_GPa"] for r in runs]
            out[system][f"{ws:g}"] = m
            seeds = ", ".join(f"{100 * e:.2f}" for e in m["eos_error_per_seed"])
            print(f"{system:3s} wS {ws:5g}: force {1e3 * m['force_mae']:6.2f} meV/A, energy "
                  f"{1e3 * m['energy_mae_per_atom']:.3f} meV/atom, stress {m['stress_mae'] * EV_PER_A3_TO_GPA:.4f} "
                  f"GPa, EOS error {100 * m['eos_error']:.2f}% (seeds {seeds})", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stress_weight.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options: --help only
    main()
