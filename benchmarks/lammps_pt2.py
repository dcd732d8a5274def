"""LAMMPS cost per atom-step with pair_style hessdistill: TorchScript student file against the compiled .pt2 package.
Target (issue 11): >= 3x over TorchScript in LAMMPS on CPU.

    OMP_NUM_THREADS=1 python benchmarks/lammps_pt2.py [--rounds 5] [--cells 2 4 8] [--out results/lammps_pt2.json]

One PaiNN student of the size ``hessdistill distill`` trains by default (DistillConfig: 32 features, 2
interactions; random weights: speed does not depend on them) is exported as TorchScript and as .pt2, in float32
and float64. For each bulk Si cell (n^3 conventional cells, rattled: 64, 512, 4096 atoms) two LAMMPS instances run
NVE in this process (the lammps module), one per format, with ``pair_style hessdistill threads 1 memory cache`` on one rank. After warm-up steps they are
timed in interleaved rounds (timing.interleaved: TorchScript, pt2, TorchScript, pt2, ...), each round ``run N``
steps on the process's CPU clock, so other jobs on the machine slow both alike; the speed-up is the median over
rounds of the within-round ratio (min and max kept). us per atom-step is the whole LAMMPS step (neighbor lists and
integration included) per atom.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lammps_bench import lammps_instance  # noqa: E402
from timing import Seconds, interleaved  # noqa: E402


def silicon(cells: int):
    from ase.build import bulk

    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(cells)
    atoms.rattle(0.05, seed=cells)
    return atoms


def steps(lmp, n: int) -> Seconds:
    """CPU seconds per step of ``run n`` (LAMMPS runs in this process, one torch thread)."""
    t0 = time.process_time()
    lmp.command(f"run {n} pre no post no")
    return Seconds((time.process_time() - t0) / n)


def main(argv=None):
    from common import default_student
    from hessdistill.engines.lammps import build_plugin
    from hessdistill.formats import save_student

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cells", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--seconds", type=float, default=0.5, help="CPU seconds per timed call (sets steps per round)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "lammps_pt2.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    plugin = build_plugin()
    model = default_student(["Si"], [14])
    results = {"torch": torch.__version__, "clock": "process_time", "threads": 1, "ranks": 1,
               "student": {"architecture": "painn", **model.hyperparameters()}, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dtype in a.dtypes:
            paths = {}
            for fmt, suffix in (("torchscript", ".pt"), ("pt2", ".pt2")):
                t0 = time.perf_counter()
                paths[fmt] = save_student(model, tmp / f"s_{dtype}{suffix}", dtype=dtype, format=fmt)
                print(f"export {dtype} {fmt}: {time.perf_counter() - t0:.1f} s", flush=True)
            for cells in a.cells:
                atoms = silicon(cells)
                lmps = {}
                for fmt, path in paths.items():
                    (tmp / fmt).mkdir(exist_ok=True)
                    lmps[fmt] = lammps_instance(path, atoms, plugin, tmp / fmt)[0]
                try:
                    first = {fmt: steps(lmp, 2) for fmt, lmp in lmps.items()}  # warm-up, and the step count
                    n = max(1, round(a.seconds / max(first.values())))
                    timings = interleaved({fmt: (lambda lmp=lmp: steps(lmp, n)) for fmt, lmp in lmps.items()},
                                          a.rounds, warmup=0, desc=f"{dtype} {len(atoms)} atoms")
                finally:
                    for lmp in lmps.values():
                        lmp.close()
                ts, pt2 = (np.asarray(timings.seconds[fmt]) for fmt in ("torchscript", "pt2"))
                ratio = ts / pt2
                row = {"atoms": len(atoms), "dtype": dtype, "steps_per_round": n,
                       "ms_per_step": {"torchscript": 1e3 * float(np.median(ts)), "pt2": 1e3 * float(np.median(pt2))},
                       "us_per_atom_step": {"torchscript": 1e6 * float(np.median(ts)) / len(atoms),
                                            "pt2": 1e6 * float(np.median(pt2)) / len(atoms)},
                       "speedup": {"median": float(np.median(ratio)), "min": float(ratio.min()),
                                   "max": float(ratio.max())},
                       "seconds_per_step": {"torchscript": ts.tolist(), "pt2": pt2.tolist()}}
                results["rows"].append(row)
                u = row["us_per_atom_step"]
                print(f"{dtype} {len(atoms):5d} atoms: TorchScript {u['torchscript']:7.2f} us/atom-step, pt2 "
                      f"{u['pt2']:7.2f}; speed-up {row['speedup']['median']:.2f}x (min {row['speedup']['min']:.2f}, "
                      f"max {row['speedup']['max']:.2f})", flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
