"""ASE calculator time per energy+forces call, TorchScript against .pt2 (docs/design/pt2.md).

    OMP_NUM_THREADS=1 python benchmarks/studies/pt2_speed.py [--rounds 7] [--sizes ethanol si64 si512] [--out results.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import interleaved, spread  # noqa: E402


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

    from common import default_student

    names = ["H", "C", "O", "Si"]
    return default_student(names, [atomic_numbers[s] for s in names])


def ase_call(calc, atoms, rng) -> None:
    """One energy+forces call; positions move a little each call, so nothing is cached."""
    from ase.calculators.calculator import all_changes

    atoms.positions += rng.normal(scale=1e-4, size=atoms.positions.shape)
    calc.calculate(atoms, ["energy", "forces"], all_changes)


def model_inputs(student, atoms):
    from hessdistill.neighbors import neighbor_list

    ei, sh = neighbor_list(atoms, student.cutoff)
    return (torch.tensor(atoms.positions, dtype=student.dtype), student.species(atoms.get_chemical_symbols()),
            torch.tensor(ei), torch.tensor(sh, dtype=student.dtype))


def main(argv=None):
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.formats import save_student

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--sizes", nargs="+", default=["ethanol", "si64", "si512"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args(argv)
    from hessdistill.heap import keep_freed_memory

    torch.set_num_threads(1)
    # the heap setting the CLI applies and a user's MD script is told to (heap.py): without it TorchScript's
    # per-call page faults made its times vary 1.5x between runs of this benchmark, the package's hardly
    keep_freed_memory()
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
                calls = max(2, int(2000 / len(atoms)))
                copies = {fmt: atoms.copy() for fmt in calcs}
                inputs = {fmt: model_inputs(calc.student, atoms) for fmt, calc in calcs.items()}
                fns = {}
                for fmt, calc in calcs.items():
                    fns[f"ase {fmt}"] = partial(ase_call, calc, copies[fmt], np.random.default_rng(0))
                    fns[f"model {fmt}"] = partial(calc.student.evaluate, *inputs[fmt])
                # 3 warm-up calls each: TorchScript's profiling executor optimizes during the first calls
                seconds = interleaved(fns, a.rounds, calls=calls, warmup=3, desc=f"{name} {dtype}").seconds
                for what in ("ase", "model"):
                    ts, pt2 = (np.asarray(seconds[f"{what} {fmt}"]) for fmt in ("torchscript", "pt2"))
                    ratio = ts / pt2
                    row = {"system": name, "atoms": len(atoms), "dtype": dtype, "what": what,
                           "calls_per_round": calls, "ms_torchscript": 1e3 * float(np.median(ts)),
                           "ms_pt2": 1e3 * float(np.median(pt2)),
                           "speedup": spread(ratio),
                           "seconds": {"torchscript": ts.tolist(), "pt2": pt2.tolist()}}
                    results["rows"].append(row)
                    print(f"{name:8s} {len(atoms):4d} atoms {dtype} {what:5s}: TorchScript "
                          f"{row['ms_torchscript']:8.3f} ms, pt2 {row['ms_pt2']:8.3f} ms, "
                          f"speed-up {row['speedup']['median']:.2f}x (min {row['speedup']['min']:.2f}, "
                          f"max {row['speedup']['max']:.2f})", flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
