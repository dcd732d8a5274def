"""ASE calculator time per energy+forces call: TorchScript student file against the compiled .pt2 package.

Standalone (no harness): one PaiNN student of the default size (random weights: speed does not depend on them) is
exported in both formats and both dtypes, then each structure is timed in interleaved rounds (TorchScript, pt2,
TorchScript, pt2, ...) on the process's CPU clock at one torch thread; the reported speed-up is the median over
rounds of the within-round ratio, with its min and max. The neighbor list is part of every call (as in MD).

    OMP_NUM_THREADS=1 python benchmarks/pt2_speed.py [--rounds 7] [--sizes ethanol si64 si512] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def systems(names):
    from ase.build import bulk, molecule

    out = {}
    for name in names:
        if name == "ethanol":
            a = molecule("CH3CH2OH")
        elif name.startswith("si"):
            a = bulk("Si", cubic=True).repeat({"si8": 1, "si64": 2, "si216": 3, "si512": 4}[name])
        else:
            raise SystemExit(f"unknown size {name!r}: ethanol, si8, si64, si216 or si512")
        a.rattle(0.05, seed=1)
        out[name] = a
    return out


def student():
    from ase.data import atomic_numbers

    from hessdistill.students import build_student

    torch.manual_seed(0)
    names = ["H", "C", "O", "Si"]
    return build_student("painn", type_names=names, atomic_numbers=[atomic_numbers[s] for s in names])


def call_time(calc, atoms, calls: int) -> float:
    """CPU seconds per energy+forces call; positions move a little each call, so nothing is cached."""
    from ase.calculators.calculator import all_changes

    rng = np.random.default_rng(0)
    t0 = time.process_time()
    for _ in range(calls):
        atoms.positions += rng.normal(scale=1e-4, size=atoms.positions.shape)
        calc.calculate(atoms, ["energy", "forces"], all_changes)
    return (time.process_time() - t0) / calls


def main(argv=None):
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.formats import save_student

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sizes", nargs="+", default=["ethanol", "si64", "si512"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    model = student()
    results = {"torch": torch.__version__, "clock": "process_time", "threads": 1, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in a.dtypes:
            paths = {}
            for fmt, suffix in (("torchscript", ".pt"), ("pt2", ".pt2")):
                t0 = time.perf_counter()
                paths[fmt] = save_student(model, Path(tmp) / f"s_{dtype}{suffix}", dtype=dtype, format=fmt)
                print(f"export {dtype} {fmt}: {time.perf_counter() - t0:.1f} s, "
                      f"{paths[fmt].stat().st_size / 1e6:.2f} MB", flush=True)
            calcs = {fmt: StudentCalculator(path, device="cpu") for fmt, path in paths.items()}
            for name, atoms in systems(a.sizes).items():
                copies = {fmt: atoms.copy() for fmt in calcs}
                calls = max(2, int(2000 / len(atoms)))
                for fmt in calcs:  # warm-up: TorchScript's profiling executor optimizes during the first calls
                    call_time(calcs[fmt], copies[fmt], 3)
                seconds = {fmt: [] for fmt in calcs}
                for _ in range(a.rounds):
                    for fmt in calcs:
                        seconds[fmt].append(call_time(calcs[fmt], copies[fmt], calls))
                ratio = np.asarray(seconds["torchscript"]) / np.asarray(seconds["pt2"])
                row = {"system": name, "atoms": len(atoms), "dtype": dtype, "calls_per_round": calls,
                       "ms_torchscript": 1e3 * float(np.median(seconds["torchscript"])),
                       "ms_pt2": 1e3 * float(np.median(seconds["pt2"])),
                       "speedup": {"median": float(np.median(ratio)), "min": float(ratio.min()),
                                   "max": float(ratio.max())},
                       "seconds": seconds}
                results["rows"].append(row)
                print(f"{name:8s} {len(atoms):4d} atoms {dtype}: TorchScript {row['ms_torchscript']:8.3f} ms, "
                      f"pt2 {row['ms_pt2']:8.3f} ms, speed-up {row['speedup']['median']:.2f}x "
                      f"(min {row['speedup']['min']:.2f}, max {row['speedup']['max']:.2f})", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
