"""OpenMM benchmarks of the student force (``hessdistill.engines.openmm.create_system``).

    python benchmarks/openmm_bench.py --mode speed [--quick]      # step / bare student (section 6)
    python benchmarks/openmm_bench.py --mode scaling [--quick] [--sizes 5,8,13,18]   # results/openmm_scaling.json
    python benchmarks/openmm_bench.py --mode pt2 [--quick]        # TorchForce vs .pt2 in PythonForce: results/openmm_pt2.json

Methods: BENCHMARKS.md section 6 and docs/design/performance.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bare_student, call_in_subprocess, default_student  # noqa: E402
from systems import silicon  # noqa: E402
from timing import interleaved, spread  # noqa: E402

TARGET_RATIO = 1.1  # speed: OpenMM step / bare student
TARGET_SCALING_FLATNESS = 1.3  # scaling: max / min cost per atom-step, 1k-50k atoms
HEAP_SETTINGS = {"thresholds": False, "large-blocks": True}  # scaling: keep_freed_memory(large_blocks=...)
PT2_GRIDS = {"ethanol_27": (1, 1, 3), "ethanol_324": (3, 3, 4), "ethanol_3087": (7, 7, 7)}  # ~30, ~300, ~3000 atoms
TEACHER_MAX_ATOMS = 400  # pt2: ANI-1x's step is timed on the smaller boxes only (seconds per call at 3000 atoms)
TARGET_PT2_SPEEDUP = 3.0  # pt2: TorchForce step / PythonForce .pt2 step, ~3000 atoms
TARGET_CALLBACK_MS = 0.3  # pt2: PythonForce .pt2 step - bare .pt2 call, ~30 atoms
OUT_DEFAULT = str(Path(__file__).parent / "results" / "openmm_scaling.json")


def ethanol_box(nx: int, ny: int, nz: int, spacing: float = 5.0, seed: int = 0):
    from ase.build import molecule
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    mol = molecule("CH3CH2OH")
    mol.positions -= mol.get_center_of_mass()
    box = None
    for i, j, k in np.ndindex(nx, ny, nz):
        m = mol.copy()
        m.positions = Rotation.random(random_state=rng.integers(1 << 31)).apply(m.positions)
        m.positions += spacing * np.array([i + 0.5, j + 0.5, k + 0.5])
        box = m if box is None else box + m
    box.cell = spacing * np.array([nx, ny, nz], dtype=float)
    box.pbc = True
    return box


def md_frames(model_path, atoms, n_frames: int) -> list:
    """The first ``n_frames`` structures of the same NVE run the OpenMM steps take (see ``openmm_step``), so the
    bare student is timed on the positions OpenMM visits."""
    from openmm import unit

    step, ctx = openmm_step(model_path, atoms, "Reference", backend=_default_backend(), outputs_forces=False)
    frames = []
    for _ in range(n_frames):
        step()
        frames.append(atoms.copy())
        frames[-1].positions = ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)
    return frames


def _default_backend() -> str:
    return "torchforce" if importlib.util.find_spec("openmmtorch") is not None else "pythonforce"


def openmm_step(model_path, atoms, platform: str, dt_ps: float = 0.0005, **force_options):
    """(one NVE step, its Context) of the student's System (``create_system(**force_options)``)."""
    from hessdistill.engines.openmm import create_system, topology_from_atoms

    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, model_path, masses=atoms.get_masses(), **force_options)
    return _stepper(system, pos_nm, platform, dt_ps)


def _stepper(system, pos_nm, platform: str, dt_ps: float = 0.0005):
    """(one NVE step, its Context) of ``system`` on ``platform``, started at 300 K and warmed up by 5 steps."""
    import openmm

    integrator = openmm.VerletIntegrator(dt_ps)  # NVE: atoms move, the Verlet list is searched as in MD
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos_nm)
    ctx.setVelocitiesToTemperature(300.0, 1)
    integrator.step(5)
    return lambda: integrator.step(1), ctx


class _ZeroEnergy(torch.nn.Module):
    def forward(self, positions: torch.Tensor, boxvectors: torch.Tensor) -> torch.Tensor:
        return (positions * 0.0).sum()


def engine_only_step(atoms, platform: str):
    """A step of the same System with a TorchForce whose energy is zero: OpenMM's and openmm-torch's own work per
    step on ``platform`` (context for the ratios; why student-only systems default to Reference)."""
    import openmm
    import openmmtorch

    from hessdistill.engines.openmm import topology_from_atoms

    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = openmm.System()
    for m in atoms.get_masses():
        system.addParticle(float(m))
    system.setDefaultPeriodicBoxVectors(*topology.getPeriodicBoxVectors())
    force = openmmtorch.TorchForce(torch.jit.script(_ZeroEnergy()))
    force.setUsesPeriodicBoundaryConditions(True)
    system.addForce(force)
    return _stepper(system, pos_nm, platform)


def run(quick: bool = False) -> dict:
    """Bare, own search and each OpenMM set-up in turn, per round. The heap is set up first (hessdistill.heap):
    without it, glibc's page faults moved the same student's time severalfold from process to process."""
    import openmm

    from hessdistill.formats import export_student
    from hessdistill.heap import keep_freed_memory

    keep_freed_memory()  # the opt-in (as the CLI does); before any timing, so both sides run with the same heap
    torch.set_num_threads(1)
    student = default_student(["H", "C", "O"], [1, 6, 8], cutoff=4.0)  # the size of the built-in example's student
    torchforce = importlib.util.find_spec("openmmtorch") is not None
    backends = [("torchforce", False), ("torchforce", True)] if torchforce else []
    if hasattr(openmm, "PythonForce"):
        backends += [("pythonforce", True)]
    systems = {"ethanol_54": (3, 2, 1)} if quick else {"ethanol_54": (3, 2, 1), "ethanol_1125": (5, 5, 5)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_student(student, Path(tmp) / "student.pt", dtype="float64")
        for name, grid in systems.items():
            atoms = ethanol_box(*grid)
            calls, rounds = (5, 25) if len(atoms) < 200 else (2, 7)
            fns = {"bare": bare_student(path, md_frames(path, atoms, 40))[0]}
            keep = []  # the Contexts must outlive the timing
            steps = []
            for backend, outputs_forces in backends:
                for platform in ("Reference", "CPU"):
                    label = f"{backend}{'+forces' if outputs_forces and backend == 'torchforce' else ''}/{platform}"
                    fns[label], ctx = openmm_step(path, atoms, platform, backend=backend, outputs_forces=outputs_forces)
                    keep.append(ctx)
                    steps.append(label)
            for platform in ("Reference", "CPU") if torchforce else ():
                fns[f"engine_only/{platform}"], ctx = engine_only_step(atoms, platform)
                keep.append(ctx)
            # warm-up: the TorchScript profiling executor optimizes during the first calls
            t = interleaved(fns, rounds, calls=calls, warmup=5, desc=name)
            ms = {k: 1e3 * t.median(k) for k in fns}
            entry = {"atoms": len(atoms), "bare_ms": ms["bare"], "timing": t.summary()}
            engine_only = {k.split("/")[1]: ms[k] for k in fns if k.startswith("engine_only/")}
            if engine_only:
                entry["engine_only_step_ms"] = engine_only
            for label in steps:
                entry[label] = {"step_ms": ms[label], "ratio": t.ratio(label, "bare")}
                print(f"{name} ({len(atoms)} atoms) {label:28s} step {ms[label]:8.2f} ms, bare {ms['bare']:.2f} ms: "
                      + f"ratio {entry[label]['ratio']['median']:.2f}", flush=True)
            results[name] = entry
            del keep
    results["versions"] = {"torch": torch.__version__, "openmm": openmm.__version__}
    return results


def pt2_paths(grids: dict, rounds: int = 5) -> dict:
    """The default student (float32) in OpenMM as TorchScript in TorchForce and as a .pt2 package in PythonForce,
    per step on ethanol boxes; beside them the bare .pt2 call on the same MD's pair lists (PythonForce step - bare:
    the callback's own cost per step) and, on the smaller boxes, ANI-1x's step (its ASE calculator)."""
    import openmm

    from hessdistill.formats import export_student, save_student
    from hessdistill.heap import keep_freed_memory
    from speed import ase_md, native_teacher_calculator

    keep_freed_memory()
    torch.set_num_threads(1)
    student = default_student(["H", "C", "O"], [1, 6, 8])
    results = {"versions": {"torch": torch.__version__, "openmm": openmm.__version__}}
    with tempfile.TemporaryDirectory() as tmp:
        ts = export_student(student, Path(tmp) / "student.pt", dtype="float32")
        pt2 = save_student(student, Path(tmp) / "student.pt2", dtype="float32")
        for name, grid in grids.items():
            atoms = ethanol_box(*grid)
            keep, fns = [], {}
            for label, path, backend in (("torchforce", ts, "torchforce"), ("pythonforce_pt2", pt2, "pythonforce")):
                fns[label], ctx = openmm_step(path, atoms, "Reference", backend=backend)
                keep.append(ctx)
            fns["bare_pt2"] = bare_student(pt2, md_frames(ts, atoms, 10))[0]
            if len(atoms) <= TEACHER_MAX_ATOMS:
                fns["teacher_ani1x"] = lambda dyn=ase_md(atoms, native_teacher_calculator("ani1x")): dyn.run(1)
            calls = 20 if len(atoms) < 100 else (4 if len(atoms) < 1000 else 1)
            t = interleaved(fns, rounds, calls=calls, warmup=3, desc=name)
            ms = {k: 1e3 * t.median(k) for k in fns}
            callback = spread(1e3 * (np.asarray(t.seconds["pythonforce_pt2"]) - np.asarray(t.seconds["bare_pt2"])))
            entry = {"atoms": len(atoms), "ms_per_step": ms, "pt2_speedup": t.ratio("torchforce", "pythonforce_pt2"),
                     "callback_ms": callback, "timing": t.summary()}
            if "teacher_ani1x" in fns:
                entry["teacher_over"] = {k: t.ratio("teacher_ani1x", k) for k in ("torchforce", "pythonforce_pt2")}
            print(f"{name}: TorchForce {ms['torchforce']:.2f} ms, PythonForce .pt2 {ms['pythonforce_pt2']:.2f} ms "
                  f"({entry['pt2_speedup']['median']:.2f}x), bare .pt2 {ms['bare_pt2']:.2f} ms, callback "
                  f"{callback['median']:.3f} ms", flush=True)
            results[name] = entry
            del keep
    largest, smallest = results[list(grids)[-1]], results[list(grids)[0]]
    results["targets"] = {"pt2_speedup": TARGET_PT2_SPEEDUP, "callback_ms": TARGET_CALLBACK_MS,
                          "pt2_speedup_met": largest["pt2_speedup"]["median"] >= TARGET_PT2_SPEEDUP,
                          "callback_met": smallest["callback_ms"]["median"] <= TARGET_CALLBACK_MS}
    return results


def time_steps(model_path: Path, atoms, skin: float, steps: int, rounds: int) -> dict:
    """OpenMM NVE steps (Reference, 1 fs) against the bare student (forward + backward on a fixed edge list) at
    one size, in interleaved rounds: the student's own cost per atom, which grows once its edge tensors leave the
    CPU caches, beside the whole step; the ratio shows what the OpenMM adapter adds."""
    step, ctx = openmm_step(model_path, atoms, "Reference", dt_ps=0.001, skin=skin)
    bare, n_edges = bare_student(model_path, [atoms])
    before = resource.getrusage(resource.RUSAGE_SELF)
    # warm-up 2 calls each: TorchScript's profiled graph
    t = interleaved({"openmm": lambda: [step() for _ in range(steps)], "bare": lambda: [bare() for _ in range(steps)]},
                    rounds=rounds, warmup=2, units={"openmm": steps, "bare": steps}, desc=f"{len(atoms)} atoms")
    after = resource.getrusage(resource.RUSAGE_SELF)
    n, calls = len(atoms), (rounds + 2) * steps * 2
    return {"atoms": n, "edges": n_edges, "steps_per_round": steps, "rounds": rounds,
            "us_per_atom_step": 1e6 * t.median("openmm") / n, "bare_us_per_atom_step": 1e6 * t.median("bare") / n,
            "openmm_over_bare": t.ratio("openmm", "bare"), "timings": t.summary(),
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / calls,
            "system_cpu_share": (after.ru_stime - before.ru_stime) / max(after.ru_utime - before.ru_utime, 1e-9)}


def flatness(rows: list, key: str) -> dict:
    costs = [r[key] for r in rows]
    return {"max_over_min": max(costs) / min(costs), "largest_over_smallest": costs[-1] / costs[0]}


def scaling(heap: str, sizes: list, rounds: int = 5) -> dict:
    """Cost per atom-step of a tiny SchNet (float64) on Si supercells of ``sizes`` cells per side, with a 1 A Verlet
    skin and without, after the glibc ``heap`` setting (process-wide: call it in a fresh process)."""
    import openmm

    from hessdistill.formats import export_student
    from hessdistill.heap import keep_freed_memory

    keep_freed_memory(large_blocks=HEAP_SETTINGS[heap])
    torch.set_num_threads(1)
    steps = [max(2, int(round(10 * (sizes[0] / n) ** 3))) for n in sizes]  # about the same time per size
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tiny = default_student(["Si"], [14], architecture="schnet", cutoff=4.0, features=8, num_interactions=1,
                               num_basis=8)
        model = export_student(tiny, Path(tmp) / "schnet_tiny.pt", dtype="float64")
        for skin, label in ((1.0, "skin 1 A"), (0.0, "skin 0")):
            rows = []
            for n, k in zip(sizes, steps):
                row = time_steps(model, silicon(n, rattle=0.02, seed=0), skin, k, rounds)
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
    results["machine"] = {"torch": torch.__version__, "openmm": openmm.__version__, "threads": 1,
                          "cpu_count": os.cpu_count()}
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("speed", "scaling", "pt2"), default="speed")
    p.add_argument("--quick", action="store_true", help="speed: 54 atoms only; scaling: the two smallest sizes; "
                   "pt2: the smallest box, 2 rounds")
    p.add_argument("--sizes", default="5,8,13,18", help="scaling: supercell repeats n (8 n^3 atoms)")
    p.add_argument("--rounds", type=int, default=5, help="scaling, pt2: interleaved timing rounds per size")
    p.add_argument("--heap", default="all", choices=["all", *HEAP_SETTINGS],
                   help="scaling: glibc heap setting (all: each in its own process)")
    p.add_argument("--out", default=OUT_DEFAULT, help="results JSON (default: results/openmm_scaling.json for "
                   "scaling, results/openmm_pt2.json for pt2)")
    a = p.parse_args(argv)
    if a.mode == "speed":
        print(json.dumps(run(quick=a.quick), indent=2))
        return 0
    if a.mode == "pt2":
        grids = dict(list(PT2_GRIDS.items())[:1]) if a.quick else PT2_GRIDS
        out = Path(__file__).parent / "results" / "openmm_pt2.json" if a.out == OUT_DEFAULT else Path(a.out)
        results = pt2_paths(grids, rounds=2 if a.quick else a.rounds)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"wrote {out}")
        return 0
    sizes = [int(s) for s in a.sizes.split(",")][: 2 if a.quick else None]
    results = {}
    for heap in HEAP_SETTINGS if a.heap == "all" else [a.heap]:
        log = Path(a.out).parent / "work" / f"openmm_scaling.{heap}.log"  # the per-size lines
        log.parent.mkdir(parents=True, exist_ok=True)
        results[heap] = call_in_subprocess("openmm_bench", "scaling", {"heap": heap, "sizes": sizes,
                                                                       "rounds": a.rounds}, 7200, log)
        if "error" in results[heap]:
            raise SystemExit(f"{heap}: {results[heap]['error']}\n{results[heap].get('output_tail', '')}")
        for label in ("skin 1 A", "skin 0"):
            r = results[heap][label]
            print(f"{heap}, {label}: cost per atom-step, max/min over sizes {r['max_over_min']:.2f} (target <= "
                  f"{TARGET_SCALING_FLATNESS:g}); bare student's {r['bare']['max_over_min']:.2f} (details: {log})")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
