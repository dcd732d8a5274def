"""Experiment for the training-cost decision of issue 4 (not used by the package or by run.py).

The package computes the student's Hessian row with a vector-Jacobian product: a second reverse pass through the
force graph, after which the loss's parameter gradient is a third-order reverse pass. This script trains the same
students with the row taken instead by central differences of the student's own forces,
(g(x + eps e_k) - g(x - eps e_k)) / (2 eps), the two displaced copies batched with the structure (edge lists kept:
the envelope makes edges near the cutoff contribute ~0), so the loss needs only second-order passes. It prints the
epoch-time ratio to E+F training for both methods (interleaved epochs, median of within-round ratios) and the test
force MAE of 3 seeds, next to the VJP and undistilled runs of the last full benchmark.

    python benchmarks/run.py                                   # first: label stores and runs in results/work
    python benchmarks/rows_by_differences.py ethanol|si [eps_A]

Measured 2026-11-25 (eps 0.01 A, float32, batch 1, this 2-core VM): epoch time VJP 2.06x / FD 1.27x (ethanol),
VJP 2.24x / FD 1.45x (Si); test force MAE over 3 seeds (meV/A) undistilled 212.4, VJP 99.6, FD 103.6 (ethanol);
49.8, 21.9, 22.7 (Si).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import accuracy
import common
from hessdistill.distill import Trainer, evaluate, predict
from hessdistill.distill.data import collate, sample_row_slots
from hessdistill.distill.loss import energy_force_loss, hessian_row_loss

RESULTS = Path(__file__).parent / "results"


class DifferenceRowsTrainer(Trainer):
    """A Trainer whose s = 1 Hessian row comes from central differences of the student's forces."""

    eps = 0.01  # A

    def loss(self, batch, rng) -> torch.Tensor:
        coords, teacher = sample_row_slots(batch, 1, rng)
        plus, minus = [], []
        for b, (g, off) in enumerate(zip(batch.graphs, batch.offsets)):
            k = int(coords[0, b]) - 3 * off
            for sign, out in ((1.0, plus), (-1.0, minus)):
                pos = g.positions.clone()
                pos.view(-1)[k] += sign * self.eps
                out.append(dataclasses.replace(g, positions=pos))
        energy, grad, _ = predict(self.model, collate(list(batch.graphs) + plus + minus), create_graph=True)
        nb, n = len(batch.graphs), batch.positions.shape[0]
        rows = ((grad[n : 2 * n] - grad[2 * n :]) / (2 * self.eps)).reshape(1, -1)
        return (energy_force_loss(energy[:nb], grad[:n], batch, self.config, self.norm)
                + hessian_row_loss(rows, teacher, self.config, self.norm))


def main(system: str, eps: float) -> None:
    from hessdistill.heap import keep_freed_memory

    keep_freed_memory()  # before any timing, as benchmarks/run.py does
    torch.set_num_threads(1)
    DifferenceRowsTrainer.eps = eps
    size = common.DEFAULT
    labels = RESULTS / "work" / size.name / system / "labels.h5"
    dataset = type("Dataset", (), dict(system=system, labels=labels, rows="full" if system == "ethanol" else 24,
                                       cutoff=5.0))
    arch, features, layers = size.students[0]

    def config(wh, seed=0):
        return accuracy.config(size, dataset, arch, features, layers, seed, wh, 1)

    tmp = Path(tempfile.mkdtemp())
    trainers = {"E+F": Trainer(config(0.0), labels, tmp / "ef", resume=False, progress=False),
                "VJP": Trainer(config(accuracy.HESSIAN_WEIGHT), labels, tmp / "vjp", resume=False, progress=False),
                "FD": DifferenceRowsTrainer(config(accuracy.HESSIAN_WEIGHT), labels, tmp / "fd", resume=False,
                                            progress=False)}
    for t in trainers.values():
        t.train_epoch()  # warm-up
    times = {k: np.array(v) for k, v in common.interleaved({k: t.train_epoch for k, t in trainers.items()}, 9,
                                                            desc="epochs").items()}
    for k in ("VJP", "FD"):
        print(f"{system}: epoch time {k} / E+F = {np.median(times[k] / times['E+F']):.2f}")
    fd = []
    for seed in range(size.seeds):
        t = DifferenceRowsTrainer(config(accuracy.HESSIAN_WEIGHT, seed), labels, tmp / f"fd{seed}", resume=False,
                                  progress=False)
        fd.append(evaluate(t.fit(), t.graphs["test"], 6)["force_mae"])
    runs = json.loads((RESULTS / "results.json").read_text())["runs"][system]
    main_size = common.size_label(arch, features, layers)
    vjp = [r["test"]["force_mae"] for r in runs if r["size"] == main_size and r["hessian_weight"] > 0 and r["s"] == 1]
    base = [r["test"]["force_mae"] for r in runs if r["size"] == main_size and r["hessian_weight"] == 0]
    print(f"{system}: test force MAE over {size.seeds} seeds (meV/A): undistilled {1e3 * np.mean(base):.1f}, "
          f"VJP {1e3 * np.mean(vjp):.1f}, FD {1e3 * np.mean(fd):.1f} (eps {eps} A)")


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.01)
