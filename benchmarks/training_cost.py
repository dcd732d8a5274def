"""Figure 3 (training cost): time per epoch with s = 1, 4 and 3N Hessian rows against energy + forces only.

Run alone, one mode: training steps per second, eager against compiled, per structure, dtype and s
(docs/design/training.md):

    OMP_NUM_THREADS=1 python benchmarks/training_cost.py compiled [--sizes ethanol si64] [--dtypes float32 float64]
        [--rows 1 0] [--rounds 5] [--steps 20] [--out benchmarks/studies/results/training_speed.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import BENCH_DIR, default_student, size_label
from timing import interleaved

TARGET_S1_RATIO = 2.0


def measure(dataset, size) -> dict:
    import accuracy
    from hessdistill.label import load_labels
    from hessdistill.distill import Trainer

    arch, features, layers = size.students[0]
    n_atoms = len(load_labels(dataset.labels)[0].numbers)
    n3 = 3 * n_atoms
    stored = n3 if dataset.rows == "full" else int(dataset.rows)
    s_values = sorted({s for s in (1, 4, n3) if s <= stored})
    configs = {"E+F": accuracy.config(size, dataset, arch, features, layers, 0, 0.0, 1)}
    for s in s_values:
        name = f"s={s}" + (" (3N)" if s == n3 else "")
        configs[name] = accuracy.config(size, dataset, arch, features, layers, 0, accuracy.HESSIAN_WEIGHT, s)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {k: Trainer(c, dataset.labels, Path(tmp) / k.replace(" ", "_"), resume=False, progress=False)
                    for k, c in configs.items()}
        t = interleaved({k: tr.train_epoch for k, tr in trainers.items()}, size.epoch_rounds,
                        desc=f"epochs [{dataset.system}]")
        n_train = len(next(iter(trainers.values())).graphs["train"])
    out = {"student": size_label(arch, features, layers), "train_structures": n_train,
           "batch_size": size.batch_size, "atoms_per_structure": n_atoms, "hessian_rows_stored": stored,
           "rounds": size.epoch_rounds, "seconds_per_epoch": {k: t.median(k) for k in configs},
           "ratio_to_EF": {k: t.ratio(k, "E+F") for k in configs if k != "E+F"}, "timing": t.summary()}
    s1 = out["ratio_to_EF"].get("s=1", {}).get("median", float("nan"))
    out["s1_ratio"] = s1
    out["target_s1_ratio"] = TARGET_S1_RATIO
    out["target_met"] = bool(s1 <= TARGET_S1_RATIO)
    return out


def compiled_setup(name: str, dtype: str, rows: int, batch_size: int):
    """(config, the default student, a batch of ``batch_size`` rattled copies of ``name`` with random labels)."""
    import torch
    from ase.build import molecule

    from hessdistill.distill import DistillConfig
    from hessdistill.distill.data import build_graphs, collate, element_types
    from hessdistill.label.store import LabeledStructure
    from systems import silicon

    config = DistillConfig(dtype=dtype, hessian_rows=max(rows, 1), hessian_weight=100.0 if rows else 0.0,
                           batch_size=batch_size, device="cpu")
    rng, items = np.random.default_rng(0), []
    for k in range(batch_size):
        a = molecule("CH3CH2OH") if name == "ethanol" else silicon(2, rattle=0.0)
        a.rattle(0.05, seed=k)
        n = 3 * len(a)
        items.append(LabeledStructure(a.numbers, a.positions, a.cell.array, a.pbc, 0.0, rng.normal(size=(len(a), 3)),
                                      np.arange(n), rng.normal(size=(n, n)), "train", k))
    names, numbers = element_types(items)
    model = default_student(names, numbers).to(getattr(torch, dtype))
    return config, model, collate(build_graphs(items, names, config.cutoff, getattr(torch, dtype), "cpu"))


def compiled_steps(config, model, batch):
    """(eager step, compiled step, compile seconds): each does loss, gradients, clipping and an AdamW update."""
    import torch

    from hessdistill.distill.compiled import CompiledStep
    from hessdistill.distill.data import sample_row_slots
    from hessdistill.distill.loss import slots_loss

    norm = {"energy": 1.0, "forces": 1.0, "hessian": 1.0}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6, fused=True)  # tiny lr: the weights stay near where they start
    rng = np.random.default_rng(0)

    def slots():
        return sample_row_slots(batch, config.hessian_rows, rng) if config.hessian_weight > 0 else None

    def update():
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()

    def eager():
        loss = slots_loss(model, batch, config, norm, slots())
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        update()

    step = CompiledStep(model, config, norm)

    def compiled():
        _, grads = step(batch, slots())
        for p, g in zip(params, grads):
            p.grad = g
        update()

    t0 = time.perf_counter()
    compiled()
    return eager, compiled, time.perf_counter() - t0


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    p.add_argument("mode", choices=["compiled"], help="the mode (figure 3 itself runs in run.py)")
    p.add_argument("--sizes", nargs="+", default=["ethanol", "si64"], choices=["ethanol", "si64"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--rows", nargs="+", type=int, default=[1, 0], help="s (0: energies and forces only)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps per arm per round")
    p.add_argument("--out", default=str(BENCH_DIR / "studies" / "results" / "training_speed.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["setup"] = {"torch": torch.__version__, "threads": 1, "batch_size": a.batch_size,
                        "student": "DistillConfig() default (painn 32 features x 2 interactions)",
                        "clock": "process CPU time", "rounds": a.rounds, "steps_per_round": a.steps}
    for name in a.sizes:
        for dtype in a.dtypes:
            for rows in a.rows:
                eager, compiled, compile_s = compiled_steps(*compiled_setup(name, dtype, rows, a.batch_size))
                key = f"{name}/{dtype}/s={rows}"
                timings = interleaved({"eager": eager, "compiled": compiled}, a.rounds, calls=a.steps, desc=key)
                speedup = timings.ratio("eager", "compiled")  # eager time / compiled time = steps/s gained
                e, c = 1.0 / timings.median("eager"), 1.0 / timings.median("compiled")
                results[key] = {"eager_steps_per_s": e, "compiled_steps_per_s": c, "speedup_median": speedup["median"],
                                "speedup_min": speedup["min"], "speedup_max": speedup["max"], "compile_s": compile_s,
                                "timing": timings.summary()}
                print(f"{key:22s} eager {e:7.1f}/s  compiled {c:7.1f}/s  x{speedup['median']:.2f} "
                      f"[{speedup['min']:.2f}-{speedup['max']:.2f}]  compile {compile_s:.0f} s", flush=True)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
