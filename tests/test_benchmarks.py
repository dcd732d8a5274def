"""The benchmark harness at its --quick size: it runs end to end, writes every field of results.json and every
PNG, and leaves BENCHMARKS.md alone. Only the harness is checked here, never a timing or an accuracy figure."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("machine", "versions", "command", "date", "quick", "size", "data", "speed", "accuracy", "training_cost",
             "labeling_cost", "conservation", "engines", "targets", "plots", "total_seconds")
PLOTS = ("pareto", "accuracy", "s_curve", "conservation", "speed_labeling")


def _no_error(part, where):
    assert isinstance(part, dict), f"{where}: {part!r}"
    assert "error" not in part, f"{where}: {part['error']}"


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    md = REPO / "BENCHMARKS.md"
    before = md.read_bytes() if md.exists() else None
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = md.read_bytes() if md.exists() else None
    return out, json.loads((out / "results.json").read_text()), before == after


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
        _no_error(sp["engine"], f"engine speed {system}")
        assert sp["engine"]["name"] and sp["engine"]["speedup"] > 0
        acc = res["accuracy"][system]
        _no_error(acc, f"accuracy {system}")
        assert acc["seeds"] >= 2 and acc["force_mae_ratio"] > 0
        main = acc["sizes"][acc["main_size"]]
        for arm in ("distilled", "undistilled"):
            assert {"force_mae", "hessian_mae", "energy_mae_per_atom"} <= set(main[arm])
        tc = res["training_cost"][system]
        _no_error(tc, f"training cost {system}")
        assert tc["s1_ratio"] > 0 and "E+F" in tc["seconds_per_epoch"]
    assert res["accuracy"]["si"]["transfer"]["force_mae_ratio"] > 0
    curve = res["training_cost"]["s_curve"]["ethanol"]
    assert [r["s"] for r in curve][:2] == [0, 1] and len(curve) >= 3
    lab = res["labeling_cost"]
    _no_error(lab, "labeling cost")
    assert len(lab["cases"]) == 2 and "ani1x/ethanol" in lab["cases"]
    for case, c in lab["cases"].items():
        assert c["batched"]["rows_per_s"] > 0 and c["loop"]["rows_per_s"] > 0
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
    assert om["ethanol_54"]["torchforce/Reference"]["ratio"] > 0
    assert set(om["ethanol_54"]["engine_only_step_ms"]) == {"Reference", "CPU"}
    lm = res["engines"]["lammps"]
    _no_error(lm, "lammps engine")
    assert lm["sizes"] and all(r["ratio"] > 0 for r in lm["sizes"])
    for name in res["targets"]:
        assert {"value", "target", "met"} <= set(res["targets"][name])


def test_quick_run_writes_plots_and_keeps_benchmarks_md(quick_results):
    out, res, md_unchanged = quick_results
    for name in PLOTS:
        png = out / f"{name}.png"
        assert res["plots"][name] == str(png)
        assert png.stat().st_size > 5000
    assert md_unchanged, "--quick must not rewrite BENCHMARKS.md"
