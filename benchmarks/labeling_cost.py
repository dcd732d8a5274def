"""Figure 4 (labelling cost): full teacher Hessians, batched VJPs against a row loop; throughput by
``timing.interleaved``, peak RSS rise of one Hessian in a fresh subprocess.
"""

from __future__ import annotations

import resource
import threading
import time

from common import call_in_subprocess, ratio
from timing import interleaved


MODES = ("batched", "loop")


def cases(quick: bool) -> dict:
    """name: (teacher, structure spec). --quick labels the 2-atom primitive Si cell instead of the 8-atom cube."""
    return {"ani1x/ethanol": ("ani1x", "CH3CH2OH"),
            "sevennet0/Si2" if quick else "sevennet0/Si8": ("sevennet0", "Si2" if quick else "bulk:Si")}


def _structure(spec: str):
    from ase.build import bulk

    from hessdistill.sample import starting_structure

    atoms = bulk("Si") if spec == "Si2" else starting_structure(spec)
    atoms.rattle(0.05, seed=3)
    return atoms


def memory_child(teacher: str, structure: str, mode: str) -> dict:
    """Run in a fresh process: peak-RSS rise (MB) of one full Hessian over the energy+forces baseline."""
    from hessdistill.teachers import load_teacher

    import psutil

    t = load_teacher(teacher, hessian_mode=mode)
    atoms = _structure(structure)
    t.energy_forces(atoms)
    proc = psutil.Process()
    rss_before = proc.memory_info().rss / 2**20
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux
    peak = [rss_before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    h = t.hessian(atoms)
    done.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss / 2**20)
    maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {"rss_before_MB": rss_before, "rss_peak_MB": peak[0], "hessian_peak_rise_MB": peak[0] - rss_before,
            "maxrss_rise_MB": maxrss_after - maxrss_before, "rows": int(h.shape[0])}


def start_memory_probes(size, jobs: int = 1):
    """Start the memory subprocesses in the background (``jobs`` at a time); they measure no time, so they may
    overlap the training runs. Returns the handle ``measure`` collects them from."""
    from concurrent.futures import ThreadPoolExecutor

    todo = cases(size.name == "quick")
    pool = ThreadPoolExecutor(max(1, jobs))
    futures = {(case, mode): pool.submit(call_in_subprocess, "labeling_cost", "memory_child",
                                         {"teacher": teacher, "structure": spec, "mode": mode}, 900)
               for case, (teacher, spec) in todo.items() for mode in MODES}
    pool.shutdown(wait=False)
    return futures


def measure(size, teachers: dict, memory_probes=None) -> dict:
    """``teachers``: loaded teachers by name (shared with the rest of the run); ``memory_probes`` from
    ``start_memory_probes`` (started here, after the timings, if not given)."""
    out = {"memory_method": "peak psutil RSS (sampled every 2 ms) during one full Hessian minus the RSS before it, "
                            "fresh subprocess per measurement", "rounds": size.label_rounds, "cases": {}}
    todo = cases(size.name == "quick")
    for case, (name, spec) in todo.items():
        teacher = teachers[name]
        atoms = _structure(spec)
        saved = teacher.hessian_mode

        def call(mode) -> None:
            teacher.hessian_mode = mode
            teacher.hessian(atoms)

        try:
            t = interleaved({m: (lambda m=m: call(m)) for m in MODES}, size.label_rounds, desc=f"hessian [{case}]")
        finally:
            teacher.hessian_mode = saved
        rows = 3 * len(atoms)
        entry = {"atoms": len(atoms), "rows": rows, "chunk_size": teacher.chunk_size, "timing": t.summary(),
                 **{m: {"seconds_per_hessian": t.median(m), "rows_per_s": rows / t.median(m)} for m in MODES},
                 "speedup_batched_over_loop": t.ratio("loop", "batched")}
        out["cases"][case] = entry
    probes = memory_probes if memory_probes is not None else start_memory_probes(size)
    for (case, mode), fut in probes.items():
        try:
            mem = fut.result()
        except Exception as exc:
            mem = {"error": f"{type(exc).__name__}: {exc}"}
        out["cases"][case].setdefault("memory", {})[mode] = mem
    for entry in out["cases"].values():
        b, lp = entry["memory"]["batched"], entry["memory"]["loop"]
        if "error" not in b and "error" not in lp:
            entry["memory_ratio_batched_over_loop"] = ratio(b["hessian_peak_rise_MB"], lp["hessian_peak_rise_MB"])
    return out
