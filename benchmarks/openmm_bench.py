"""OpenMM step time with the student force against the bare student (TorchScript forward + backward, neighbor
list included) on the same positions. Target (issue 5): ratio <= 1.1.

    python benchmarks/openmm_bench.py [--quick]

``run(quick)`` returns {system: {"atoms", "bare_ms", <backend>/<platform>: {"step_ms", "ratio"}}}. Periodic boxes
of ethanol molecules on a 5 A grid: ~50 atoms (3x2x1 molecules) and, unless quick, ~1000 (5x5x5). Back ends:
TorchForce returning energy only (OpenMM's autograd), TorchForce returning forces (``setOutputsForces``), and the
PythonForce fallback where OpenMM >= 8.5 has it. One torch thread (the CI machines have 2 cores). Timings are
printed, never asserted.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


def _best_of(fn, repeats: int, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def bare_time(model_path, atoms, repeats: int) -> float:
    from hessdistill.export import StudentFile

    sf = StudentFile(model_path, device="cpu")
    pos = torch.tensor(atoms.positions, dtype=sf.dtype)
    species = sf.species(atoms.get_chemical_symbols())
    cell = torch.tensor(atoms.cell.array, dtype=sf.dtype)
    pbc = torch.tensor(atoms.pbc)
    for _ in range(5):  # the TorchScript profiling executor optimizes during the first calls
        sf.module.energy_and_forces(pos, species, cell, pbc)
    return _best_of(lambda: sf.module.energy_and_forces(pos, species, cell, pbc), repeats)


def openmm_step_time(model_path, atoms, platform: str, backend: str, outputs_forces: bool, repeats: int) -> float:
    import openmm

    from hessdistill.engines.openmm import create_system, topology_from_atoms

    topology, pos_nm, atoms = topology_from_atoms(atoms)
    system = create_system(topology, model_path, masses=atoms.get_masses(), backend=backend,
                           outputs_forces=outputs_forces)
    integrator = openmm.VerletIntegrator(1e-5)  # tiny step: the same positions, to within 1e-5 A, every step
    ctx = openmm.Context(system, integrator, openmm.Platform.getPlatformByName(platform))
    ctx.setPositions(pos_nm)
    integrator.step(5)
    return _best_of(lambda: integrator.step(1), repeats)


def run(quick: bool = False) -> dict:
    import openmm

    from hessdistill.export import export_student
    from hessdistill.students import build_student

    torch.set_num_threads(1)
    torch.manual_seed(0)
    student = build_student("painn", type_names=["H", "C", "O"], atomic_numbers=[1, 6, 8], cutoff=4.0, features=32,
                            num_interactions=2)  # the size of the built-in example's student
    backends = []
    if importlib.util.find_spec("openmmtorch") is not None:
        backends += [("torchforce", False), ("torchforce", True)]
    if hasattr(openmm, "PythonForce"):
        backends += [("pythonforce", True)]
    systems = {"ethanol_54": (3, 2, 1)} if quick else {"ethanol_54": (3, 2, 1), "ethanol_1125": (5, 5, 5)}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = export_student(student, Path(tmp) / "student.pt", dtype="float64")
        for name, grid in systems.items():
            atoms = ethanol_box(*grid)
            repeats = 20 if len(atoms) < 200 else 3
            bare = bare_time(path, atoms, repeats)
            entry = {"atoms": len(atoms), "bare_ms": bare * 1e3}
            print(f"{name}: {len(atoms)} atoms, bare forward+backward {bare * 1e3:.2f} ms")
            for backend, outputs_forces in backends:
                for platform in ("Reference", "CPU"):
                    t = openmm_step_time(path, atoms, platform, backend, outputs_forces, repeats)
                    label = f"{backend}{'+forces' if outputs_forces and backend == 'torchforce' else ''}/{platform}"
                    entry[label] = {"step_ms": t * 1e3, "ratio": t / bare}
                    print(f"  {label:28s} step {t * 1e3:8.2f} ms   ratio {t / bare:5.2f}")
            results[name] = entry
    results["versions"] = {"torch": torch.__version__, "openmm": openmm.__version__}
    return results


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv[1:]), indent=2))
