"""LAMMPS step time with pair_style hessdistill against the bare student (TorchScript forward + backward) on the
same structure, and the cost per atom-step from ~1k to 32k atoms. Targets (issue 3): ratio <= 1.1, cost per
atom-step flat within 1.2x.

    python benchmarks/lammps_bench.py [--quick]

``run(quick)`` returns {"student", "sizes": [{"atoms", "bare_ms", "step_ms", "pair_ms", "ratio",
"us_per_atom_step", "bare_us_per_atom", "timing", ...}, ...], "flatness": {cost: max / min over the sizes}}
(ratio: {"median", "min", "max"} over rounds).

Structures: bulk Si (diamond, rattled), n^3 conventional cells, 1000 to 32768 atoms (quick: 216 and 1000).
Student: PaiNN with the distillation defaults (32 features, 2 interactions, cutoff 5 A), float64 as exported by
default. ``bare_ms``: forward + backward only (neighbor list excluded); ``step_ms``: LAMMPS' whole NVE step
(neighbor lists, communication, integration included), ``pair_ms`` its Pair share. LAMMPS runs in this process
(the lammps module), so ``timing.interleaved`` times both sides with the same CPU clock: per round ~2 s of bare
calls, then as many LAMMPS steps; medians over rounds, the ratio within each round. One rank, one torch thread.
Timings are printed, never asserted.

The input asks for the pair style's block cache (``memory cache``, as ``run_md`` does), torch's CPU allocator for the
whole process while the pair style lives, so after the first LAMMPS instance the bare student reuses blocks too: both
sides of the ratio run with the same allocator. Without the cache the cost per atom-step rose severalfold from 1k to
17k atoms (page faults on fresh
mmap blocks every step; ``memory system`` shows it).
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

STUDENT = dict(features=32, num_interactions=2, cutoff=5.0)
TARGET_RATIO = 1.1  # LAMMPS step / bare student
TARGET_FLATNESS = 1.2  # max / min cost per atom-step over the sizes


def silicon(cells: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(cells)
    atoms.rattle(0.05, seed=cells)
    return atoms


def bare_step(model_path, atoms):
    """One forward + backward of the student on ``atoms`` (neighbor list made once, outside)."""
    from hessdistill.formats import StudentFile
    from hessdistill.neighbors import neighbor_list

    sf = StudentFile(model_path, device="cpu")
    species = sf.species(atoms.get_chemical_symbols())
    ei, sh = neighbor_list(atoms, sf.cutoff)
    edge_index, shifts = torch.as_tensor(ei), torch.as_tensor(sh, dtype=sf.dtype)

    def step():
        pos = torch.tensor(atoms.positions, dtype=sf.dtype, requires_grad=True)
        energy = sf.module(pos, species, edge_index, shifts).sum()
        return torch.autograd.grad(energy, pos)[0]

    return step, edge_index.shape[1]


def lammps_instance(model_path, atoms, plugin, workdir: Path):
    """A LAMMPS instance in this process (the lammps module) set up for NVE of ``atoms``, and its log path."""
    from ase.io import write

    from hessdistill.engines.lammps import lammps_module

    data = workdir / f"si{len(atoms)}.data"
    write(data, atoms, format="lammps-data", specorder=["Si"], masses=True, units="metal", atom_style="atomic")
    log = workdir / f"log.bench{len(atoms)}"
    lmp = lammps_module().lammps(cmdargs=["-screen", "none", "-log", str(log), "-nocite"])
    lmp.commands_string(f"""units metal
atom_style atomic
read_data {data}
plugin load {plugin}
pair_style hessdistill memory cache threads 1
pair_coeff * * {model_path} Si
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.001
velocity all create 300 12345 loop geom
fix nve all nve
thermo 1000
run 2""")
    return lmp, log


def pair_shares(log: Path, runs: int) -> list[float]:
    """Pair's share of the loop time in each of the last ``runs`` runs (timing line "Pair | min | avg | max |
    %varavg | %total")."""
    rows = re.findall(r"^Pair\s*\|(?:\s*\S+\s*\|){4}\s*(\S+)", log.read_text(), flags=re.M)
    return [float(r) / 100.0 for r in rows[-runs:]]


def measure(model_path, atoms, plugin, workdir: Path, rounds: int = 3) -> dict:
    """Interleaved rounds of bare forward + backward and LAMMPS steps, the same number of each per round."""
    from timing import clock, interleaved

    bare, n_edges = bare_step(model_path, atoms)
    bare()
    bare()  # TorchScript profiling runs
    t0 = clock()
    bare()
    steps = max(1, round(2.0 / (clock() - t0)))  # ~2 s of work per side and round
    threads = torch.get_num_threads()
    lmp, log = lammps_instance(model_path, atoms, plugin, workdir)
    try:
        t = interleaved({"bare": lambda: [bare() for _ in range(steps)],
                         "lammps": lambda: lmp.command(f"run {steps} pre no post yes")},
                        rounds, warmup=0, units={"bare": steps, "lammps": steps}, desc=f"lammps {len(atoms)}")
        share = pair_shares(log, rounds)
    finally:
        lmp.close()
        torch.set_num_threads(threads)
    bare_s, step_s = t.median("bare"), t.median("lammps")
    return {"atoms": len(atoms), "edges": n_edges, "bare_ms": 1e3 * bare_s, "step_ms": 1e3 * step_s,
            "pair_ms": 1e3 * step_s * float(np.median(share)), "ratio": t.ratio("lammps", "bare"),
            "us_per_atom_step": 1e6 * step_s / len(atoms), "bare_us_per_atom": 1e6 * bare_s / len(atoms),
            "steps_per_round": steps, "timing": t.summary()}


def run(quick: bool = False) -> dict:
    from hessdistill.engines.lammps import build_plugin
    from hessdistill.formats import export_student
    from hessdistill.heap import keep_freed_memory
    from hessdistill.students import build_student

    keep_freed_memory()  # the bare student runs in Python: the heap setting a user opts in to (as the CLI does)
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
            row = measure(model_path, silicon(n), plugin, workdir, rounds=3 if n < 13 else 2)
            results["sizes"].append(row)
            print(json.dumps(row), flush=True)
    results["flatness"] = {key: max(r[key] for r in results["sizes"]) / min(r[key] for r in results["sizes"])
                           for key in ("us_per_atom_step", "bare_us_per_atom")}
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
