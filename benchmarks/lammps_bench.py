"""LAMMPS step time with pair_style hessdistill against the bare student (TorchScript forward + backward) on the
same structure, and the cost per atom-step from ~1k to 32k atoms. Targets (issue 3): ratio <= 1.1, cost per
atom-step flat within 1.2x.

    python benchmarks/lammps_bench.py [--quick]

``run(quick)`` returns {"student": ..., "sizes": [{"atoms", "bare_ms", "bare_nl_ms", "step_ms", "pair_ms",
"ratio", "us_per_atom_step"}, ...], "flatness"}. Structures: bulk Si (diamond, rattled), n^3 conventional cells;
quick: 216 and 1000 atoms. Student: PaiNN with the distillation defaults (32 features, 2 interactions, cutoff
5 A), float64 as exported by default. ``bare_ms`` is forward + backward only (neighbor list excluded),
``bare_nl_ms`` adds the vesin neighbor list; ``step_ms`` is LAMMPS' whole loop time per NVE step (neighbor lists,
communication, integration included), ``pair_ms`` its Pair share. One rank, one torch thread. Timings are printed,
never asserted.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

STUDENT = dict(features=32, num_interactions=2, cutoff=5.0)


def silicon(cells: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(cells)
    atoms.rattle(0.05, seed=cells)
    return atoms


def _best_of(fn, seconds: float = 2.0, rounds: int = 3) -> float:
    fn()  # warm up (TorchScript profiling runs)
    fn()
    t0 = time.perf_counter()
    fn()
    repeats = max(1, int(seconds / rounds / max(time.perf_counter() - t0, 1e-6)))
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def bare_times(model_path, atoms) -> tuple[float, float]:
    """Seconds per forward + backward of the student, without and with the neighbor list."""
    from hessdistill.export import StudentFile
    from hessdistill.neighbors import neighbor_list

    sf = StudentFile(model_path, device="cpu")
    species = sf.species(atoms.get_chemical_symbols())

    def step(edges=None):
        ei, sh = edges if edges is not None else neighbor_list(atoms, sf.cutoff)
        pos = torch.tensor(atoms.positions, dtype=sf.dtype, requires_grad=True)
        energy = sf.module(pos, species, torch.as_tensor(ei), torch.as_tensor(sh, dtype=sf.dtype)).sum()
        (grad,) = torch.autograd.grad(energy, pos)
        return grad

    edges = neighbor_list(atoms, sf.cutoff)
    return _best_of(lambda: step(edges)), _best_of(step)


def lammps_times(model_path, atoms, plugin, steps: int, workdir: Path) -> tuple[float, float]:
    """Seconds per NVE step in LAMMPS (whole loop) and its Pair part, after a short warm-up run."""
    from ase.io import write

    from hessdistill.engines.lammps import run_lammps

    data = workdir / f"si{len(atoms)}.data"
    write(data, atoms, format="lammps-data", specorder=["Si"], masses=True, units="metal", atom_style="atomic")
    inp = workdir / f"in.bench{len(atoms)}"
    log = workdir / f"log.bench{len(atoms)}"
    inp.write_text(f"""units metal
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style hessdistill threads 1
pair_coeff * * {model_path} Si
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.001
velocity all create 300 12345 loop geom
fix nve all nve
thermo {steps}
run 3
run {steps}
""")
    error = run_lammps(inp, log, nprocs=1, in_process=False)
    if error:
        raise RuntimeError(error)
    text = log.read_text()
    loop = [float(m) for m in re.findall(r"Loop time of (\S+) on \d+ procs for \d+ steps", text)][-1]
    pair = [float(m) for m in re.findall(r"^Pair\s*\|\s*(\S+)", text, flags=re.M)][-1]
    return loop / steps, pair / steps


def run(quick: bool = False) -> dict:
    from hessdistill.engines.lammps import build_plugin
    from hessdistill.export import export_student
    from hessdistill.students import build_student

    torch.set_num_threads(1)
    plugin = build_plugin()
    cells = [3, 5] if quick else [5, 8, 10, 13, 16]
    results = {"student": {"architecture": "painn", **STUDENT, "dtype": "float64"}, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        torch.manual_seed(0)
        model = build_student("painn", type_names=["Si"], atomic_numbers=[14], **STUDENT)
        model_path = export_student(model, workdir / "student.pt", dtype="float64")
        for n in cells:
            atoms = silicon(n)
            bare, bare_nl = bare_times(model_path, atoms)
            steps = int(np.clip(6.0 / bare, 5, 200))
            step, pair = lammps_times(model_path, atoms, plugin, steps, workdir)
            row = {"atoms": len(atoms), "bare_ms": 1e3 * bare, "bare_nl_ms": 1e3 * bare_nl, "step_ms": 1e3 * step,
                   "pair_ms": 1e3 * pair, "ratio": step / bare, "us_per_atom_step": 1e6 * step / len(atoms)}
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
    costs = [r["us_per_atom_step"] for r in results["sizes"] if r["atoms"] >= 1000]
    results["flatness"] = max(costs) / min(costs) if costs else float("nan")
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
