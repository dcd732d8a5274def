"""A run's record: ``metrics.csv`` (one row per validation, by epoch) and its plot, ``learning_curve.png``."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "val_energy_mae", "val_force_mae", "val_hessian_mae", "seconds",
                  "val_stress_mae")


def write_metrics(history: list[dict], path: str | os.PathLike) -> None:
    """Write ``history`` (dicts keyed by ``METRIC_COLUMNS``) as CSV, whole and atomically: a resumed run never
    holds rows of epochs it redid."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)


def plot_learning_curve(metrics_csv, png) -> None:
    """Training loss and validation energy/force/Hessian MAE against epoch (log scale)."""
    from matplotlib.figure import Figure  # no pyplot: the process's backend stays the caller's

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig = Figure(figsize=(14, 3.2))
    axes = fig.subplots(1, 4)
    for ax, key, label in zip(
        axes,
        ("train_loss", "val_energy_mae", "val_force_mae", "val_hessian_mae"),
        ("train loss", "val energy MAE (eV)", "val force MAE (eV/A)", "val Hessian MAE (eV/A^2)"),
    ):
        # some columns are taken on some epochs only (the validation Hessian MAE): plot the finite points
        points = [(e, float(r[key])) for e, r in zip(ep, rows) if math.isfinite(float(r[key]))]
        if points:
            ax.plot(*zip(*points), marker="." if len(points) < 30 else None)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
