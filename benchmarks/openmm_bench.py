"""OpenMM step time with the student force against the bare student forward + backward on the same positions.
Target (issue 5): ratio <= 1.1.

    python benchmarks/openmm_bench.py [--quick]

``run(quick)`` returns {system: {"atoms", "bare_ms", "bare_fixed_positions_ms", "own_search_ms",
"engine_only_step_ms" (per platform, where openmmtorch is installed),
<backend>/<platform>: {"step_ms", "ratio", "ratio_to_fixed_positions", "ratio_to_own_search"}}} (each ratio
{"median", "min", "max"}), "timing" (every per-round time): "bare" is forward
+ backward of the student on precomputed (vesin) neighbor lists along the same MD frames, the issue's reference;
"fixed positions" the same on the starting positions only; "own search" is the student's own
``energy_and_forces``, its O(N^2 x images) TorchScript neighbor search included. The OpenMM steps are real NVE
steps (0.5 fs, velocities at 300 K), so the force's
Verlet list (skin 1 A) is searched again whenever an atom has moved half the skin, as in production; those
searches are inside the step time.
Periodic boxes of ethanol molecules on a 5 A grid: ~50 atoms (3x2x1 molecules) and, unless quick, ~1000 (5x5x5).
Back ends: TorchForce returning energy only (OpenMM's autograd), TorchForce returning forces
(``setOutputsForces``), and the PythonForce fallback where OpenMM >= 8.5 has it. One torch thread (the CI machines
have 2 cores). Everything is timed by ``timing.interleaved`` (CPU time of the whole process, so the CPU platform's
worker threads count); each ratio is the median over rounds of the within-round ratio, with its min and max;
absolute times are medians over rounds. Timings are printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

TARGET_RATIO = 1.1  # OpenMM step / bare student


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


def md_frames(model_path, atoms, n_frames: int):
    """Positions (A) of the first ``n_frames`` steps of the same NVE run the OpenMM steps take (see
    ``openmm_step``), so the bare student is timed on the positions OpenMM visits."""
    from openmm import unit

    step, ctx = openmm_step(model_path, atoms, "Reference", "torchforce" if _has_openmmtorch() else "pythonforce",
                            False)
    frames = []
    for _ in range(n_frames):
        step()
        frames.append(ctx.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom))
    return frames


def bare_calls(model_path, atoms, frames):
    """Timing functions: (forward + backward alone on precomputed vesin lists, one MD frame per call in turn; the
    same on the starting positions only; the student's own energy_and_forces, its search included).

    The first is the reference, since in MD (any engine) the edge count changes from step to step; the
    fixed-positions time is reported as context.
    """
    from hessdistill.formats import StudentFile
    from hessdistill.neighbors import neighbor_list

    sf = StudentFile(model_path, device="cpu")
    species = sf.species(atoms.get_chemical_symbols())
    cell = torch.tensor(atoms.cell.array, dtype=sf.dtype)
    pbc = torch.tensor(atoms.pbc)

    def inputs(positions):
        a = atoms.copy()
        a.positions = positions
        ei, sh = neighbor_list(a, sf.cutoff)
        return torch.tensor(positions, dtype=sf.dtype), torch.tensor(ei), torch.tensor(sh, dtype=sf.dtype)

    fixed = inputs(atoms.positions)
    along = [inputs(f) for f in frames]
    turn = [0]

    def forward_backward(x, ei, sh):
        x = x.clone().requires_grad_(True)
        torch.autograd.grad(sf.module(x, species, ei, sh).sum(), x)

    def bare():
        turn[0] = (turn[0] + 1) % len(along)
        forward_backward(*along[turn[0]])

    def bare_fixed():
        forward_backward(*fixed)

    def own_search():
        sf.module.energy_and_forces(fixed[0], species, cell, pbc)

    return bare, bare_fixed, own_search


def _has_openmmtorch() -> bool:
    return importlib.util.find_spec("openmmtorch") is not None


def openmm_step(model_path, atoms, platform: str, backend: str, outputs_forces: bool):
    from hessdistill.engines.openmm import create_system, topology_from_atoms

    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, model_path, masses=atoms.get_masses(), backend=backend,
                           outputs_forces=outputs_forces)
    return _stepper(system, pos_nm, platform)


def _stepper(system, pos_nm, platform: str):
    """(one NVE step, its Context) of ``system`` on ``platform``, started at 300 K and warmed up by 5 steps."""
    import openmm

    integrator = openmm.VerletIntegrator(0.0005)  # 0.5 fs NVE: atoms move, the Verlet list is searched as in MD
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
    from hessdistill.students import build_student
    from timing import interleaved

    keep_freed_memory()  # the opt-in (as the CLI does); before any timing, so both sides run with the same heap
    torch.set_num_threads(1)
    torch.manual_seed(0)
    student = build_student("painn", type_names=["H", "C", "O"], atomic_numbers=[1, 6, 8], cutoff=4.0, features=32,
                            num_interactions=2)  # the size of the built-in example's student
    backends = []
    if _has_openmmtorch():
        backends += [("torchforce", False), ("torchforce", True)]
    if hasattr(openmm, "PythonForce"):
        backends += [("pythonforce", True)]
    systems = {"ethanol_54": (3, 2, 1)} if quick else {"ethanol_54": (3, 2, 1), "ethanol_1125": (5, 5, 5)}
    references = {"ratio": "bare", "ratio_to_fixed_positions": "bare_fixed", "ratio_to_own_search": "own_search"}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_student(student, Path(tmp) / "student.pt", dtype="float64")
        for name, grid in systems.items():
            atoms = ethanol_box(*grid)
            calls, rounds = (5, 25) if len(atoms) < 200 else (2, 7)
            fns = dict(zip(references.values(), bare_calls(path, atoms, md_frames(path, atoms, 40))))
            keep = []  # the Contexts must outlive the timing
            steps = []
            for backend, outputs_forces in backends:
                for platform in ("Reference", "CPU"):
                    label = f"{backend}{'+forces' if outputs_forces and backend == 'torchforce' else ''}/{platform}"
                    fns[label], ctx = openmm_step(path, atoms, platform, backend, outputs_forces)
                    keep.append(ctx)
                    steps.append(label)
            if _has_openmmtorch():
                for platform in ("Reference", "CPU"):
                    fns[f"engine_only/{platform}"], ctx = engine_only_step(atoms, platform)
                    keep.append(ctx)
            # warm-up: the TorchScript profiling executor optimizes during the first calls
            t = interleaved(fns, rounds, calls=calls, warmup=5, desc=name)
            ms = {k: 1e3 * t.median(k) for k in fns}
            entry = {"atoms": len(atoms), "bare_ms": ms["bare"], "bare_fixed_positions_ms": ms["bare_fixed"],
                     "own_search_ms": ms["own_search"], "timing": t.summary()}
            engine_only = {k.split("/")[1]: ms[k] for k in fns if k.startswith("engine_only/")}
            if engine_only:
                entry["engine_only_step_ms"] = engine_only
            for label in steps:
                entry[label] = {"step_ms": ms[label], **{key: t.ratio(label, ref) for key, ref in references.items()}}
                print(f"{name} ({len(atoms)} atoms) {label:28s} step {ms[label]:8.2f} ms, bare {ms['bare']:.2f} ms: "
                      + ", ".join(f"{key} {entry[label][key]['median']:.2f}" for key in references), flush=True)
            results[name] = entry
            del keep
    results["versions"] = {"torch": torch.__version__, "openmm": openmm.__version__}
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
