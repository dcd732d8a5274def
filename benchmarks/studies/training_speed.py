"""Training steps per second, eager against compiled, per structure, dtype and s (docs/design/training.md).

    OMP_NUM_THREADS=1 python benchmarks/studies/training_speed.py [--sizes ethanol si64] [--dtypes float32 float64]
        [--rows 1 0] [--rounds 5] [--steps 20] [--out benchmarks/studies/results/training_speed.json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import interleaved  # noqa: E402


def structures(name: str, copies: int):
    from ase.build import bulk, molecule

    base = molecule("CH3CH2OH") if name == "ethanol" else bulk("Si", cubic=True).repeat(2)
    if name not in ("ethanol", "si64"):
        raise SystemExit(f"unknown size {name!r}: ethanol or si64")
    out = []
    for k in range(copies):
        a = base.copy()
        a.rattle(0.05, seed=k)
        out.append(a)
    return out


def setup(name: str, dtype: str, rows: int, batch_size: int):
    from hessdistill.distill import DistillConfig
    from hessdistill.distill.data import Graph, collate
    from hessdistill.neighbors import neighbor_list
    from hessdistill.students import build_student

    config = DistillConfig(dtype=dtype, hessian_rows=max(rows, 1), hessian_weight=100.0 if rows else 0.0,
                           batch_size=batch_size, device="cpu")
    atoms = structures(name, batch_size)
    zs = sorted({int(z) for a in atoms for z in a.numbers})
    from ase.data import chemical_symbols

    names = [chemical_symbols[z] for z in zs]
    torch.manual_seed(0)
    model = build_student(config.architecture, type_names=names, atomic_numbers=zs, cutoff=config.cutoff,
                          features=config.features, num_interactions=config.num_interactions,
                          num_basis=config.num_basis).to(getattr(torch, dtype))
    kw = dict(dtype=getattr(torch, dtype))
    gen = torch.Generator().manual_seed(0)
    graphs = []
    for a in atoms:
        ei, sh = neighbor_list(a, config.cutoff)
        n = len(a)
        graphs.append(Graph(
            species=torch.tensor([zs.index(int(z)) for z in a.numbers]), positions=torch.tensor(a.positions, **kw),
            edge_index=torch.tensor(ei), shifts=torch.tensor(sh, **kw), energy=0.0,
            forces=torch.randn(n, 3, generator=gen).to(**kw), hessian_rows=np.arange(3 * n),
            hessian=torch.randn(3 * n, 3 * n, generator=gen).to(**kw)))
    norm = {"energy": 1.0, "forces": 1.0, "hessian": 1.0}
    return config, model, collate(graphs), norm


def make_steps(config, model, batch, norm):
    """(eager step, compiled step, compile seconds): each does loss, gradients, clipping and an AdamW update."""
    from hessdistill.distill.compiled import CompiledStep
    from hessdistill.distill.data import sample_row_slots
    from hessdistill.distill.loss import slots_loss

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", nargs="+", default=["ethanol", "si64"])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--rows", nargs="+", type=int, default=[1, 0], help="s (0: energies and forces only)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=20, help="steps per arm per round")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "training_speed.json"))
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
                eager, compiled, compile_s = make_steps(*setup(name, dtype, rows, a.batch_size))
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


if __name__ == "__main__":
    main()
