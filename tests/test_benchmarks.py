"""The benchmark harness at its --quick size: it runs end to end, writes every field of results.json and every
PNG, renders the report from that JSON, and leaves BENCHMARKS.md and the README alone. Only the harness is checked
here, never a timing or an accuracy figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "benchmarks" / "studies"))
TOP_LEVEL = ("machine", "versions", "command", "date", "quick", "size", "data", "speed", "accuracy", "training_cost",
             "labeling_cost", "conservation", "engines", "targets", "plots", "total_seconds")
PLOTS = ("pareto", "accuracy", "s_curve", "conservation", "speed_labeling")


def _no_error(part, where):
    assert isinstance(part, dict), f"{where}: {part!r}"
    assert "error" not in part, f"{where}: {part['error']}"


def _ratio(r, where):
    """A timing ratio: median of the per-round ratios, with their min and max."""
    assert isinstance(r, dict) and 0 < r["min"] <= r["median"] <= r["max"], f"{where}: {r!r}"


def _timing(t, names, where):
    assert t["clock"] == "process_time", where
    for name in names:
        assert len(t["seconds"][name]) == t["rounds"] >= 1 and min(t["seconds"][name]) > 0, f"{where}: {name}"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    docs = [REPO / "BENCHMARKS.md", REPO / "README.md"]
    before = [d.read_bytes() for d in docs]
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), before == [d.read_bytes() for d in docs]


def test_timing_takes_ratios_within_rounds():
    """Self-measured times make the rounds exact: the ratio is the median of per-round ratios (4 here), not the
    ratio of the medians (8/3), with the per-round min and max; units divide the per-call time."""
    from timing import Seconds, interleaved

    a, b = iter([9.0, 2.0, 4.0, 9.0]), iter([9.0, 1.0, 4.0, 3.0])  # the first value of each is the warm-up call
    t = interleaved({"a": lambda: Seconds(next(a)), "b": lambda: Seconds(next(b))}, rounds=3, units={"b": 2})
    assert t.seconds == {"a": [2.0, 4.0, 9.0], "b": [0.5, 2.0, 1.5]}
    assert t.ratio("a", "b") == {"median": 4.0, "min": 2.0, "max": 6.0}
    assert t.median("a") == 4.0 and t.fastest(["a", "b"]) == "b"
    assert t.summary()["rounds"] == 3


def test_timing_clock_is_cpu_time():
    """Without Seconds the clock is this process's CPU time: sleeping costs nothing, work costs time."""
    import time

    from timing import interleaved

    def work():
        x = 0
        for i in range(200_000):
            x += i

    t = interleaved({"sleep": lambda: time.sleep(0.05), "work": work}, rounds=2, warmup=0)
    assert max(t.seconds["sleep"]) < 0.01 and t.ratio("work", "sleep")["min"] > 1


@pytest.mark.slow
def test_quick_run_writes_every_field(quick_results):
    out, res, _ = quick_results
    for key in TOP_LEVEL:
        assert key in res, key
    assert res["quick"] is True and "--quick" in res["command"]
    assert res["machine"].get("cpu_count") and res["versions"].get("torch")
    for system in ("ethanol", "si"):
        _no_error(res["data"][system], f"data {system}")
        sp = res["speed"][system]
        _no_error(sp, f"speed {system}")
        assert sp["teacher"]["ms_per_step"] > 0 and sp["main_speedup"] > 0
        assert {"painn", "schnet"} <= {label.split("-")[0] for label in sp["students"]}
        for label, e in sp["students"].items():
            _ratio(e["speedup"], f"speed {system} {label}")
        _no_error(sp["engine"], f"speed {system} engine")
        _ratio(sp["engine"]["speedup"], f"speed {system} {sp['engine']['name']}")
        _no_error(sp["main_pt2"], f"speed {system} .pt2")  # the compiled format beside TorchScript, in ASE
        _ratio(sp["main_pt2"]["over_torchscript"], f"speed {system} .pt2 over TorchScript")
        if sp["engine"]["name"] == "lammps":  # OpenMM runs a .pt2 only from 8.5 on (the newer stack)
            _ratio(sp["engine"]["pt2"]["over_torchscript"], f"speed {system} lammps .pt2 over TorchScript")
        _timing(sp["timing"], ["teacher:hessdistill", f"student:{sp['main_size']}:{sp['engine']['name']}"],
                f"speed {system}")
        acc = res["accuracy"][system]
        _no_error(acc, f"accuracy {system}")
        assert acc["seeds"] >= 2 and acc["force_mae_ratio"] > 0
        main = acc["sizes"][acc["main_size"]]
        for arm in ("distilled", "undistilled"):
            assert {"force_mae", "hessian_mae", "energy_mae_per_atom"} <= set(main[arm])
        tc = res["training_cost"][system]
        _no_error(tc, f"training cost {system}")
        assert tc["s1_ratio"] == tc["ratio_to_EF"]["s=1"]["median"] and "E+F" in tc["seconds_per_epoch"]
        _ratio(tc["ratio_to_EF"]["s=1"], f"training cost {system}")
        _timing(tc["timing"], tc["seconds_per_epoch"], f"training cost {system}")
    assert res["accuracy"]["si"]["transfer"]["force_mae_ratio"] > 0
    curve = res["training_cost"]["s_curve"]["ethanol"]
    assert [r["s"] for r in curve][:2] == [0, 1] and len(curve) >= 3
    lab = res["labeling_cost"]
    _no_error(lab, "labeling cost")
    assert len(lab["cases"]) == 2 and "ani1x/ethanol" in lab["cases"]
    for case, c in lab["cases"].items():
        assert c["batched"]["rows_per_s"] > 0 and c["loop"]["rows_per_s"] > 0
        _ratio(c["speedup_batched_over_loop"], f"labelling {case}")
        for mode in ("batched", "loop"):
            _no_error(c["memory"][mode], f"memory {case} {mode}")
            assert c["memory"][mode]["hessian_peak_rise_MB"] >= 0
    cons = res["conservation"]["ethanol"]
    _no_error(cons, "conservation")
    for model in ("student_float32", "student_float64", "teacher"):
        m = cons["models"][model]
        assert len(m["drift_per_seed"]) == m["seeds"] >= 2 and 0 <= m["unstable_runs"] <= m["seeds"]
    om = res["engines"]["openmm"]
    _no_error(om, "openmm engine")
    _ratio(om["ethanol_54"]["torchforce/Reference"]["ratio"], "openmm")
    _timing(om["ethanol_54"]["timing"], ["bare", "torchforce/Reference"], "openmm")
    assert set(om["ethanol_54"]["engine_only_step_ms"]) == {"Reference", "CPU"}
    lm = res["engines"]["lammps"]
    _no_error(lm, "lammps engine")
    assert lm["sizes"] and lm["flatness"]["us_per_atom_step"] >= 1
    for r in lm["sizes"]:
        _ratio(r["ratio"], f"lammps {r['atoms']}")
        _timing(r["timing"], ["bare", "lammps"], f"lammps {r['atoms']}")
    for name, t in res["targets"].items():
        assert {"value", "target", "met"} <= set(t) and t["met"] is not None, name


@pytest.mark.slow
def test_quick_run_writes_plots_and_keeps_benchmarks_md(quick_results):
    out, res, md_unchanged = quick_results
    for name in PLOTS:
        png = out / f"{name}.png"
        assert res["plots"][name] == str(png)
        assert png.stat().st_size > 5000
    assert md_unchanged, "--quick must not rewrite BENCHMARKS.md or the README"


@pytest.mark.slow
def test_report_renders_the_quick_results(quick_results):
    """BENCHMARKS.md and the README table come from the JSON alone: every part renders, without an error or a
    missing value, and a measured number in the JSON shows up in the text."""
    import report

    _, res, _ = quick_results
    text, table = report.render(res), report.readme_table(res)
    assert "ERROR" not in text and "n/a" not in text and "n/a" not in table
    for heading in ("## Targets", "## 1. Speed", "## 2. Accuracy", "## 3. Training cost", "## 4. Labelling",
                    "## 5. Energy conservation", "## 6. Engine"):
        assert heading in text, heading
    si = res["speed"]["si"]
    assert f"{si['students'][si['main_size']]['speedup']['median']:.1f}x" in table
    assert f"{res['accuracy']['ethanol']['force_mae_ratio']:.2f}" in table


def test_trust_summary_and_report_section():
    """benchmarks/studies/trust.py's spread over seeds and report.py's section 7 from it, on a made-up two-seed result
    (the benchmark itself trains and runs MD: minutes, not a unit test)."""
    import report
    import trust

    def seed(k, corr, refine_end, random_end):
        pair = {"pearson": corr, "spearman": corr + 0.05, "n": 101}
        def arm(end, calls):
            return [{"teacher_calls": 0, "test_force_mae": 0.3, "test_force_mae_mean": 0.29},
                    {"teacher_calls": calls, "test_force_mae": end, "test_force_mae_mean": end}]

        arms = {"refine": arm(refine_end, 16), "random": arm(random_end, 16), "no_new_frames": arm(0.28, 0)}
        return {"seed": k, "deviation": {w: {"vs_max_error": pair, "vs_mae": pair} for w in ("hot", "pooled")},
                "arms": arms, **{f"{a}_final": rows[-1] for a, rows in arms.items()}}

    seeds = [seed(0, 0.6, 0.10, 0.14), seed(1, 0.8, 0.12, 0.12)]
    s = trust.summarize(seeds)
    assert s["hot_vs_max_error_pearson"] == {"mean": 0.7, "min": 0.6, "max": 0.8, "n": 2}
    assert s["refine_mae_drop_per_call"]["max"] == (0.3 - 0.10) / 16
    assert s["no_new_frames_mae_drop_per_call"]["n"] == 0  # no teacher calls, no rate
    assert s["refine_minus_random_test_force_mae"]["min"] == pytest.approx(-0.04)
    tr = {"date": "d", "command": "c", "machine": {}, "versions": {}, "seeds": 2, "threshold_quantile": 0.5,
          "upper_factor": 4.0, "size": {**trust.FULL.__dict__, "student": list(trust.FULL.student)},
          "plot": "trust.png", "systems": {"si": {"teacher": "sevennet0", "settings": trust.SYSTEMS["si"],
                                                  "data": {"atoms": 8, "cold_structures": {"train": 10}},
                                                  "seeds": seeds, "summary": s},
                                           "ethanol": {"error": "StructureError: boom"}}}
    text = "\n".join(report._trust(tr, "benchmarks/studies/results"))
    assert "| largest per-atom force error | 0.70 [0.60, 0.80] | 0.75 [0.65, 0.85] |" in text
    assert "| refine | 16 | 110.0 [100.0, 120.0] |" in text and "ethanol: ERROR StructureError: boom" in text
    assert "no difference between refine and random resolved with 2 seeds" in text  # -40 and 0 meV/A
    assert "![trust](benchmarks/studies/results/trust.png)" in text


def test_report_renders_lammps_scaling():
    """Section 8 comes from results/lammps_scaling.json alone: the work ratios and both students' errors show up,
    and a JSON without the wall-clock part says that it is not measured yet."""
    import report

    ls = json.loads((REPO / "benchmarks" / "results" / "lammps_scaling.json").read_text())
    text = "\n".join(report._lammps_scaling(ls))
    assert "ERROR" not in text and "n/a" not in text
    local = ls["work"]["students"]["painn x1"]["sizes"]["32768"]["8"]
    assert f"{local['ratio']:.3f} ({local['nodes_ratio']:.2f}, {local['edges_ratio']:.2f})" in text
    for st in ls["accuracy"]["students"].values():
        assert f"{1e3 * st['force_mae']:.1f}" in text
    no_wall = {k: v for k, v in ls.items() if k != "wall"}
    assert "not measured yet" in "\n".join(report._lammps_scaling(no_wall))


def test_targets_section_follows_its_runs():
    """Section 10 comes from results/targets.json alone, and its figures follow the runs stored there: each system's
    force error over the default student's seeds at the main set (median and range, recomputed here from the runs'
    own fidelity reports), the capacity rows in the benchmark's arm order, every run started by hand with how it
    ran."""
    import numpy as np

    import report
    import targets

    tg = json.loads((REPO / "benchmarks" / "studies" / "results" / "targets.json").read_text())
    text = "\n".join(report._targets(tg, "benchmarks/studies/results"))
    assert "ERROR" not in text
    for name, s in tg["systems"].items():
        main = [1e3 * r["label_errors"]["force_mae"] for r in s["runs"]
                if r["arm"] == "distilled" and r["train"] == s["data"]["counts"]["train"]]
        assert targets.summarize(name, s["data"], s["runs"])["force_mae_meV"]["median"] == pytest.approx(
            np.median(main))
        assert f"| {name} | {np.median(main):.1f} ({min(main):.1f}-{max(main):.1f}) |" in text
        capacity = s.get("capacity") or {}
        assert list(capacity) == [arm for arm in targets.ARMS if arm in capacity]
        rows = [line.split(" | ")[1] for line in text.splitlines()
                if line.startswith(f"| {name} | ") and line.count("|") == 7]  # the capacity table's 6 columns
        assert rows == [{"distilled": "painn-32x2 (default)"}.get(arm, arm) for arm in capacity]
        for arm, v in capacity.items():  # its error is the run's own
            run = next(r for r in s["runs"] if r["arm"] == arm and r["seed"] == 0
                       and r["train"] == s["data"]["counts"]["train"])
            assert v["force_mae_relative"] == run["label_errors"]["force_mae_relative"]
        for r in s["runs"]:
            if r.get("run_by"):
                assert f"{name} {r['arm']} n = {r['train']} seed {r['seed']}: {r['run_by']}." in text


def test_targets_builds_a_flexible_molecule():
    """The dipeptide of the molecules-that-move systems as placed from its Z-matrix (before any teacher relaxes it):
    22 atoms of H, C, N, O, bond lengths as listed, no clashes, phi and psi as set, and two rotatable bonds by the
    study's count, which also gives the textbook counts of a few g2 molecules."""
    import numpy as np
    from ase.build import molecule

    import targets

    atoms = targets.dipeptide_atoms()
    assert len(atoms) == 22 and atoms.get_chemical_formula() == "C6H12N2O2"
    for k, (_, c, *_rest, bond, _angle, _dihedral) in enumerate(targets.DIPEPTIDE):
        if c is not None:
            assert atoms.get_distance(k, c) == pytest.approx(bond, abs=1e-9)
    d = atoms.get_all_distances()
    np.fill_diagonal(d, np.inf)
    assert d.min() > 0.95
    assert atoms.get_dihedral(1, 2, 3, 4) == pytest.approx(targets.PHI % 360, abs=1e-6)
    assert atoms.get_dihedral(2, 3, 4, 5) == pytest.approx(targets.PSI % 360, abs=1e-6)
    assert targets.rotatable_bonds(atoms) == 2
    for name, count in (("trans-butane", 1), ("CH3CH2OH", 0), ("C6H6", 0), ("CH3CONH2", 0), ("CH3CH2OCH3", 1)):
        assert targets.rotatable_bonds(molecule(name)) == count, name


def test_targets_moving_molecules_tables():
    """The figures of molecules that move, from made-up two-seed runs: summarize takes medians over the seeds (the
    liquid's RDF and density errors as magnitudes), checks judges each system's own limits, and report.py's tables
    show them; a file without them renders no such table."""
    import report
    import targets

    def run(system, seed, force, net, liquid=None):
        r = {"system": system, "arm": "distilled", "train": 9, "seed": seed, "distill_wall_s": 60.0 * (10 + seed),
             "label_errors": {"force_mae": force, "force_mae_relative": force},
             "physics": {"soft_frequency_mae_cm": 8.0 + 8 * seed, "minimum_rmsd": 0.05}}
        if net is not None:  # a single molecule has no net force error
            r["label_errors"].update(net_force_mae_relative=net, net_torque_mae_relative=2 * net)
        if seed == 0:
            r["cost"] = {"pt2": {"us_per_atom": 7.0}, "torchscript": {"us_per_atom": 21.0}}
        return {**r, "liquid": liquid} if liquid else r

    def liquid(height, shift, density):
        return {"rdf": {"ps": 5.0, "max_rdf_difference": 0.1, "pairs": {"O-O": {
            "student_first_peak_height": height, "teacher_first_peak_height": 2.0, "first_peak_shift_A": shift}}},
            "npt": {"ps": 4.0, "barostat_time_ps": 0.25, "teacher": {"density_g_cm3": 0.8}, "student": {"density_g_cm3": density},
                    "density_error_relative": density / 0.8 - 1.0}}

    info = {"atoms": 192, "teacher": "ani1x", "rows": "24", "counts": {"train": 9, "val": 3, "test": 4},
            "sample_wall_s": 300.0, "label_wall_s": 300.0, "sampling": "sample --start methanol.xyz"}
    runs = {"dipeptide": [run("dipeptide", 0, 0.02, None), run("dipeptide", 1, 0.05, None)],
            "methanol": [run("methanol", 0, 0.03, 0.04, liquid(2.1, -0.02, 0.78)),
                         run("methanol", 1, 0.03, 0.08, liquid(1.7, 0.08, 0.86))]}
    systems = {}
    for name, rs in runs.items():
        s = targets.summarize(name, info, rs)
        systems[name] = {**s, "targets": targets.checks(s, name)}
    dip, liq = systems["dipeptide"], systems["methanol"]
    assert dip["force_mae_relative"]["median"] == pytest.approx(0.035)
    assert dip["labels_to_student_minutes"]["median"] == pytest.approx(20.5)  # 10 min labels, 10-11 min distill
    assert dip["targets"] == {"force_mae_relative_le_0.03": False, "soft_frequency_mae_cm_le_10": False,
                              "labels_to_student_minutes_le_60": True}
    assert liq["rdf_peak_height_relative"]["median"] == pytest.approx((0.05 + 0.15) / 2)
    assert liq["rdf_peak_shift_A"]["median"] == pytest.approx(0.05)
    assert liq["density_error_relative"]["median"] == pytest.approx((0.025 + 0.075) / 2)
    assert liq["targets"] == {"net_force_mae_relative_le_0.1": True, "rdf_peak_height_relative_le_0.05": False,
                              "rdf_peak_shift_A_le_0.05": True, "density_error_relative_le_0.02": False,
                              "labels_to_student_minutes_le_60": True}
    tg = {"size": {"train": 9}, "systems": systems, "moving_targets": targets.MOVING_TARGETS, "plot": None}
    text = "\n".join(report._targets(tg, "r"))
    assert "Data efficiency" not in text  # no baseline runs
    assert "| dipeptide | 3.50% (2.00%-5.00%) (<= 3%) | - | - | 12.0 (8.0-16.0) (<= 10) |" in text
    assert "| 7.0 / 21.0 | 2 |" in text
    assert ("| methanol | 0.100 | 10.0% (5.0%-15.0%) (<= 5%) | 0.050 (0.020-0.080) (<= 0.05) | 0.800 / 0.820 "
            "(0.780-0.860) | 5.0% (2.5%-7.5%) (<= 2%) | 2 |") in text
    assert "Molecules that move" not in "\n".join(report._targets({**tg, "moving_targets": {}}, "r"))


def test_committed_benchmarks_md_renders_from_the_committed_json():
    """BENCHMARKS.md is report.md with its slots filled from the committed JSON: rendering it again (no plots)
    gives the committed file byte for byte, and every slot of the template is filled."""
    import report

    results = REPO / "benchmarks" / "results"
    load = lambda path: json.loads(path.read_text()) if path.exists() else None  # noqa: E731
    studies = {n: load(report.STUDIES / f"{n}.json") for n in ("hessian_weight", "trust", "deepmd_compare", "targets")}
    text = report.render(load(results / "results.json"), studies, load(results / "lammps_scaling.json"),
                         op=load(results / "openmm_pt2.json"))
    assert "${" not in text and "Not run yet" not in text
    assert text == (REPO / "BENCHMARKS.md").read_text()
