"""Shared pieces of the benchmark harness: size presets, machine and version info, error capture, JSON
conversion and running a function in a fresh subprocess. Timing is ``timing.py``'s job."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


@dataclass(frozen=True)
class Size:
    """How big each part of the benchmark is. ``DEFAULT`` is the reported run, ``QUICK`` only proves the
    harness works (tiny data, few epochs, tiny students)."""

    name: str
    # data: (train, val, test) structures
    ethanol_counts: tuple  # teacher-MD snapshots (ANI-1x, 600 K), full Hessians
    ethanol_interval: int  # MD steps between snapshots
    si_counts: tuple  # rattled Si8 cells (SevenNet-0)
    si_rows: int  # Hessian rows labelled per Si8 structure
    si_transfer: int  # rattled Si64 cells for a transfer check (energy + forces only)
    # students: (architecture, features, interactions); the first is the "main" size used for seeds,
    # conservation and the s curve
    students: tuple = ()
    seeds: int = 3
    epochs: int = 40
    batch_size: int = 2
    lr: float = 3e-3
    s_values: tuple = (4, "full")  # extra Hessian row counts for the accuracy-vs-s curve (s = 1 comes from seeds)
    # timing
    rounds: int = 3  # interleaved rounds per MD speed timing
    student_md_steps: int = 40  # ASE steps per round and student
    teacher_md_steps: dict = field(default_factory=dict)  # ASE steps per round of each teacher
    engine_steps: int = 100  # OpenMM / LAMMPS steps (N and 2N, the difference is timed)
    epoch_rounds: int = 3  # interleaved epochs per configuration (training cost)
    label_rounds: int = 3  # interleaved Hessian calls per mode (labelling cost)
    # conservation (NVE, 0.5 fs, 300 K)
    nve_seeds: int = 5
    nve_student_steps: int = 2000
    nve_teacher_steps: int = 600


# 8 training structures, 150 epochs of batch 1: with fewer optimizer steps (the first setting, 60 epochs of batch 2)
# both arms were undertrained and the distilled/undistilled force ratio was near 1; with more steps the undistilled
# student plateaus while the distilled one keeps improving (development runs, 2026-11-25).
DEFAULT = Size(
    name="default", ethanol_counts=(8, 6, 40), ethanol_interval=10, si_counts=(8, 4, 12), si_rows=24, si_transfer=3,
    students=(("painn", 32, 2), ("painn", 16, 1), ("schnet", 32, 2), ("schnet", 16, 1)),
    seeds=3, epochs=150, batch_size=1, rounds=3, student_md_steps=40, teacher_md_steps={"ani1x": 20, "sevennet0": 2},
    engine_steps=200, epoch_rounds=7, label_rounds=3, nve_seeds=5, nve_student_steps=1000, nve_teacher_steps=400,
)
QUICK = Size(
    name="quick", ethanol_counts=(6, 2, 4), ethanol_interval=3, si_counts=(3, 1, 2), si_rows=1, si_transfer=1,
    students=(("painn", 8, 1), ("schnet", 8, 1)), seeds=2, epochs=2, s_values=(2,),
    rounds=2, student_md_steps=5, teacher_md_steps={"ani1x": 3, "sevennet0": 1}, engine_steps=100,
    epoch_rounds=2, label_rounds=1, nve_seeds=2, nve_student_steps=60, nve_teacher_steps=40,
)


def default_student(type_names, atomic_numbers, seed: int = 0, **overrides):
    """The student ``hessdistill distill`` trains by default (``DistillConfig()``'s architecture, cutoff, width,
    layers and basis; ``overrides`` change any of them), with seeded random weights: speed does not depend on
    them."""
    import torch

    from hessdistill.distill import DistillConfig
    from hessdistill.students import build_student

    d = DistillConfig()
    hyper = dict(architecture=d.architecture, cutoff=d.cutoff, features=d.features,
                 num_interactions=d.num_interactions, num_basis=d.num_basis)
    hyper.update(overrides)
    torch.manual_seed(seed)
    return build_student(hyper.pop("architecture"), type_names=list(type_names), atomic_numbers=list(atomic_numbers),
                         **hyper)


def bare_student(model_path, frames: list):
    """Forces of an exported student alone (TorchScript: forward + backward; .pt2: the package's call on its pair
    records), on neighbour lists made beforehand, one of ``frames`` (Atoms) per call in turn (in MD the edge count
    changes from step to step); also the first frame's edge count."""
    import torch

    from hessdistill.formats import file_format, load_student
    from hessdistill.formats.evaluate import pair_records
    from hessdistill.neighbors import neighbor_list

    compiled = file_format(model_path) == "pt2"
    sf = load_student(model_path, device="cpu")
    species = sf.species(frames[0].get_chemical_symbols())
    inputs = []
    for atoms in frames:
        ei, sh = neighbor_list(atoms, sf.cutoff)
        ei, sh = torch.as_tensor(ei), torch.as_tensor(sh, dtype=sf.dtype)
        if compiled:  # each pair once, as the OpenMM force keeps them
            kept = pair_records(ei, sh)
            ei, sh = ei.index_select(1, kept), sh.index_select(0, kept)
        inputs.append((torch.tensor(atoms.positions, dtype=sf.dtype), ei, sh))
    turn = [0]

    def call():
        x, ei, sh = inputs[turn[0] % len(inputs)]
        turn[0] += 1
        if compiled:
            return sf.energy_forces(x, species, ei, sh)[1]
        x = x.clone().requires_grad_(True)
        return torch.autograd.grad(sf.module(x, species, ei, sh).sum(), x)[0]

    return call, int(inputs[0][1].shape[1])


def size_label(arch: str, features: int, layers: int) -> str:
    return f"{arch}-{features}x{layers}"


def machine() -> dict:
    """CPU model and counts (lscpu), the cores this process may use, memory, OS."""
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        for key, name in (("Model name", "cpu_model"), ("CPU(s)", "cpus"), ("Thread(s) per core", "threads_per_core"),
                          ("Core(s) per socket", "cores_per_socket"), ("Hypervisor vendor", "hypervisor")):
            if key in fields:
                info[name] = fields[key].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        import psutil

        info["memory_GB"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except ImportError:
        pass
    return info


def versions() -> dict:
    """Versions of the packages the numbers depend on (None when not installed)."""
    from importlib import metadata

    out = {}
    for dist in ("hessdistill", "torch", "numpy", "ase", "torchani", "sevenn", "openmm", "openmmtorch", "lammps",
                 "mdtraj", "vesin"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                           text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        out["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def guarded(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``, or {"error": "<Type>: message"} if it raises (the traceback goes to stderr)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # a broken part must not take the other figures down
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}


def in_workers(fn: Callable, calls: list, jobs: int, desc: str = "runs") -> list:
    """``fn(*args)`` for every ``args`` of ``calls`` in ``jobs`` spawned worker processes (no fork after torch's
    threads exist; one job: in this process), results in the order of ``calls``. A call that raises, or whose
    worker dies, gives {"error": "<Type>: message"}; the others go on."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from hessdistill.progress import progress_bar

    results: list = [None] * len(calls)
    with progress_bar(len(calls), desc, unit="run") as bar:
        if jobs <= 1:
            for k, args in enumerate(calls):
                results[k] = guarded(fn, *args)
                bar.update(1)
            return results
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(guarded, fn, *args): k for k, args in enumerate(calls)}
            for fut in as_completed(futures):
                results[futures[fut]] = guarded(fut.result)
                bar.update(1)
    return results


def jsonable(obj):
    """Numpy scalars/arrays, Paths and tuples to plain JSON types; NaN/inf to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        return x if np.isfinite(x) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def median(xs) -> float:
    xs = [x for x in xs if x is not None and np.isfinite(x)]
    return float(statistics.median(xs)) if xs else float("nan")


def ratio(a: float, b: float) -> float:
    return float(a / b) if b and np.isfinite(a) and np.isfinite(b) else float("nan")


def child_env(**extra) -> dict:
    """Environment for child processes: one OpenMP/MKL thread, this tree's library and the benchmarks folder
    importable, ``extra`` variables on top."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "python"), str(BENCH_DIR), env.get("PYTHONPATH", ""))
                                        if p)
    return env


def run_logged(cmd: list, log: Path, env: dict | None = None, cwd=None) -> dict:
    """Run ``cmd`` with its output appended to ``log``; its wall and CPU seconds (user + system of the process and
    its children, from wait4). A failure raises RuntimeError with the log's tail."""
    t0 = time.perf_counter()
    with open(log, "a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env or child_env(), stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = "\n".join(Path(log).read_text().splitlines()[-20:])
        raise RuntimeError(f"{' '.join(map(str, cmd[:4]))} exited with {code} (log {log}):\n{tail}")
    return {"wall": time.perf_counter() - t0, "cpu": usage.ru_utime + usage.ru_stime}


def hessdistill_cli(*args, log: Path) -> dict:
    """``hessdistill ARGS`` run as a user would (this tree's library, one thread), logged; its wall and CPU s."""
    return run_logged([sys.executable, "-m", "hessdistill", *args], log)


def study_record(script: str, argv) -> dict:
    """What every study's JSON starts with: date, the command, machine and versions."""
    return {"date": now(), "command": f"python benchmarks/studies/{script} " + " ".join(argv or sys.argv[1:]),
            "machine": machine(), "versions": versions()}


def call_in_subprocess(module: str, function: str, kwargs: dict, timeout: float, log_path: Path | None = None) -> dict:
    """``module.function(**kwargs)`` in a fresh Python process; its return value comes back through a JSON file.

    A crash (segfault, abort), a timeout or an exception becomes {"error": ...}, with the tail of its output.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        code = (
            "import json, sys, torch; torch.set_num_threads(1)\n"
            f"import {module} as m\n"
            f"r = m.{function}(**json.loads(sys.argv[1]))\n"
            "json.dump(r, open(sys.argv[2], 'w'), default=str)\n"
        )
        try:
            proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs), str(result_file)],
                                  capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return {"error": f"timed out after {timeout:.0f} s", "output_tail": _tail(exc.stdout, exc.stderr)}
        if log_path is not None:
            Path(log_path).write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
        if proc.returncode != 0 or not result_file.exists():
            return {"error": f"{module}.{function} exited with code {proc.returncode}",
                    "output_tail": _tail(proc.stdout, proc.stderr)}
        return json.loads(result_file.read_text())


def _tail(*texts, lines: int = 15) -> str:
    out = []
    for t in texts:
        if t:
            out += (t.decode(errors="replace") if isinstance(t, bytes) else t).splitlines()
    return "\n".join(out[-lines:])


def frames_force_mae(student_path, frames) -> float:
    """Force MAE (eV/A) of an exported student on labelled frames ``{"atoms": Atoms, "forces": (N, 3)}``, through
    its ASE calculator (the transfer checks of accuracy.py and lammps_bench.py --mode scaling)."""
    from hessdistill.engines.ase import StudentCalculator

    calc = StudentCalculator(student_path, device="cpu")
    errs = []
    for f in frames:
        a = f["atoms"].copy()
        a.calc = calc
        errs.append(np.abs(a.get_forces() - f["forces"]).ravel())
    return float(np.concatenate(errs).mean())
