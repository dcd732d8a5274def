"""The study behind the default Hessian-loss weight wH (BENCHMARKS.md section 2): wH = 0, 10, 30, 100.

    python benchmarks/studies/hessian_weight.py        # writes results/hessian_weight.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import json  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

import accuracy  # noqa: E402
import common  # noqa: E402
import systems  # noqa: E402

WEIGHTS = (0.0, 10.0, 30.0, 100.0)
SEEDS = (0, 1, 2)
RESULTS = Path(__file__).parent / "results"


def main() -> dict:
    size = common.DEFAULT
    arch, features, layers = size.students[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = {s: systems.build(s, size, Path(tmp)) for s in ("ethanol", "si")}
        jobs = [(s, dict(arch=arch, features=features, layers=layers, seed=seed, hessian_weight=wh, s=1))
                for s in data for seed in SEEDS for wh in WEIGHTS]
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(accuracy.train_one, size, data[s], tmp, job) for s, job in jobs]
            records = [f.result() for f in futures]
    out = {}
    for system in data:
        out[system] = {}
        for wh in WEIGHTS:
            runs = [r["test"] for r in records if r["system"] == system and r["hessian_weight"] == wh]
            out[system][f"{wh:g}"] = {k: float(np.mean([t[k] for t in runs]))
                                      for k in ("force_mae", "hessian_mae", "energy_mae_per_atom")}
            out[system][f"{wh:g}"]["force_mae_per_seed"] = [t["force_mae"] for t in runs]
            m = out[system][f"{wh:g}"]
            print(f"{system:8s} wH {wh:5g}: force {1e3 * m['force_mae']:6.1f} meV/A, Hessian "
                  f"{m['hessian_mae']:.3f} eV/A^2, energy {1e3 * m['energy_mae_per_atom']:.2f} meV/atom")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "hessian_weight.json").write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options: --help only
    main()
