"""The heap setting that keeps small-system MD steps from faulting in fresh pages every step (hessdistill.heap) is an
explicit opt-in: building a calculator, an OpenMM force or a Trainer leaves glibc as it is; keep_freed_memory() and
the ``hessdistill`` command (unless --no-heap-tuning) set it."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Run in a fresh process whose glibc starts in its worst state for this workload (every block over 128 KB
# from mmap, the heap trimmed whenever 128 KB are free), as a long-lived process can end up by its history. Set
# from the environment, glibc's thresholds stay put until mallopt changes them, so the page faults of a bare
# student step show whether anything did.
SCRIPT = textwrap.dedent("""
    import json, resource, sys, tempfile
    import torch
    from ase.build import molecule
    sys.path.insert(0, sys.argv[1])
    from conftest import cluster, make_student
    from hessdistill.formats import StudentFile, export_student
    from hessdistill.neighbors import neighbor_list

    atoms = molecule("CH3CH2OH")
    atoms.cell, atoms.pbc = [5.0, 5.0, 5.0], True
    atoms = atoms.repeat((3, 2, 1))  # 54 atoms, as in the OpenMM benchmark
    tmp = tempfile.mkdtemp()
    path = export_student(make_student(features=32), tmp + "/s.pt", dtype="float64")
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
    out = {"untouched": faults_per_step()}
    if sys.argv[2] == "library":
        from hessdistill.distill import DistillConfig, Trainer
        from hessdistill.engines.ase import StudentCalculator
        from hessdistill.engines.openmm import student_force
        from hessdistill.label import label_structures
        from hessdistill.sample import rattled, split
        from hessdistill.teachers.analytic import MorseTeacher

        StudentCalculator(path)
        student_force(path, atoms.get_chemical_symbols())
        label_structures(split(rattled(cluster(4), 8, 0.1, seed=0), (0.5, 0.25, 0.25)), MorseTeacher(), tmp + "/l.h5",
                         progress=False)
        Trainer(DistillConfig(features=8, num_interactions=1, cutoff=3.0, hessian_rows=1), tmp + "/l.h5",
                tmp + "/run", progress=False)
        faults_per_step()
        out["built"] = faults_per_step()
        from hessdistill.heap import keep_freed_memory

        out["in_effect"] = keep_freed_memory()
    else:  # the command, on a subcommand that fails at once (the process settings come first)
        from hessdistill.cli import main

        try:
            main(sys.argv[3:] + ["export", tmp + "/missing", "-o", tmp + "/x.pt"])
        except SystemExit:
            pass
    faults_per_step()
    out["after"] = faults_per_step()
    print(json.dumps(out))
""")


def _faults(*args):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, os.path.dirname(__file__), *args], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    faults = json.loads(proc.stdout.strip().splitlines()[-1])
    assert faults["untouched"] > 100, faults  # the bad state is real: hundreds of fresh pages per step
    return faults


def test_building_calculator_force_and_trainer_leaves_the_heap_alone_until_asked():
    faults = _faults("library")
    assert faults["built"] > 0.5 * faults["untouched"], faults  # still faulting: nobody changed glibc's settings
    assert faults["in_effect"] and faults["after"] < 0.05 * faults["untouched"], faults  # the opt-in works


@pytest.mark.parametrize("flags,tuned", [([], True), (["--no-heap-tuning"], False)])
def test_command_sets_the_heap_unless_told_not_to(flags, tuned):
    faults = _faults("cli", *flags)
    if tuned:
        assert faults["after"] < 0.05 * faults["untouched"], faults
    else:
        assert faults["after"] > 0.5 * faults["untouched"], faults


LARGE = textwrap.dedent("""
    import json, resource, statistics, sys
    import torch
    from hessdistill.heap import keep_freed_memory

    SIZES_MB = (40, 64, 48)  # a large system's step: several blocks over 32 MB, allocated, written and freed

    def step():
        blocks = [torch.ones(mb * 1024 * 1024 // 8, dtype=torch.float64) for mb in SIZES_MB]
        return sum(float(b[0]) for b in blocks)

    def faults(step):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        step()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    keep_freed_memory(large_blocks=sys.argv[1] == "large")
    per_step = [faults(step) for _ in range(30)]
    # steady state: the heap's free blocks settle within 3-8 steps (measured over 90 runs), later under load
    print(json.dumps(statistics.median(per_step[6:])))
""")


def test_large_blocks_are_reused_only_when_asked():
    """Blocks over glibc's 32 MB ceiling come from mmap and are faulted in afresh at every step (a 47k-atom OpenMM
    step: ~300k faults, half its time in the kernel) unless ``keep_freed_memory(large_blocks=True)``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    faults = {mode: json.loads(subprocess.run([sys.executable, "-c", LARGE, mode], env=env, capture_output=True,
                                              text=True, check=True).stdout)
              for mode in ("thresholds", "large")}
    pages = (40 + 64 + 48) * 1024 * 1024 / 4096
    assert faults["thresholds"] > 0.8 * pages  # every block faulted in again, every step
    assert faults["large"] < 0.05 * pages  # the typical step faults in nothing: the heap's freed blocks are reused
