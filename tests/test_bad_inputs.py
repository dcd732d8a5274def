"""Every bad input the user can give gets one line on stderr and a non-zero exit, before any work: no traceback, no
input changed (byte for byte), no file left behind. Each case runs the real command in a subprocess, in an empty
folder of its own (so any file it leaves is seen); the inputs live in one shared folder hashed before and after
all cases. Then the provenance rules in-process: a store refuses another teacher or set, ``--relabel`` starts
over, a run refuses other labels, ``report`` warns on a teacher mismatch."""

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from ase.io import write

from conftest import cluster
from hessdistill.distill import DistillConfig, distill
from hessdistill.errors import LabelStoreError
from hessdistill.label import label_file
from hessdistill.provenance import RUN_FILES
from hessdistill.sample import rattled, split

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def tiny_config(**kw):
    base = dict(architecture="schnet", features=8, num_interactions=1, cutoff=4.0, batch_size=4, lr=3e-3,
                dtype="float64", compile="off", val_every=1, epochs=2)
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Shared inputs: two structure sets, stores labelled by morse and lj, a run trained on the morse store, its
    student, a config, bad structure files, a short and a corrupt parts folder."""
    d = tmp_path_factory.mktemp("inputs")
    s = d / "structures.extxyz"
    write(s, split(rattled(cluster(5, seed=0), 8, 0.1, seed=0)), format="extxyz")
    write(d / "other.extxyz", split(rattled(cluster(5, seed=1), 8, 0.1, seed=1)), format="extxyz")
    label_file(str(s), "morse", str(d / "morse.h5"), rows=3)
    label_file(str(s), "lj", str(d / "lj.h5"), rows=3)
    distill(tiny_config(), d / "morse.h5", d / "run", progress=False)
    (d / "config.yaml").write_text("epochs: 2\n")
    (d / "bad.yaml").write_text("epochs: [1,\n  2\nfeatures: {\n")
    (d / "empty.xyz").write_text("")
    (d / "garbage.xyz").write_text("this is not a structure file\n\x00\x01\x02\n")
    text = s.read_text().splitlines()
    (d / "truncated.extxyz").write_text("\n".join(text[: len(text) // 2 - 3]) + "\n")
    for name, keep in (("short", [0, 1, 3, 4, 5, 6]), ("corrupt", range(8))):
        parts = d / f"{name}.h5.parts"
        parts.mkdir()
        for k in keep:
            shutil.copy(d / "morse.h5.parts" / f"{k:06d}.h5", parts)
    (d / "corrupt.h5.parts" / "000001.h5").write_bytes(b"not hdf5 at all")
    # inputs named like files a command writes into a folder (collision property checks)
    (d / "rep").mkdir()
    shutil.copy(d / "run" / "student.pt", d / "rep" / "report.json")
    shutil.copy(d / "morse.h5", d / "rep" / "report.png")
    (d / "mdout").mkdir()
    shutil.copy(d / "run" / "student.pt", d / "mdout" / "summary.json")
    shutil.copy(s, d / "mdout" / "flagged.extxyz")
    return d


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


GPU = torch.cuda.is_available()
S, O, M, L = "{d}/structures.extxyz", "{d}/other.extxyz", "{d}/morse.h5", "{d}/lj.h5"
R, ST, C = "{d}/run", "{d}/run/student.pt", "{d}/config.yaml"
SAMPLE = ["sample", "--teacher", "morse", "--rattle", "4"]
MD = ["md", "--model", ST, "--steps", "2"]
BAD_STRUCTURES = {"empty": "{d}/empty.xyz", "garbage": "{d}/garbage.xyz", "truncated": "{d}/truncated.extxyz",
                  "directory": "{d}", "missing": "{d}/nothing.xyz"}

# (case id, argv, a piece of the expected message)
CASES = [
    # 1. an output that is an input or a file the run needs
    ("label-o-input", ["label", S, "--teacher", "morse", "-o", S], "destroy"),
    ("label-o-input-relative", ["label", S, "--teacher", "morse", "-o", "{d}/../{dn}/structures.extxyz"], "destroy"),
    ("sample-o-from-file", ["sample", "--from-file", S, "-o", S], "destroy"),
    ("sample-o-start", SAMPLE + ["--start", S, "-o", S], "destroy"),
    ("export-o-checkpoint-given", ["export", R + "/checkpoint.pt", "-o", R + "/checkpoint.pt"], "destroy"),
    *[(f"export-o-run-{name}", ["export", R, "-o", f"{R}/{name}"], "destroy") for name in RUN_FILES
      if name != "committee.json"],
    ("distill-write-config-over-labels", ["distill", M, "--write-config", M], "destroy"),
    ("distill-write-config-over-config", ["distill", M, "--config", C, "--write-config", C], "destroy"),
    ("distill-out-over-labels", ["distill", "{d}/run/checkpoint.pt", "--out", R], "destroy"),
    ("report-json-over-student", ["report", "{d}/rep/report.json", M, "-o", "{d}/rep", "--no-physics"], "destroy"),
    ("report-png-over-labels", ["report", ST, "{d}/rep/report.png", "-o", "{d}/rep", "--no-physics"], "destroy"),
    ("md-summary-over-model", ["md", "--model", "{d}/mdout/summary.json", "--structure", S, "--out", "{d}/mdout"],
     "destroy"),
    ("md-flagged-over-structure", MD + ["--structure", "{d}/mdout/flagged.extxyz", "--out", "{d}/mdout"],
     "destroy"),
    # 2. mixed data
    ("label-resume-other-teacher", ["label", S, "--teacher", "lj", "-o", M, "--rows", "3"], "--relabel"),
    ("label-resume-other-structures", ["label", O, "--teacher", "morse", "-o", M, "--rows", "3"], "--relabel"),
    ("distill-resume-other-labels", ["distill", L, "--out", R, "--epochs", "2", "--architecture", "schnet"],
     "other labels"),
    ("merge-short-store", ["merge", "{d}/short.h5"], "#[2, 7]"),
    ("sample-interval-0", SAMPLE[:3] + ["--md", "4", "--interval", "0", "--start", S, "-o", "x.extxyz"],
     "--interval"),
    # 3. output paths: a folder, a special place, a file as parent
    ("label-o-dir", ["label", S, "--teacher", "morse", "-o", "{d}"], "is a directory"),
    ("sample-o-dir", SAMPLE + ["--start", S, "-o", "{d}"], "is a directory"),
    ("export-o-dir", ["export", R, "-o", "{d}"], "is a directory"),
    ("report-o-file", ["report", ST, M, "-o", S, "--no-physics"], "not a directory"),
    ("distill-out-file", ["distill", M, "--out", S], "not a directory"),
    ("md-out-file", MD + ["--structure", S, "--out", S], "not a directory"),
    ("label-o-unwritable", ["label", S, "--teacher", "morse", "-o", "/proc/labels.h5"], "not writable"),
    ("sample-o-unwritable", SAMPLE + ["--start", S, "-o", "/proc/x.extxyz"], "not writable"),
    ("export-o-unwritable", ["export", R, "-o", "/proc/student.pt"], "not writable"),
    ("report-o-unwritable", ["report", ST, M, "-o", "/proc/report", "--no-physics"], "not writable"),
    ("distill-out-unwritable", ["distill", M, "--out", "/proc/run"], "not writable"),
    ("md-out-unwritable", MD + ["--structure", S, "--out", "/proc/md"], "not writable"),
    ("label-o-under-file", ["label", S, "--teacher", "morse", "-o", S + "/x.h5"], "not a directory"),
    ("export-o-under-file", ["export", R, "-o", S + "/x.pt"], "not a directory"),
    # 4. structure inputs, one check for every command
    *[(f"sample-start-{k}", SAMPLE + ["--start", v, "-o", "x.extxyz"], "") for k, v in BAD_STRUCTURES.items()],
    *[(f"sample-from-file-{k}", ["sample", "--from-file", v, "-o", "x.extxyz"], "") for k, v in
      BAD_STRUCTURES.items()],
    *[(f"label-{k}", ["label", v, "--teacher", "morse", "-o", "x.h5"], "") for k, v in BAD_STRUCTURES.items()],
    *[(f"md-structure-{k}", MD + ["--structure", v, "--out", "md"], "") for k, v in BAD_STRUCTURES.items()],
    ("sample-start-bulk-unknown", SAMPLE + ["--start", "bulk:Xx", "-o", "x.extxyz"], "bulk:Xx"),
    ("sample-start-bulk-bad-repeat", SAMPLE + ["--start", "bulk:Si:two", "-o", "x.extxyz"], "REPEAT"),
    ("md-structure-bulk-unknown", MD + ["--structure", "bulk:Xx", "--out", "md"], "bulk:Xx"),
    ("refine-structure-bulk-unknown", ["refine", M, "--committee-dir", R, "--teacher", "morse", "--threshold", "0.1",
                                       "--structure", "bulk:Xx"], "bulk:Xx"),
    ("refine-out-is-committee", ["refine", M, "--committee-dir", R, "--teacher", "morse", "--threshold", "0.1",
                                 "--structure", S, "--out", R], "refine reads"),
    ("refine-out-holds-labels", ["refine", M, "--committee-dir", R, "--teacher", "morse", "--threshold", "0.1",
                                 "--structure", S, "--out", "{d}"], "refine reads"),
    ("refine-labels-missing", ["refine", "{d}/nothing.h5", "--committee-dir", R, "--teacher", "morse",
                               "--threshold", "0.1", "--structure", S], "does not exist"),
    ("refine-committee-not-a-folder", ["refine", M, "--committee-dir", S, "--teacher", "morse", "--threshold",
                                       "0.1", "--structure", S], "not a folder"),
    ("refine-out-unwritable", ["refine", M, "--committee-dir", R, "--teacher", "morse", "--threshold", "0.1",
                               "--structure", S, "--out", "/proc/refine"], "not writable"),
    # 5. options checked at parse time
    ("sample-timestep-negative", SAMPLE + ["--start", S, "--timestep", "-1", "-o", "x.extxyz"], "--timestep"),
    ("sample-rattle-stdev-negative", SAMPLE + ["--start", S, "--rattle-stdev", "-0.1", "-o", "x.extxyz"],
     "--rattle-stdev"),
    ("sample-split-not-numbers", SAMPLE + ["--start", S, "--split", "a,b", "-o", "x.extxyz"], "--split"),
    ("sample-split-not-one", SAMPLE + ["--start", S, "--split", "0.5,0.5,0.5", "-o", "x.extxyz"], "--split"),
    ("sample-temperature-negative", SAMPLE + ["--start", S, "--temperature", "300,-5", "-o", "x.extxyz"],
     "--temperature"),
    ("sample-md-negative", SAMPLE + ["--start", S, "--md", "-1", "-o", "x.extxyz"], "--md"),
    ("label-rows-text", ["label", S, "--teacher", "morse", "-o", "x.h5", "--rows", "abc"], "--rows"),
    ("label-rows-zero", ["label", S, "--teacher", "morse", "-o", "x.h5", "--rows", "0"], "--rows"),
    ("label-rows-too-many", ["label", S, "--teacher", "morse", "-o", "x.h5", "--rows", "1000"], "1..3N"),
    ("label-shard-bad", ["label", S, "--teacher", "morse", "-o", "x.h5", "--shard", "3/2"], "--shard"),
    ("label-teacher-unknown", ["label", S, "--teacher", "nope", "-o", "x.h5"], "unknown teacher"),
    ("label-teacher-ase-no-module", ["label", S, "--teacher", "ase:no_such_module:Calc", "-o", "x.h5"],
     "no_such_module"),
    ("md-timestep-negative", MD + ["--structure", S, "--timestep", "-0.5", "--out", "md"], "--timestep"),
    ("md-steps-zero", MD + ["--structure", S, "--steps", "0", "--out", "md"], "--steps"),
    ("md-device-unknown", MD + ["--structure", S, "--device", "tpu", "--out", "md"], "--device"),
    ("md-engine-unknown", MD + ["--structure", S, "--engine", "gromacs", "--out", "md"], "--engine"),
    ("export-dtype-unknown", ["export", R, "-o", "x.pt", "--dtype", "float16"], "--dtype"),
    ("export-format-unknown", ["export", R, "-o", "x.pt", "--format", "onnx"], "--format"),
    ("distill-lr-text", ["distill", M, "--out", "r", "--lr", "fast"], "--lr"),
    ("distill-epochs-negative", ["distill", M, "--out", "r", "--epochs", "-1"], "epochs"),
    ("distill-architecture-unknown", ["distill", M, "--out", "r", "--architecture", "mlp"], "architecture"),
    ("distill-cutoff-finds-no-neighbours", ["distill", M, "--out", "r", "--cutoff", "0.5"], "no neighbour pair"),
    ("distill-committee-one", ["distill", M, "--out", "r", "--committee", "1"], "K >= 2"),
    ("global-threads-zero", ["--threads", "0", "merge", M], "--threads"),
    # 6. smaller ones
    ("merge-corrupt-part", ["merge", "{d}/corrupt.h5"], "#[1]"),
    ("merge-no-parts", ["merge", "{d}/nothing.h5"], "no parts folder"),
    ("report-teacher-unknown", ["report", ST, M, "--teacher", "nope", "-o", "rep"], "unknown teacher"),
    ("distill-config-bad-yaml", ["distill", M, "--config", "{d}/bad.yaml", "--out", "r"], "not valid YAML"),
    ("distill-config-dir", ["distill", M, "--config", "{d}", "--out", "r"], "is not a file"),
    ("distill-labels-not-a-store", ["distill", S, "--out", "r"], "label store"),
    ("distill-labels-dir", ["distill", "{d}", "--out", "r"], "is a directory"),
    ("export-no-checkpoint", ["export", "{d}/nothing", "-o", "x.pt"], "does not exist"),
    ("export-not-a-checkpoint", ["export", M, "-o", "x.pt"], "checkpoint"),
    ("report-labels-not-a-store", ["report", ST, S, "-o", "rep", "--no-physics"], "label store"),
    ("report-student-dir", ["report", "{d}", M, "-o", "rep", "--no-physics"], "is a directory"),
    ("report-md-molecule", ["report", ST, M, "-o", "rep", "--md", "0.1"], "periodic in all three directions"),
    ("report-md-zero", ["report", ST, M, "-o", "rep", "--md", "0"], "--md: expected a number > 0"),
    ("md-model-missing", ["md", "--model", "{d}/nothing.pt", "--structure", S, "--out", "md"], "does not exist"),
]
if not GPU:
    CASES += [("md-device-cuda-without-gpu", MD + ["--structure", S, "--device", "cuda", "--out", "md"], "CUDA"),
              ("export-device-cuda-without-gpu", ["export", R, "-o", "x.pt2", "--device", "cuda"], "CUDA")]


def run_case(world: Path, case, cwd: Path):
    name, argv, expected = case
    cwd.mkdir()
    args = [a.format(d=world, dn=world.name) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "hessdistill", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=120)
    return name, expected, proc, sorted(p.name for p in cwd.iterdir())


def test_bad_inputs_one_line_nothing_touched(world, tmp_path):
    assert len(CASES) >= 60
    before = snapshot(world)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_case(world, c, tmp_path / c[0]), CASES))
    problems = []
    for name, expected, proc, left in results:
        lines = proc.stderr.splitlines()
        if proc.returncode == 0:
            problems.append(f"{name}: exit 0")
        if "Traceback" in proc.stderr or len(lines) != 1:
            problems.append(f"{name}: stderr is not one line: {proc.stderr[-800:]!r}")
        elif expected not in lines[0]:
            problems.append(f"{name}: {expected!r} not in {lines[0]!r}")
        if left:
            problems.append(f"{name}: left {left}")
    assert not problems, "\n".join(problems)
    assert snapshot(world) == before


def test_debug_shows_the_traceback_with_its_cause(world, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hessdistill", "--debug", "sample", "--from-file",
                           str(world / "garbage.xyz"), "-o", "x.extxyz"], cwd=tmp_path, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "InputError" in proc.stderr
    assert "direct cause" in proc.stderr  # the reader's own exception is chained


def test_label_store_knows_its_teacher_and_set(world, tmp_path):
    store = tmp_path / "labels.h5"
    shutil.copy(world / "morse.h5", store)
    shutil.copytree(world / "morse.h5.parts", tmp_path / "labels.h5.parts")
    s = str(world / "structures.extxyz")
    with pytest.raises(LabelStoreError, match="--relabel"):
        label_file(s, "lj", str(store), rows=3)
    with pytest.raises(LabelStoreError, match="another structure set"):
        label_file(str(world / "other.extxyz"), "morse", str(store), rows=3)
    with pytest.raises(LabelStoreError, match="--relabel"):  # same name, other parameters
        from hessdistill.teachers.analytic import MorseTeacher

        label_file(s, MorseTeacher(D=0.6), str(store), rows=3)
    assert label_file(s, "morse", str(store), rows=3)["skipped"] == 8  # same teacher and set: a plain resume
    counts = label_file(s, "lj", str(store), rows=3, relabel=True)
    assert counts["labelled"] == 8 and counts["merged"]
    from hessdistill.label.store import load_labels, store_teacher

    assert store_teacher(store) == "lj"
    lj = {it.index: it.energy for it in load_labels(world / "lj.h5")}
    assert {it.index: it.energy for it in load_labels(store)} == lj


def test_run_refuses_other_labels_until_no_resume(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world / "run", run)
    with pytest.raises(LabelStoreError, match="other labels"):
        distill(tiny_config(epochs=3), world / "lj.h5", run, progress=False)
    summary = distill(tiny_config(epochs=3), world / "morse.h5", run, progress=False)  # same labels: resumes
    assert summary["resumed_from_epoch"] == 2
    summary = distill(tiny_config(epochs=1), world / "lj.h5", run, resume=False, progress=False)
    assert summary["resumed_from_epoch"] is None


def test_report_warns_when_the_teachers_differ(world, tmp_path):
    from hessdistill.report import fidelity_report

    same = fidelity_report(world / "run" / "student.pt", world / "morse.h5", tmp_path / "a", physics=False,
                           progress=False)
    other = fidelity_report(world / "run" / "student.pt", world / "lj.h5", tmp_path / "b", physics=False,
                            progress=False)
    assert "warnings" not in same
    assert "distilled from teacher morse" in other["warnings"][0] and "lj" in other["warnings"][0]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["report.json", "report.png"]  # no temporary
