"""Trust study (BENCHMARKS.md section 7, methods in report.md): committee deviation against the true error,
and refine against random frames per teacher call.

    OMP_NUM_THREADS=1 python benchmarks/studies/trust.py [--quick] [--systems ethanol si] [--seeds N] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # common, timing, systems

import numpy as np  # noqa: E402

import common  # noqa: E402
import plots  # noqa: E402
from common import jsonable  # noqa: E402
from timing import clock  # noqa: E402  (CPU seconds, as every timing)

RESULTS = Path(__file__).resolve().parent / "results"
NO_ENERGY_STOP = dict(max_drift=None, max_deviation=None)  # a hot run of a cold student is meant to go astray
THRESHOLD_QUANTILE = 0.5  # refine threshold: this quantile of the hot run's max_devi_f
UPPER_FACTOR = 4.0  # frames above UPPER_FACTOR x threshold are not labelled by refine

SYSTEMS = {
    "ethanol": dict(teacher="ani1x", start="CH3CH2OH", cutoff=4.0, cold="md", cold_T=150.0, hot_T=450.0,
                    rows="full"),
    "si": dict(teacher="sevennet0", start="bulk:Si", cutoff=5.0, cold="rattle", cold_stdev=0.03, cold_T=150.0,
               hot_T=1000.0, rows=6),
}


@dataclass(frozen=True)
class Size:
    name: str
    seeds: int
    k: int  # committee members
    student: tuple  # (architecture, features, interactions)
    epochs: int  # first training of each member
    batch_size: int
    cold: int  # cold structures (split 0.7/0.15/0.15)
    test: int  # hot test frames (teacher MD)
    test_interval: int  # teacher MD steps between test frames
    md_steps: int  # steps of each correlation run and of each refine/random round's MD
    report_interval: int
    rounds: int
    frames_per_round: int
    round_epochs: int


FULL = Size("full", seeds=2, k=3, student=("painn", 16, 1), epochs=80, batch_size=2, cold=14, test=16,
            test_interval=20, md_steps=500, report_interval=10, rounds=2, frames_per_round=8, round_epochs=25)
QUICK = Size("quick", seeds=1, k=2, student=("painn", 8, 1), epochs=6, batch_size=2, cold=6, test=3,
             test_interval=5, md_steps=40, report_interval=5, rounds=1, frames_per_round=2, round_epochs=2)


def build_data(system: str, size: Size, teacher, folder: Path) -> dict:
    """Cold labelled set (train/val/test) and the hot test set (teacher MD), in ``folder``."""
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, split, starting_structure, teacher_md

    spec = SYSTEMS[system]
    start = starting_structure(spec["start"])
    t0 = clock()
    if spec["cold"] == "md":
        cold = teacher_md(start, teacher.as_calculator(), size.cold, spec["cold_T"], interval=20, equilibration=100,
                          seed=0, progress=False)
    else:
        cold = rattled(start, size.cold, spec["cold_stdev"], seed=0)
    cold = split(cold, (0.7, 0.15, 0.15), seed=0)
    label_structures(cold, teacher, folder / "cold.h5", rows=spec["rows"], seed=0, progress=False)
    t1 = clock()
    hot = teacher_md(start, teacher.as_calculator(), size.test, spec["hot_T"], interval=size.test_interval,
                     equilibration=100 if size is FULL else 20, seed=1, progress=False)
    for a in hot:
        a.info["split"] = "test"
    label_structures(hot, teacher, folder / "hot_test.h5", rows=1, seed=0, progress=False)
    t2 = clock()
    counts = {s: sum(a.info["split"] == s for a in cold) for s in ("train", "val", "test")}
    return {"start": start, "cold": folder / "cold.h5", "hot_test": folder / "hot_test.h5",
            "summary": {"cold_structures": counts, "hot_test_frames": len(hot), "atoms": len(start),
                        "cpu_seconds": {"cold_data": t1 - t0, "hot_test": t2 - t1}}}


def distill_config(system: str, size: Size, seed: int):
    from hessdistill.distill import DistillConfig

    arch, features, layers = size.student
    # a fixed number of epochs (cosine), as the package's committee test: the plateau rule's default patience is
    # ~1000 steps, longer than these small sets need
    return DistillConfig(architecture=arch, features=features, num_interactions=layers,
                         cutoff=SYSTEMS[system]["cutoff"], batch_size=size.batch_size, epochs=size.epochs,
                         patience=size.epochs + 1, lr_schedule="cosine", seed=seed, device="cpu", compile="off")


def correlations(x, y) -> dict:
    from scipy.stats import spearmanr

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "n": int(len(x))}
    return {"pearson": float(np.corrcoef(x, y)[0, 1]), "spearman": float(spearmanr(x, y).statistic),
            "n": int(len(x))}


def deviation_runs(system: str, size: Size, students: list, start, teacher, folder: Path, seed: int) -> dict:
    """Committee MD at the cold and the hot temperature with a teacher spot check at every report."""
    from hessdistill.engines import MDOptions, run_md
    from hessdistill.monitor import read_deviation_csv

    spec = SYSTEMS[system]
    frames, stopped = {}, {}
    for name in ("cold", "hot"):
        options = MDOptions(steps=size.md_steps, report_interval=size.report_interval,
                            temperature_K=spec[f"{name}_T"], ensemble="nvt", seed=1000 + seed,
                            committee=tuple(students[1:]), committee_drive="first", spot_check_teacher=teacher,
                            **NO_ENERGY_STOP)
        result = run_md("ase", students[0], start, folder / f"md_{name}", options)
        d = read_deviation_csv(result.files["deviation_csv"])
        later = d["step"] > 0  # step 0 is the starting structure (Si: the perfect lattice, forces 0 by symmetry)
        frames[name] = {"step": d["step"][later], "max_devi_f": d["max_devi_f"][later],
                        "true_max_error": d["teacher_force_max_error"][later],
                        "true_mae": d["teacher_force_mae"][later]}
        stopped[name] = result.stopped
    out = {"frames": frames}
    pooled = {k: np.concatenate([frames["cold"][k], frames["hot"][k]]) for k in frames["hot"]}
    for where, f in (("hot", frames["hot"]), ("pooled", pooled)):
        out[where] = {"vs_max_error": correlations(f["max_devi_f"], f["true_max_error"]),
                      "vs_mae": correlations(f["max_devi_f"], f["true_mae"])}
    for name in ("cold", "hot"):
        out[f"stopped_{name}"] = stopped[name]
        out[f"mean_max_devi_f_{name}"] = float(np.mean(frames[name]["max_devi_f"]))
        out[f"mean_true_max_error_{name}"] = float(np.mean(frames[name]["true_max_error"]))
    return out


def refine_arm(system, size, data, teacher, committee_dir, folder, seed, threshold) -> list[dict]:
    from hessdistill.engines import MDOptions
    from hessdistill.workflows.refine import RefineSettings, refine

    spec = SYSTEMS[system]
    settings = RefineSettings(
        teacher=teacher, threshold=threshold, upper=UPPER_FACTOR * threshold, steps=size.md_steps,
        rounds=size.rounds, frames_per_round=size.frames_per_round, rows=spec["rows"], epochs=size.round_epochs,
        md=MDOptions(temperature_K=spec["hot_T"], ensemble="nvt", report_interval=size.report_interval,
                     committee_drive="first", seed=2000 + 100 * seed, **NO_ENERGY_STOP),
        seed=seed)
    rows = refine(data["cold"], folder, committee_dir, data["start"], settings, test=data["hot_test"],
                  progress=False)
    return [{"round": r["round"], "teacher_calls": r["teacher_calls"], "n_labelled": r["n_labelled"],
             "n_flagged": r["n_flagged"], "n_reports": r["n_reports"], "mean_max_devi_f": r["mean_max_devi_f"],
             "test_force_mae": r["test_force_mae"], "test_force_mae_mean": r["test_force_mae_mean"]} for r in rows]


def mirror_arm(system, size, data, teacher, students, folder, seed, frames_per_round, random_frames: bool):
    """The rounds of ``refine`` with ``frames_per_round[r]`` frames drawn uniformly from plain MD of the arm's
    own member 0 (``random_frames``), or with no new frames (the same epochs on the cold set)."""
    from ase.io import read

    from hessdistill.engines import MDOptions, run_md
    from hessdistill.label import label_structures, load_labels, write_store
    from hessdistill.workflows.refine import continue_training, held_out_force_mae

    spec = SYSTEMS[system]
    test_items = load_labels(data["hot_test"])
    rng = np.random.default_rng(seed)
    runs = [Path(s).parent for s in students]
    current, calls = Path(data["cold"]), 0
    first, mean = held_out_force_mae(students, test_items)
    rows = [{"round": 0, "teacher_calls": 0, "test_force_mae": first, "test_force_mae_mean": mean}]
    for r, n in enumerate(frames_per_round):
        round_dir = folder / f"round{r}"
        if random_frames:
            options = MDOptions(steps=size.md_steps, report_interval=size.report_interval,
                                temperature_K=spec["hot_T"], ensemble="nvt", seed=2000 + 100 * seed + r,
                                **NO_ENERGY_STOP)
            result = run_md("ase", students[0], data["start"], round_dir / "md", options)
            traj = read(result.files["trajectory"], index=":")[1:]  # not the starting structure
            picked = [traj[i] for i in sorted(rng.choice(len(traj), size=min(n, len(traj)), replace=False))]
            for f in picked:
                f.info["split"] = "train"
            new = round_dir / "new_labels.h5"
            label_structures(picked, teacher, new, rows=spec["rows"], seed=seed + r, progress=False)
            calls += len(picked)
            grown = round_dir / "labels.h5"
            write_store(load_labels(current) + load_labels(new), grown, teacher_name=teacher.name)
            current = grown
        students = [continue_training(current, round_dir / f"member{k}", runs[k], size.round_epochs)
                    for k in range(len(students))]
        runs = [round_dir / f"member{k}" for k in range(len(students))]
        first, mean = held_out_force_mae(students, test_items)
        rows.append({"round": r + 1, "teacher_calls": calls, "test_force_mae": first, "test_force_mae_mean": mean})
    return rows


def one_seed(system: str, size: Size, data: dict, teacher, folder: Path, seed: int) -> dict:
    from hessdistill.distill import distill_committee

    seconds = {}
    t = clock()
    committee = distill_committee(distill_config(system, size, 10 * seed), data["cold"], folder / "committee",
                                  size.k, resume=False, progress=False)
    students = committee["students"]
    seconds["committee"] = clock() - t
    t = clock()
    dev = deviation_runs(system, size, students, data["start"], teacher, folder, seed)
    seconds["deviation_md"] = clock() - t
    threshold = float(np.quantile(dev["frames"]["hot"]["max_devi_f"], THRESHOLD_QUANTILE))
    t = clock()
    refine_rows = refine_arm(system, size, data, teacher, folder / "committee", folder / "refine", seed, threshold)
    seconds["refine"] = clock() - t
    per_round = [r["n_labelled"] for r in refine_rows if r["n_labelled"] > 0]
    arms = {"refine": refine_rows}
    for name, random_frames in (("random", True), ("no_new_frames", False)):
        t = clock()
        arms[name] = mirror_arm(system, size, data, teacher, students, folder / name, seed, per_round, random_frames)
        seconds[name] = clock() - t
    out = {"seed": seed, "member_seeds": [m["seed"] for m in committee["members"]],
           "cold_test_force_mae": [m["test"]["force_mae"] for m in committee["members"]],
           "threshold": threshold, "upper": UPPER_FACTOR * threshold, "frames_per_round": per_round,
           "deviation": dev, "arms": arms, "cpu_seconds": seconds}
    for name, rows in arms.items():
        out[f"{name}_final"] = {k: rows[-1][k] for k in ("teacher_calls", "test_force_mae", "test_force_mae_mean")}
    return out


def spread(values) -> dict:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()), "n": int(len(v))}


def summarize(seeds: list[dict]) -> dict:
    s = {}
    for where in ("hot", "pooled"):
        for target in ("vs_max_error", "vs_mae"):
            for kind in ("pearson", "spearman"):
                s[f"{where}_{target}_{kind}"] = spread([r["deviation"][where][target][kind] for r in seeds])
    start = [r["arms"]["refine"][0]["test_force_mae"] for r in seeds]
    s["start_test_force_mae"] = spread(start)
    s["start_test_force_mae_mean"] = spread([r["arms"]["refine"][0]["test_force_mae_mean"] for r in seeds])
    for arm in ("refine", "random", "no_new_frames"):
        fin = [r[f"{arm}_final"] for r in seeds]
        s[f"{arm}_teacher_calls"] = spread([f["teacher_calls"] for f in fin])
        for key in ("test_force_mae", "test_force_mae_mean"):
            s[f"{arm}_{key}"] = spread([f[key] for f in fin])
        # error removed per teacher call (eV/A per labelled frame), first member
        drops = [(r["arms"][arm][0]["test_force_mae"] - r[f"{arm}_final"]["test_force_mae"])
                 / r[f"{arm}_final"]["teacher_calls"] for r in seeds if r[f"{arm}_final"]["teacher_calls"]]
        s[f"{arm}_mae_drop_per_call"] = spread(drops)
    s["refine_minus_random_test_force_mae"] = spread([r["refine_final"]["test_force_mae"]
                                                      - r["random_final"]["test_force_mae"] for r in seeds])
    s["refine_minus_random_test_force_mae_mean"] = spread([r["refine_final"]["test_force_mae_mean"]
                                                           - r["random_final"]["test_force_mae_mean"] for r in seeds])
    return s


def plot(results: dict, path: Path) -> Path:
    from matplotlib.ticker import NullFormatter

    systems = [s for s, r in results["systems"].items() if isinstance(r, dict) and "seeds" in r]
    fig, axes = plots.subplots(2, max(1, len(systems)), figsize=(5.5 * max(1, len(systems)), 8.5), squeeze=False)
    colors = {"refine": "C3", "random": "C0", "no_new_frames": "0.5"}
    for j, system in enumerate(systems):
        r = results["systems"][system]
        ax = axes[0, j]
        for name, marker, color in (("cold", "o", "C0"), ("hot", "^", "C3")):
            x = np.concatenate([np.asarray(sd["deviation"]["frames"][name]["max_devi_f"], float) for sd in r["seeds"]])
            y = np.concatenate([np.asarray(sd["deviation"]["frames"][name]["true_max_error"], float)
                                for sd in r["seeds"]])
            ax.scatter(x, y, s=8, marker=marker, color=color, alpha=0.5,
                       label=f"{name} MD ({SYSTEMS[system][name + '_T']:.0f} K)")
        s = r["summary"]
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("committee max_devi_f (eV/A)")
        ax.set_ylabel("driving student: largest per-atom force error (eV/A)")
        ax.set_title(f"{system} ({r['teacher']}): hot Pearson {s['hot_vs_max_error_pearson']['mean']:.2f}, "
                     f"Spearman {s['hot_vs_max_error_spearman']['mean']:.2f}", fontsize=9)
        ax.legend(fontsize=8)
        ax = axes[1, j]
        for arm, color in colors.items():
            for k, sd in enumerate(r["seeds"]):
                rows = sd["arms"][arm]
                x = [row["teacher_calls"] for row in rows]
                if arm == "no_new_frames":  # no calls: drawn at the calls the other arms had made by that round
                    x = [row["teacher_calls"] for row in sd["arms"]["random"]]
                ax.plot(x, [1e3 * row["test_force_mae"] for row in rows], "o-" if arm != "no_new_frames" else "s:",
                        color=color, alpha=0.8, label=arm.replace("_", " ") if k == 0 else None, ms=4)
        ax.set_xlabel("teacher calls (labelled frames)")
        ax.set_ylabel("hot test force MAE, member 0 (meV/A)")
        ax.set_title(f"{system}: refine vs random frames ({len(r['seeds'])} seeds)", fontsize=9)
        ax.legend(fontsize=8, title="no new frames: x = the others' calls", title_fontsize=7)
    return plots.save(fig, path)


def run_system(system: str, size: Size, workdir: Path, seeds: int) -> dict:
    """Data, then every seed of one system (in a worker process with ``--jobs 2``)."""
    import torch

    from hessdistill.heap import keep_freed_memory
    from hessdistill.teachers import load_teacher

    keep_freed_memory()  # a worker process: the parent's setting does not carry over
    torch.set_num_threads(1)
    c0 = clock()

    folder = workdir / system
    folder.mkdir(parents=True, exist_ok=True)
    teacher = load_teacher(SYSTEMS[system]["teacher"])
    data = build_data(system, size, teacher, folder)
    out = {"teacher": teacher.name, "settings": SYSTEMS[system], "data": data["summary"], "seeds": []}
    for seed in range(seeds):
        out["seeds"].append(one_seed(system, size, data, teacher, folder / f"seed{seed}", seed))
    out["summary"] = summarize(out["seeds"])
    out["cpu_seconds"] = clock() - c0
    return jsonable(out)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the benchmark runs (~1-2 min)")
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--seeds", type=int, default=None, help="seeds per system (default: the size's)")
    p.add_argument("--out", default=None, help="folder for trust.json and trust.png")
    p.add_argument("--workdir", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--jobs", type=int, default=2, help="systems run side by side in worker processes (1: in this process)")
    a = p.parse_args(argv)
    import trust  # this module by name, so that the spawned workers can find run_system

    size = QUICK if a.quick else FULL
    seeds = a.seeds or size.seeds
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(a.out) if a.out else (Path(tmp) / "out" if a.quick else RESULTS)
        out.mkdir(parents=True, exist_ok=True)
        workdir = Path(a.workdir) if a.workdir else Path(tmp)
        results = {**common.study_record("trust.py", argv), "torch_threads": 1,
                   "size": dataclasses.asdict(size), "seeds": seeds, "threshold_quantile": THRESHOLD_QUANTILE,
                   "upper_factor": UPPER_FACTOR, "systems": {}}
        t0 = time.perf_counter()
        done = common.in_workers(trust.run_system, [(system, size, workdir, seeds) for system in a.systems],
                                 min(a.jobs, len(a.systems)), "systems")
        results["systems"] = dict(zip(a.systems, done))
        results["wall_seconds"] = time.perf_counter() - t0
        # CPU seconds of the worker processes (each system's own clock)
        results["cpu_seconds"] = sum(r.get("cpu_seconds", 0.0) for r in results["systems"].values())
        results["plot"] = plot(results, out / "trust.png").name
        (out / "trust.json").write_text(json.dumps(jsonable(results), indent=1))
        print(f"wrote {out / 'trust.json'} and {out / 'trust.png'} ({results['wall_seconds']:.0f} s wall, "
              f"{results['cpu_seconds']:.0f} s CPU)")
    return results


if __name__ == "__main__":
    main()
