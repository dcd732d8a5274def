"""OpenMM step cost per atom-step from ~1k to ~50k atoms: the student force's neighbor search must be O(N).
Target (issue 13 item 5): cost per atom-step flat within 1.3x from 1k to 50k atoms.

    python benchmarks/openmm_scaling.py [--quick] [--sizes 5,8,13,18]

Diamond silicon supercells (n x n x n cubic cells of 8 atoms: 1000, 4096, 17576, 46656 atoms), rattled, with
velocities at 300 K, run NVE (1 fs) on the Reference platform (the default for a system of students on CPU) with
a tiny SchNet student (8 features, 1 interaction, 4 A cutoff, random weights) so the student does not hide the
search. Two settings: the default Verlet skin (1 A; the list is searched again after a 0.5 A move, so most steps
only filter the kept candidates) and skin 0 (a search every step: the search's own scaling). One torch thread.
At each size, ``steps`` OpenMM steps and ``steps`` bare student evaluations (forward + backward on a fixed edge
list) alternate in interleaved rounds (timing.interleaved, the process's CPU clock) after two warm-up calls each
(the first builds the list): the bare student's cost per atom shows what the model itself costs at that size, and
OpenMM/bare what the adapter adds. Page faults and kernel time are counted beside: blocks over glibc's 32 MB
mmap threshold (:mod:`hessdistill.heap`) are faulted in afresh every step, which the student's edge tensors reach
at ~40k atoms.
Each heap setting runs in its own process (glibc's settings last for the process): ``thresholds`` is
``keep_freed_memory()`` (what the ``hessdistill`` command does by default), ``large-blocks`` is
``keep_freed_memory(large_blocks=True)`` (``hessdistill --heap-large-blocks``: no mmap, blocks over 32 MB reused).
Writes ``benchmarks/results/openmm_scaling.json`` and prints the cost per atom-step and its ratio to the smallest
system's. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import interleaved  # noqa: E402


#: heap setting name -> keep_freed_memory(large_blocks=...)
HEAP_SETTINGS = {"thresholds": False, "large-blocks": True}


def silicon(n: int, seed: int = 0):
    from ase.build import bulk

    atoms = bulk("Si", cubic=True).repeat((n, n, n))
    atoms.rattle(0.02, seed=seed)
    return atoms


def tiny_student(path: Path) -> Path:
    from hessdistill.formats import export_student
    from hessdistill.students import build_student

    torch.manual_seed(0)
    model = build_student("schnet", type_names=["Si"], atomic_numbers=[14], cutoff=4.0, features=8,
                          num_interactions=1, num_basis=8)
    return export_student(model.double(), path)


def time_steps(model_path: Path, atoms, skin: float, steps: int, rounds: int) -> dict:
    """OpenMM NVE steps against the bare student (forward + backward on a fixed edge list) at one size.

    Both run in this process in interleaved rounds (timing.interleaved, CPU clock), so the student's own cost per
    atom, which grows once its edge tensors leave the CPU caches, is measured beside the whole step and the
    ratio shows what the OpenMM adapter (Verlet list, unit conversion, OpenMM's own work) adds.
    """
    import openmm
    from openmm import unit

    from hessdistill.engines.openmm import create_system, topology_from_atoms
    from hessdistill.formats import read_metadata
    from hessdistill.neighbors import cell_list_edges

    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, model_path, skin=skin)
    integrator = openmm.VerletIntegrator(0.001)
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("Reference"))
    ctx.setPositions(pos_nm)
    ctx.setVelocitiesToTemperature(300 * unit.kelvin, 1)

    student = torch.jit.load(str(model_path))
    x = torch.tensor(atoms.positions, dtype=torch.float64)
    edge_index, shifts = cell_list_edges(x, torch.tensor(atoms.cell.array, dtype=torch.float64), True,
                                         float(read_metadata(model_path)["cutoff"]))
    species = torch.zeros(len(atoms), dtype=torch.long)

    def bare():
        for _ in range(steps):
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad([student(xg, species, edge_index, shifts).sum()], [xg])

    before = resource.getrusage(resource.RUSAGE_SELF)
    # warm-up 2 calls each: the first OpenMM step builds the neighbor list and TorchScript's profiled graph
    t = interleaved({"openmm": lambda: integrator.step(steps), "bare": bare}, rounds=rounds, warmup=2,
                    units={"openmm": steps, "bare": steps}, desc=f"{len(atoms)} atoms")
    after = resource.getrusage(resource.RUSAGE_SELF)
    n = len(atoms)
    calls = (rounds + 2) * steps * 2
    return {"atoms": n, "edges": int(edge_index.shape[1]), "steps_per_round": steps, "rounds": rounds,
            "us_per_atom_step": 1e6 * t.median("openmm") / n, "bare_us_per_atom_step": 1e6 * t.median("bare") / n,
            "openmm_over_bare": t.ratio("openmm", "bare"), "timings": t.summary(),
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / calls,
            "system_cpu_share": (after.ru_stime - before.ru_stime) / max(after.ru_utime - before.ru_utime, 1e-9)}


def flatness(rows: list, key: str) -> dict:
    costs = [r[key] for r in rows]
    return {"max_over_min": max(costs) / min(costs), "largest_over_smallest": costs[-1] / costs[0]}


def run(sizes=(5, 8, 13, 18), steps=(20, 10, 5, 3), rounds: int = 5) -> dict:
    torch.set_num_threads(1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_student(Path(tmp) / "schnet_tiny.pt")
        for skin, label in ((1.0, "skin 1 A"), (0.0, "skin 0")):
            rows = []
            for n, k in zip(sizes, steps):
                row = time_steps(model, silicon(n), skin, k, rounds)
                rows.append(row)
                r = row["openmm_over_bare"]
                print(f"{label:>9}  {row['atoms']:6d} atoms  OpenMM {row['us_per_atom_step']:6.2f} us/atom-step "
                      f"(x{row['us_per_atom_step'] / rows[0]['us_per_atom_step']:.2f} of the smallest)  "
                      f"bare student {row['bare_us_per_atom_step']:6.2f} "
                      f"(x{row['bare_us_per_atom_step'] / rows[0]['bare_us_per_atom_step']:.2f})  "
                      f"OpenMM/bare {r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})  "
                      f"{row['page_faults_per_step']:.0f} page faults/call, "
                      f"{100 * row['system_cpu_share']:.0f}% kernel time", flush=True)
            results[label] = {"rows": rows, **flatness(rows, "us_per_atom_step"),
                              "bare": flatness(rows, "bare_us_per_atom_step")}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 4k atoms only")
    parser.add_argument("--sizes", default="5,8,13,18", help="supercell repeats n (8 n^3 atoms)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per size")
    parser.add_argument("--heap", default="all", choices=["all", *HEAP_SETTINGS],
                        help="glibc heap setting (all: each in its own process)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "openmm_scaling.json"))
    args = parser.parse_args()
    if args.heap == "all":
        import subprocess

        results = {}
        for heap in HEAP_SETTINGS:
            with tempfile.NamedTemporaryFile(suffix=".json") as part:
                cmd = [sys.executable, __file__, "--sizes", args.sizes, "--heap", heap, "--out", part.name,
                       "--rounds", str(args.rounds)]
                subprocess.run(cmd + (["--quick"] if args.quick else []), check=True)
                results[heap] = json.loads(Path(part.name).read_text())
    else:
        from hessdistill.heap import keep_freed_memory

        keep_freed_memory(large_blocks=HEAP_SETTINGS[args.heap])
        print(f"== heap: {args.heap}", flush=True)
        sizes = [int(s) for s in args.sizes.split(",")][: 2 if args.quick else None]
        steps = [max(2, int(round(10 * (sizes[0] / n) ** 3))) for n in sizes]  # about the same time per size
        results = run(sizes, steps, args.rounds)
        import openmm

        results["machine"] = {"torch": torch.__version__, "openmm": openmm.__version__, "threads": 1,
                              "cpu_count": __import__("os").cpu_count()}
        for label in ("skin 1 A", "skin 0"):
            print(f"{args.heap}, {label}: cost per atom-step, max/min over sizes "
                  f"{results[label]['max_over_min']:.2f} (target <= 1.3); bare student's "
                  f"{results[label]['bare']['max_over_min']:.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
