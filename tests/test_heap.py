"""The heap setting that keeps small-system MD steps from faulting in fresh pages every step (hessdistill.heap)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh process whose glibc starts in its worst state for this workload (every block over 128 KB
# from mmap, the heap trimmed whenever 128 KB are free), as a long-lived process can end up by its history.
SCRIPT = textwrap.dedent("""
    import json, resource, sys, tempfile
    import torch
    from ase.build import molecule
    sys.path.insert(0, sys.argv[1])
    from conftest import make_student
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.formats import StudentFile, export_student
    from hessdistill.neighbors import neighbor_list

    atoms = molecule("CH3CH2OH")
    atoms.cell, atoms.pbc = [5.0, 5.0, 5.0], True
    atoms = atoms.repeat((3, 2, 1))  # 54 atoms, as in the OpenMM benchmark
    path = export_student(make_student(features=32), tempfile.mkdtemp() + "/s.pt", dtype="float64")
    sf = StudentFile(path)
    ei, sh = neighbor_list(atoms, sf.cutoff)
    inputs = (torch.tensor(atoms.positions), sf.species(atoms.get_chemical_symbols()), torch.tensor(ei),
              torch.tensor(sh))

    def faults_per_step(steps=20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(steps):
            x = inputs[0].clone().requires_grad_(True)
            torch.autograd.grad(sf.module(x, *inputs[1:]).sum(), x)
        return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

    faults_per_step()  # warm-up
    untouched = faults_per_step()
    if sys.argv[2] == "ase":  # engines set the heap up when they load a student
        StudentCalculator(path)
    else:
        from hessdistill.engines.openmm import student_force
        student_force(path, atoms.get_chemical_symbols())
    faults_per_step()
    print(json.dumps({"untouched": untouched, "set": faults_per_step()}))
""")


@pytest.mark.parametrize("engine", ["ase", "openmm"])
def test_loading_a_student_in_an_engine_stops_per_step_page_faults(engine):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SCRIPT, os.path.dirname(__file__), engine], env=env, check=True,
                         capture_output=True, text=True).stdout
    faults = json.loads(out.strip().splitlines()[-1])
    assert faults["untouched"] > 100, faults  # the bad state is real: hundreds of fresh pages per step
    assert faults["set"] < 0.05 * faults["untouched"], faults
