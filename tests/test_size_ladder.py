"""The size ladder: one student per size, its validation errors and cost per atom-step, a recommended size.

References: each size's exported student run through the ASE calculator on the validation structures (the MAEs
computed here from the label store); the exported files' metadata for the sizes; the recommendation rule applied
by hand; the real ``hessdistill`` command for option errors, folders and the printed command that goes on training.
"""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

from hessdistill.distill import DistillConfig, distill
from hessdistill.distill.sizes import LADDER_FILE, continue_command, parse_size, parse_sizes, recommend, size_ladder
from hessdistill.errors import ConfigError
from hessdistill.formats import read_metadata
from hessdistill.label import label_structures
from hessdistill.label.store import load_labels
from hessdistill.provenance import RUN_FILES
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher

CONFIG = DistillConfig(architecture="schnet", cutoff=4.0, dtype="float64", hessian_rows=1, epochs=2,
                       compile="off", device="cpu")


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """12 rattled ethanol molecules, Morse teacher, 2 Hessian rows each; 3 validation structures."""
    path = tmp_path_factory.mktemp("ladder") / "l.h5"
    structures = split(rattled(molecule("CH3CH2OH"), 12, 0.05, seed=0), (0.5, 0.25, 0.25), seed=1)
    label_structures(structures, MorseTeacher(), path, rows=2, progress=False)
    return path


@pytest.fixture(scope="module")
def ladder(labels, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    return size_ladder(CONFIG, labels, run, parse_sizes("4x1,8x2@3.5"), progress=False)


def test_rows_hold_each_sizes_validation_errors(ladder, labels):
    from hessdistill.engines.ase import StudentCalculator

    val = [it for it in load_labels(labels) if it.split == "val"]
    assert [r["spec"] for r in ladder["sizes"]] == ["4x1", "8x2@3.5"]
    for row in ladder["sizes"]:
        calc = StudentCalculator(row["student"], device="cpu")
        f_err, e_err = [], []
        for it in val:
            atoms = it.atoms()
            atoms.calc = calc
            f_err.append(np.abs(atoms.get_forces() - it.forces).ravel())
            e_err.append(abs(atoms.get_potential_energy() - it.energy) / len(atoms))
        f_err = np.concatenate(f_err)
        assert row["val"]["force_mae"] == pytest.approx(f_err.mean(), rel=1e-9)
        # energies (not errors) are summed in another order by the calculator: compare at 1e-6 eV/atom
        assert row["val"]["energy_mae_per_atom"] == pytest.approx(np.mean(e_err), abs=1e-6)
        mean_f = np.concatenate([np.abs(it.forces).ravel() for it in val]).mean()
        assert row["val"]["force_mae_relative"] == pytest.approx(f_err.mean() / mean_f, rel=1e-9)
        assert np.isfinite(row["val"]["hessian_mae"])
    meta = [read_metadata(r["student"]) for r in ladder["sizes"]]
    assert [(m["num_interactions"], float(m["cutoff"])) for m in meta] == [("1", 4.0), ("2", 3.5)]
    small, big = ladder["sizes"]
    assert big["parameters"] > small["parameters"]
    assert (small["features"], big["features"], big["num_basis"]) == (4, 8, CONFIG.num_basis)


def test_costs_and_recommendation(ladder, labels):
    for row in ladder["sizes"]:
        cost = row["cost"]["torchscript"]
        assert cost["format"] == "torchscript" and cost["atoms"] == 9 and cost["ms_per_call"] > 0
        assert cost["us_per_atom"] == pytest.approx(1e3 * cost["ms_per_call"] / 9)
    # the documented rule, by hand
    rows = ladder["sizes"]
    best = min(rows, key=lambda r: r["val"]["force_mae"])
    within = [r for r in rows if r["val"]["force_mae"] <= 1.1 * best["val"]["force_mae"]]
    assert ladder["best"] == best["spec"]
    assert ladder["recommended"] == min(within, key=lambda r: r["cost"]["torchscript"]["us_per_atom"])["spec"]
    folder = Path(rows[0]["run_dir"]).parent
    saved = json.loads((folder / LADDER_FILE).read_text())
    assert saved["recommended"] == ladder["recommended"] and len(saved["sizes"]) == 2
    assert (folder / "ladder.png").is_file()


def _row(spec, mae, us):
    return {"spec": spec, "val": {"force_mae": mae}, "cost": {"torchscript": {"us_per_atom": us}}}


def test_recommend_rule():
    rows = [_row("a", 1.0, 1.0), _row("b", 0.95, 2.0), _row("c", 0.9, 4.0)]
    assert recommend(rows, 0.1) == {"best": "c", "recommended": "b", "still_falling": True}
    assert recommend(rows, 0.2)["recommended"] == "a"
    assert recommend(rows, 0.0)["recommended"] == "c"
    flat = [_row("a", 1.0, 1.0), _row("b", 0.8, 2.0), _row("c", 0.85, 4.0)]
    assert recommend(flat, 0.1) == {"best": "b", "recommended": "b", "still_falling": False}


def test_parse_sizes():
    assert parse_size("64x3@6.0").spec == "64x3@6"
    assert parse_size(" 32x2b24 ") == parse_size("32x2b24")
    assert parse_size("16x1b8@4.5").apply(CONFIG).to_dict() == CONFIG.replace(
        features=16, num_interactions=1, num_basis=8, cutoff=4.5).to_dict()
    for bad in ("x2", "0x1", "abc", "4x0", "4x1b0", "4x1@0", "4x1@", "4x1,"):
        with pytest.raises(ConfigError):
            parse_sizes(bad)
    with pytest.raises(ConfigError, match="given twice"):
        parse_sizes("4x1,4x1@5,4x1")


def _hessdistill(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hessdistill", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("option", ["--size-ladder x2", "--size-ladder 0x1", "--size-ladder abc",
                                    "--ladder-budget 0m", "--ladder-tolerance -1"])
def test_bad_options_are_one_line_parse_errors(labels, tmp_path, option):
    r = _hessdistill("distill", str(labels), "--out", str(tmp_path / "r"), "--size-ladder", "4x1",
                     *option.split())
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert option.split()[0] in r.stderr
    assert not (tmp_path / "r").exists()


def test_ladder_options_need_a_ladder(labels, tmp_path):
    r = _hessdistill("distill", str(labels), "--out", str(tmp_path / "r"), "--ladder-budget", "5m")
    assert r.returncode == 2 and "go with --size-ladder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def test_cli_ladder_leaves_resumable_runs_beside_a_plain_one(labels, tmp_path):
    out = tmp_path / "run"
    r = _hessdistill("distill", str(labels), "--out", str(out), "--size-ladder", "4x1,6x1", "--architecture",
                     "schnet", "--cutoff", "4", "--dtype", "float64", "--epochs", "2", "--compile", "off",
                     "--hessian-rows", "1")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["sizes"]
    ladder = json.loads((out / "sizes" / LADDER_FILE).read_text())
    assert "<- recommended" in r.stdout and str(out / "sizes" / LADDER_FILE) in r.stdout
    command = continue_command(ladder, labels)
    assert command in r.stdout
    # the printed command goes on training the recommended size from its checkpoint
    args = shlex.split(command.replace("TIME", "1s"))[1:] + ["--no-report"]
    r = _hessdistill(*args)
    assert r.returncode == 0, r.stderr
    chosen = out / "sizes" / ladder["recommended"]
    summary = json.loads((chosen / "summary.json").read_text())
    assert summary["resumed_from_epoch"] == 2 and summary["epochs"] > 2
    # a plain run in the same folder writes its own files and leaves the ladder alone
    distill(CONFIG.replace(epochs=1), labels, out, progress=False)
    assert {"checkpoint.pt", "summary.json", "student.pt"} <= set(os.listdir(out))
    assert json.loads((out / "sizes" / LADDER_FILE).read_text()) == ladder
    assert not set(RUN_FILES) & set(os.listdir(out / "sizes"))


@pytest.mark.slow
def test_pt2_cost(labels, tmp_path):
    """--ladder-pt2: each size also exported as .pt2 (a compile) and timed on the same structure."""
    from hessdistill.formats import file_format

    ladder = size_ladder(CONFIG, labels, tmp_path, parse_sizes("4x1"), pt2=True, progress=False)
    (row,) = ladder["sizes"]
    package = Path(row["run_dir"]) / "student.pt2"
    assert file_format(package) == "pt2" and read_metadata(package)["num_interactions"] == "1"
    assert row["cost"]["pt2"]["format"] == "pt2" and row["cost"]["pt2"]["atoms"] == 9
    assert row["cost"]["pt2"]["ms_per_call"] > 0
