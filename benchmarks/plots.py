"""PNG figures from the results dict (each function skips parts that failed and returns the path it wrote)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speed import TARGET_SPEEDUP
from training_cost import TARGET_S1_RATIO


def subplots(*args, **kwargs):
    """``matplotlib.pyplot.subplots`` on the Agg backend (files only, no display): every figure here and in the
    studies starts with it and ends with ``save``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _ok(part) -> bool:
    return isinstance(part, dict) and "error" not in part


def pareto(results: dict, path: Path) -> Path:
    """Speed-up over the teacher (ASE MD steps/s ratio) against held-out force MAE, per student size, distilled
    (filled) and undistilled (open) of equal size, data and training steps."""
    systems = [s for s in ("ethanol", "si") if _ok(results["speed"].get(s)) and _ok(results["accuracy"].get(s))]
    fig, axes = subplots(1, max(1, len(systems)), figsize=(6 * max(1, len(systems)), 4.2), squeeze=False)
    for ax, system in zip(axes[0], systems):
        sp, acc = results["speed"][system], results["accuracy"][system]
        for k, (label, entry) in enumerate(sp["students"].items()):
            a = acc["sizes"].get(label)
            if not a:
                continue
            x = entry["speedup"]["median"]
            yd, yu = 1e3 * a["distilled"]["force_mae"], 1e3 * a["undistilled"]["force_mae"]
            ax.plot([x, x], [yu, yd], color=f"C{k}", lw=1, alpha=0.6)
            ax.scatter([x], [yd], color=f"C{k}", marker="o", s=50, label=f"{label} ({a['parameters']} params)")
            ax.scatter([x], [yu], facecolors="none", edgecolors=f"C{k}", marker="o", s=50)
        if "target_speedup" in sp:
            ax.axvline(sp["target_speedup"], color="grey", ls="--", lw=1, label=f"target {sp['target_speedup']:g}x")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"speed-up over {sp['teacher']['name']} (ASE MD steps/s, {sp['structure_atoms']} atoms)")
        ax.set_ylabel("test force MAE vs teacher (meV/A)")
        ax.set_title(f"{system}: filled = Hessian-distilled, open = undistilled", fontsize=10)
        ax.legend(fontsize=7)
    return save(fig, path)


def accuracy_bars(results: dict, path: Path) -> Path:
    """Force and Hessian MAE, distilled vs undistilled, per size (error bars: std over seeds)."""
    systems = [s for s in ("ethanol", "si") if _ok(results["accuracy"].get(s))]
    fig, axes = subplots(2, max(1, len(systems)), figsize=(6 * max(1, len(systems)), 6.5), squeeze=False)
    for col, system in enumerate(systems):
        sizes = results["accuracy"][system]["sizes"]
        labels = list(sizes)
        x = np.arange(len(labels))
        for row, (key, scale, unit) in enumerate((("force_mae", 1e3, "meV/A"), ("hessian_mae", 1.0, "eV/A^2"))):
            ax = axes[row, col]
            for k, arm in enumerate(("undistilled", "distilled")):
                vals = [scale * sizes[lb][arm][key] for lb in labels]
                errs = [scale * sizes[lb][arm][f"{key}_std"] for lb in labels]
                ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=errs, label=arm, color=f"C{k}")
            ax.set_xticks(x, labels, fontsize=8)
            ax.set_ylabel(f"test {key.replace('_', ' ')} ({unit})")
            ax.set_title(f"{system} (main size: mean of {results['accuracy'][system]['seeds']} seeds)", fontsize=9)
            ax.legend(fontsize=8)
    return save(fig, path)


def s_curve(results: dict, path: Path) -> Path:
    """Accuracy and epoch time against s (Hessian rows per structure and step; s = 0 is wH = 0)."""
    fig, axes = subplots(1, 3, figsize=(14, 3.8))
    curve = results["training_cost"].get("s_curve", {})
    for k, (system, rows) in enumerate(curve.items()):
        if not isinstance(rows, list) or not rows:
            continue
        s = [r["s"] for r in rows]
        axes[0].plot(s, [1e3 * r["force_mae"] for r in rows], "o-", color=f"C{k}", label=system)
        axes[1].plot(s, [r["hessian_mae"] for r in rows], "o-", color=f"C{k}", label=system)
    for k, system in enumerate(("ethanol", "si")):
        cost = results["training_cost"].get(system)
        if not _ok(cost):
            continue
        pts = [(0, 1.0)] + [(int(name.split("=")[1].split()[0]), r["median"]) for name, r in cost["ratio_to_EF"].items()]
        axes[2].plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=f"C{k}", label=system)
    axes[2].axhline(TARGET_S1_RATIO, color="grey", ls="--", lw=1, label="target for s = 1")
    for ax, title in zip(axes, ("test force MAE (meV/A)", "test Hessian MAE (eV/A^2)", "epoch time / E+F epoch time")):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=-0.1)
        ax.set_xlabel("s (Hessian rows per structure and step; 0 = E+F only)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    return save(fig, path)


def conservation(results: dict, path: Path) -> Path:
    """NVE drift per seed for each model, with the count of unstable runs."""
    part = results["conservation"]
    systems = [s for s, v in part.items() if _ok(v)]
    fig, axes = subplots(1, max(1, len(systems)), figsize=(6 * max(1, len(systems)), 3.8), squeeze=False)
    for ax, system in zip(axes[0], systems):
        models = part[system]["models"]
        for k, (name, m) in enumerate(models.items()):
            d = np.abs(np.asarray(m["drift_per_seed"], dtype=float))
            ax.scatter(np.full(len(d), k), np.maximum(d, 1e-12), color=f"C{k}")
        ax.set_xticks(range(len(models)), [f"{n}\n{m['unstable_runs']}/{m['seeds']} unstable, {m['steps']} steps"
                                           for n, m in models.items()], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("|NVE drift| (eV/atom/ps)")
        ax.set_title(f"{system}: drift per seed (first 20% discarded)", fontsize=10)
    return save(fig, path)


def speed_and_labeling(results: dict, path: Path) -> Path:
    """Left: MD speed-up of every student (and engine) over the teacher. Right: Hessian rows/s, batched vs loop."""
    fig, (ax1, ax2) = subplots(1, 2, figsize=(13, 4))
    names, vals, colors = [], [], []
    for k, system in enumerate(("ethanol", "si")):
        sp = results["speed"].get(system)
        if not _ok(sp):
            continue
        for label, e in sp["students"].items():
            names.append(f"{system}\n{label}")
            vals.append(e["speedup"]["median"])
            colors.append(f"C{k}")
        if "speedup" in sp.get("engine", {}):
            names.append(f"{system}\n{sp['engine']['student']}\n{sp['engine']['name']}")
            vals.append(sp["engine"]["speedup"]["median"])
            colors.append(f"C{k + 2}")
    ax1.bar(range(len(vals)), vals, color=colors)
    ax1.set_xticks(range(len(vals)), names, fontsize=6)
    ax1.set_yscale("log")
    ax1.axhline(TARGET_SPEEDUP["si"], color="grey", ls="--", lw=1)
    ax1.set_ylabel("MD steps/s, student / teacher")
    ax1.set_title(f"speed-up (ASE float32; darker colours: OpenMM / LAMMPS); dashed: {TARGET_SPEEDUP['si']:g}x",
                  fontsize=9)
    lab = results["labeling_cost"]
    if _ok(lab):
        cases = list(lab["cases"])
        x = np.arange(len(cases))
        for k, mode in enumerate(("batched", "loop")):
            ax2.bar(x + (k - 0.5) * 0.38, [lab["cases"][c][mode]["rows_per_s"] for c in cases], 0.38, label=mode)
        ax2.set_xticks(x, cases)
        ax2.set_yscale("log")
        ax2.set_ylabel("teacher Hessian rows / s")
        ax2.set_title("labelling: full teacher Hessian, batched VJPs vs row loop", fontsize=9)
        ax2.legend()
    return save(fig, path)


ALL = {"pareto": pareto, "accuracy": accuracy_bars, "s_curve": s_curve, "conservation": conservation,
       "speed_labeling": speed_and_labeling}


def make_all(results: dict, out: Path) -> dict:
    """Every figure that its data allow; {name: path or error}."""
    from common import guarded

    made = {}
    for name, fn in ALL.items():
        r = guarded(fn, results, Path(out) / f"{name}.png")
        made[name] = str(r) if not isinstance(r, dict) else r
    return made
