"""Figure 2 (accuracy) and the training runs every other figure uses: distilled vs undistilled students."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import frames_force_mae, in_workers, median, ratio, size_label
from timing import clock  # single runs: CPU seconds, as every timing
from hessdistill.distill import DistillConfig

HESSIAN_WEIGHT = DistillConfig.hessian_weight  # the package default (100; benchmarks/studies/weight_sweep.py)
TARGET_FORCE_RATIO = 0.6


def config(size, dataset, arch: str, features: int, layers: int, seed: int, hessian_weight: float, s: int):
    return DistillConfig(
        architecture=arch, features=features, num_interactions=layers, cutoff=dataset.cutoff,
        hessian_weight=hessian_weight, hessian_rows=s, epochs=size.epochs, patience=size.epochs + 1,
        lr_schedule="cosine", batch_size=size.batch_size, lr=size.lr, seed=seed, dtype="float32", export_dtype="float32", device="cpu",
    )


def jobs(size, dataset) -> list[dict]:
    """Every training run of one system: (size, seed, wH, s)."""
    out = []
    for k, (arch, features, layers) in enumerate(size.students):
        for seed in range(size.seeds if k == 0 else 1):
            for wh in (0.0, HESSIAN_WEIGHT):
                out.append(dict(arch=arch, features=features, layers=layers, seed=seed, hessian_weight=wh, s=1))
    if dataset.rows == "full":  # the s curve needs more stored rows than s; Si stores only a few
        arch, features, layers = size.students[0]
        n3 = 3 * len(dataset.md_structure)
        for s in size.s_values:
            out.append(dict(arch=arch, features=features, layers=layers, seed=0, hessian_weight=HESSIAN_WEIGHT,
                            s=n3 if s == "full" else int(s)))
    return out


def train_one(size, dataset, workdir: str, job: dict) -> dict:
    """One training run (in a worker process): distill, then the record of its test errors."""
    import torch

    from hessdistill.distill import distill
    from hessdistill.heap import keep_freed_memory

    keep_freed_memory()  # a worker process: the heap setting of the parent does not carry over
    torch.set_num_threads(1)
    label = size_label(job["arch"], job["features"], job["layers"])
    name = f"{label}_wh{job['hessian_weight']:g}_s{job['s']}_seed{job['seed']}"
    cfg = config(size, dataset, job["arch"], job["features"], job["layers"], job["seed"], job["hessian_weight"],
                 job["s"])
    t0 = clock()
    summary = distill(cfg, dataset.labels, Path(workdir) / dataset.system / "runs" / name, resume=False,
                      progress=False)
    return {**job, "system": dataset.system, "size": label, "run_dir": str(Path(summary["student"]).parent),
            "student_float32": summary["student"], "parameters": summary["parameters"], "epochs": summary["epochs"],
            "seconds": clock() - t0, "test": summary["test"]}


def train(size, datasets: list, workdir: Path, jobs_parallel: int = 1) -> dict[str, list[dict] | dict]:
    """Run every job of every data set in ``jobs_parallel`` worker processes (one torch thread each); return
    {system: records in job order, or {"error": ...} if one of its runs failed}. Training runs are not timing
    figures, so they may share the cores."""
    todo = [(ds, job) for ds in datasets for job in jobs(size, ds)]
    # longest first (more rows, more features), so the workers finish together
    order = sorted(range(len(todo)), key=lambda k: -(todo[k][1]["s"] + 2) * todo[k][1]["features"]
                   * todo[k][1]["layers"])
    done = in_workers(train_one, [(size, todo[k][0], str(workdir), todo[k][1]) for k in order], jobs_parallel, "train")
    results = [r for _, r in sorted(zip(order, done), key=lambda pair: pair[0])]
    out: dict = {}
    for ds in datasets:
        recs = [r for (d, _), r in zip(todo, results) if d is ds]
        errors = [r["error"] for r in recs if "error" in r]
        out[ds.system] = {"error": f"{len(errors)} training run(s) failed: {errors[0]}"} if errors else recs
    return out


def _mean_metrics(runs: list[dict]) -> dict:
    keys = ("energy_mae_per_atom", "force_mae", "hessian_mae")
    return {**{k: float(np.mean([r["test"][k] for r in runs])) for k in keys},
            **{f"{k}_std": float(np.std([r["test"][k] for r in runs])) for k in keys},
            "per_seed_force_mae": [r["test"]["force_mae"] for r in runs], "seeds": [r["seed"] for r in runs]}


def summarize(records: list[dict], size, transfer: dict | None = None) -> dict:
    """Per size: distilled vs undistilled test MAEs (mean over seeds) and their force-MAE ratio; the main size's
    ratio against the target."""
    main = size_label(*size.students[0])
    out = {"units": {"energy_mae_per_atom": "eV/atom", "force_mae": "eV/A", "hessian_mae": "eV/A^2"},
           "hessian_weight": HESSIAN_WEIGHT, "s": 1, "epochs": size.epochs, "main_size": main, "sizes": {}}
    for label in dict.fromkeys(r["size"] for r in records):
        base = [r for r in records if r["size"] == label and r["hessian_weight"] == 0]
        dist = [r for r in records if r["size"] == label and r["hessian_weight"] > 0 and r["s"] == 1]
        if not base or not dist:
            continue
        entry = {"parameters": base[0]["parameters"], "undistilled": _mean_metrics(base), "distilled": _mean_metrics(dist)}
        entry["force_mae_ratio"] = ratio(entry["distilled"]["force_mae"], entry["undistilled"]["force_mae"])
        entry["hessian_mae_ratio"] = ratio(entry["distilled"]["hessian_mae"], entry["undistilled"]["hessian_mae"])
        per_seed = {r["seed"]: r["test"]["force_mae"] for r in base}
        entry["force_mae_ratio_per_seed"] = [ratio(r["test"]["force_mae"], per_seed[r["seed"]]) for r in dist
                                             if r["seed"] in per_seed]
        entry["train_seconds"] = {"undistilled": median([r["seconds"] for r in base]),
                                  "distilled": median([r["seconds"] for r in dist])}
        out["sizes"][label] = entry
    m = out["sizes"].get(main, {})
    out["seeds"] = len(m.get("force_mae_ratio_per_seed", []))
    out["force_mae_ratio"] = m.get("force_mae_ratio", float("nan"))
    out["target_force_mae_ratio"] = TARGET_FORCE_RATIO
    out["target_met"] = bool(out["force_mae_ratio"] <= TARGET_FORCE_RATIO)
    if transfer:
        out["transfer"] = transfer
    return out


def s_curve(records: list[dict], size) -> list[dict]:
    """Test MAEs of the main size (seed 0) against s, the Hessian rows per structure and step (s = 0: wH = 0)."""
    main = size_label(*size.students[0])
    rows = []
    for r in records:
        if r["size"] != main or r["seed"] != 0:
            continue
        s = 0 if r["hessian_weight"] == 0 else r["s"]
        rows.append({"s": s, **{k: r["test"][k] for k in ("energy_mae_per_atom", "force_mae", "hessian_mae")},
                     "train_seconds": r["seconds"]})
    return sorted(rows, key=lambda x: x["s"])


def transfer_errors(records: list[dict], size, frames: list[dict]) -> dict:
    """Force MAE (eV/A) of the main-size students (seed 0) on larger cells labelled by the teacher."""
    if not frames:
        return {}
    main = size_label(*size.students[0])
    out = {"structures": len(frames), "atoms": len(frames[0]["atoms"])}
    for r in records:
        if r["size"] != main or r["seed"] != 0 or r["s"] != 1:
            continue
        out["distilled" if r["hessian_weight"] > 0 else "undistilled"] = {
            "force_mae": frames_force_mae(r["student_float32"], frames)}
    if "distilled" in out and "undistilled" in out:
        out["force_mae_ratio"] = ratio(out["distilled"]["force_mae"], out["undistilled"]["force_mae"])
    return out


def student(records: list[dict], system: str, label: str, distilled: bool = True, seed: int = 0) -> dict | None:
    """The record of one trained student (s = 1 when distilled)."""
    for r in records:
        if r["system"] == system and r["size"] == label and r["seed"] == seed and r["s"] == 1 \
                and (r["hessian_weight"] > 0) == distilled:
            return r
    return None
