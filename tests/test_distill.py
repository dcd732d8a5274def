"""Distillation: Hessian rows help on a tiny analytic teacher; training resumes exactly after a real SIGKILL;
the run ends at a plateau, an epoch cap from max_steps or a time budget that survives resume; the compiled step's
gradients equal eager ones; bad input gets a one-line error from the CLI."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import assert_compiled_step_equals_eager, cluster
import numpy as np

from hessdistill.distill import DistillConfig, load_config, model_from_checkpoint, write_config
from hessdistill.distill.config import parse_duration
from hessdistill.distill.trainer import (AUTO_PATIENCE_EPOCHS, AUTO_PATIENCE_STEPS, VAL_EVERY_STEPS,
                                        VAL_HESSIAN_EVERY, auto_patience)
from hessdistill.errors import ConfigError, InputError
from hessdistill.label import label_structures
from hessdistill.sample import rattled, split
from hessdistill.teachers.analytic import MorseTeacher
from hessdistill.distill import Trainer, distill

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def morse_labels(tmp_path_factory):
    path = tmp_path_factory.mktemp("labels") / "morse.h5"
    structures = split(rattled(cluster(5, seed=0), 16, 0.1, seed=0), (0.5, 0.25, 0.25))
    label_structures(structures, MorseTeacher(), path, progress=False)
    return path


def tiny(**kw):
    base = dict(architecture="schnet", features=16, num_interactions=1, cutoff=4.0, batch_size=4, lr=3e-3,
                dtype="float64", patience=1000, lr_schedule="cosine", compile="off", val_every=1)
    base.update(kw)
    return DistillConfig(**base)


def test_hessian_distillation_beats_baseline(morse_labels, tmp_path):
    """Same data, steps and seed; only wH differs. The teacher is an exact Morse potential."""
    results = {}
    for name, wh in (("baseline", 0.0), ("distilled", 10.0)):
        results[name] = distill(tiny(epochs=200, hessian_weight=wh), morse_labels, tmp_path / name, progress=False)
    ratio = results["distilled"]["test"]["force_mae"] / results["baseline"]["test"]["force_mae"]
    assert ratio < 0.8, results
    assert results["distilled"]["test"]["hessian_mae"] < results["baseline"]["test"]["hessian_mae"]
    for name in results:
        assert (tmp_path / name / "learning_curve.png").stat().st_size > 1000
        lines = (tmp_path / name / "metrics.csv").read_text().splitlines()
        assert lines[0].startswith("epoch,lr,train_loss,val_energy_mae,val_force_mae") and len(lines) == 201
        # the validation Hessian MAE is taken on epochs 1, 11, 21, ... only (it costs a double backward per row)
        hessian_epochs = [int(r["epoch"]) for r in csv.DictReader(lines) if math.isfinite(float(r["val_hessian_mae"]))]
        assert hessian_epochs == list(range(1, 201, VAL_HESSIAN_EVERY))


def test_run_ends_at_a_plateau_or_the_step_cap(morse_labels, tmp_path):
    """Plateau schedule: the LR halves after `patience` epochs without a better validation force MAE, down to
    lr * lr_min_factor, and the run stops after `patience` more such epochs there; epochs = 0 caps the run at
    the epochs of max_steps optimizer steps (8 training structures, batch 4: 2 steps per epoch)."""
    trainer = Trainer(tiny(epochs=0, max_steps=4000, lr_schedule="plateau", patience=3, lr_min_factor=0.25, lr=3e-2),
                      morse_labels, tmp_path / "plateau", progress=False)
    assert trainer.max_epochs == 2000
    trainer.fit()
    assert trainer.stop_reason == "plateau" and trainer.epoch < 2000
    lrs = [h["lr"] for h in trainer.history]
    assert sorted(set(lrs), reverse=True) == [3e-2, 1.5e-2, 7.5e-3] and lrs == sorted(lrs, reverse=True)
    mae = [h["val_force_mae"] for h in trainer.history]
    assert min(mae[-3:]) >= min(mae[:-3])  # the last `patience` epochs brought no improvement
    capped = Trainer(tiny(epochs=0, max_steps=7, lr_schedule="plateau"), morse_labels, tmp_path / "cap", progress=False)
    capped.fit()
    assert capped.max_epochs == 4 and capped.epoch == 4 and capped.stop_reason == "epochs"


def test_automatic_patience_grows_with_the_training_set(morse_labels, tmp_path):
    """patience = 0: about AUTO_PATIENCE_STEPS optimizer steps on small sets, and at least AUTO_PATIENCE_EPOCHS
    passes over a large one (a fixed step count is ever fewer passes as the set grows)."""
    for steps_per_epoch in (2, 45, 50, 51, 135, 1000):
        epochs = auto_patience(steps_per_epoch)
        assert epochs >= AUTO_PATIENCE_EPOCHS and epochs * steps_per_epoch >= AUTO_PATIENCE_STEPS
        assert epochs == AUTO_PATIENCE_EPOCHS or (epochs - 1) * steps_per_epoch < AUTO_PATIENCE_STEPS
    assert auto_patience(135) * 135 > 2 * AUTO_PATIENCE_STEPS  # 540 structures at batch 4
    trainer = Trainer(tiny(epochs=10, batch_size=1, val_every=1, patience=0), morse_labels, tmp_path / "auto",
                      progress=False)
    assert trainer.steps_per_epoch == 8 and trainer.patience == math.ceil(AUTO_PATIENCE_STEPS / 8)


def test_small_training_sets_validate_every_few_epochs(morse_labels, tmp_path):
    """8 training structures at batch 4 are 2 optimizer steps per epoch: val_every = 0 validates every
    VAL_EVERY_STEPS // 2 epochs and at the cap, with patience counted in validations. Validation does not touch
    training (cosine schedule): the same weights as a run validating every epoch, and the same validation MAE at
    the epochs both validated."""
    sparse = Trainer(tiny(epochs=60, val_every=0, patience=50), morse_labels, tmp_path / "sparse", progress=False)
    assert sparse.val_every == VAL_EVERY_STEPS // 2 and sparse.patience == math.ceil(50 / sparse.val_every)
    sparse.fit()
    every = Trainer(tiny(epochs=60), morse_labels, tmp_path / "every", progress=False)
    every.fit()
    assert [h["epoch"] for h in sparse.history] == [25, 50, 60] and len(every.history) == 60
    by_epoch = {h["epoch"]: h for h in every.history}
    for h in sparse.history:
        assert h["val_force_mae"] == by_epoch[h["epoch"]]["val_force_mae"]
    assert sparse.history[0]["train_loss"] == pytest.approx(np.mean([r["train_loss"] for r in every.history[:25]]))
    for k, v in every.model.state_dict().items():
        assert torch.equal(sparse.model.state_dict()[k], v), k
    assert len((tmp_path / "sparse" / "metrics.csv").read_text().splitlines()) == 4


def test_time_budget_ends_the_run_and_survives_resume(morse_labels, tmp_path):
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration("1.5h") == 5400
    assert parse_duration("") is None and parse_duration("45") == 45
    for bad in ("abc", "-5m", "0", "2x", "infh"):
        with pytest.raises(ConfigError, match="time_budget must be a positive duration"):
            tiny(time_budget=bad).validate()
    run = tmp_path / "budget"
    first = Trainer(tiny(epochs=0, time_budget="1s"), morse_labels, run, progress=False)
    assert first.max_epochs is None  # a time budget, and no epoch cap unless given
    first.fit()
    assert first.stop_reason == "time budget" and first.elapsed >= 1.0
    per_epoch = max(h["seconds"] for h in first.history)
    assert first.elapsed < 1.0 + 2 * per_epoch + 0.5  # the epoch that crosses the budget is finished, no more
    again = Trainer(tiny(epochs=0, time_budget="1s"), morse_labels, run, progress=False)
    again.fit()  # the budget was spent before the resume: no further epoch
    assert again.epoch == first.epoch and again.elapsed == pytest.approx(first.elapsed, abs=0.5)
    longer = Trainer(tiny(epochs=0, time_budget="2s"), morse_labels, run, progress=False)
    longer.fit()
    assert longer.epoch > first.epoch and longer.elapsed >= 2.0
    assert torch.load(run / "checkpoint.pt", weights_only=False)["elapsed"] == longer.elapsed


def test_a_failed_export_keeps_the_training_for_a_rerun(morse_labels, tmp_path):
    """An export that fails after training (TorchScript re-reads the package's source files, e.g. changed by an
    upgrade during training) says so in one line, and the same call again exports the trained weights without
    training again."""
    from unittest import mock

    from hessdistill.errors import HessdistillError
    from hessdistill.formats import load_student

    config = tiny(epochs=3)
    with mock.patch("torch.jit.script", side_effect=OSError("could not get source code")):
        with pytest.raises(HessdistillError, match="could not get source code.*run the same command again"):
            distill(config, morse_labels, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "student.pt").exists()
    kept = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"]
    summary = distill(config, morse_labels, tmp_path / "run", progress=False)
    assert kept == 3 and summary["epochs"] == 3 and summary["resumed_from_epoch"] == 3
    assert load_student(summary["student"]).cutoff == config.cutoff


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["schnet", "tensornet"])
def test_compiled_step_gradients_equal_eager(morse_labels, tmp_path, architecture):
    """The traced and compiled loss + parameter-gradient graph against eager autograd on the same batches and
    Hessian rows (float64): batches of 4, 3 and 2 structures share one compiled graph (no recompile); a batch
    of one structure runs eagerly. TensorNet's tensor products are where inductor once compiled a wrong graph."""
    config = tiny(architecture=architecture, features=8, hessian_rows=2, hessian_weight=10.0, device="cpu")
    trainer = Trainer(config, morse_labels, tmp_path / "c", progress=False)
    train = trainer.graphs["train"]
    assert_compiled_step_equals_eager(trainer, config, [train[:size] for size in (4, 3, 2, 1)])

def _cli(*args):
    return [sys.executable, "-m", "hessdistill", *map(str, args)]


def test_training_resumes_exactly_after_sigkill(morse_labels, tmp_path):
    args = ["distill", morse_labels, "--architecture", "schnet", "--features", 8, "--num-interactions", 1,
            "--cutoff", 4.0, "--epochs", 20, "--dtype", "float64", "--batch-size", 2, "--hessian-rows", 2,
            "--val-every", 2]  # checkpoints at epochs 2, 4, ...: a resume from a validation several epochs back
    killed = tmp_path / "killed"
    proc = subprocess.Popen(_cli(*args, "--out", killed), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt = killed / "checkpoint.pt"
    epoch, deadline = 0, time.time() + 120
    while time.time() < deadline and epoch < 3:
        if ckpt.exists():
            epoch = torch.load(ckpt, weights_only=False)["epoch"]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = torch.load(ckpt, weights_only=False)["epoch"]
    assert 3 <= at_kill < 20, "the kill must land mid-run"
    assert not (killed / "student.pt").exists()
    subprocess.run(_cli(*args, "--out", killed), env=ENV, check=True, capture_output=True)
    straight = tmp_path / "straight"
    subprocess.run(_cli(*args, "--out", straight), env=ENV, check=True, capture_output=True)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_from_epoch"] >= at_kill and summary["epochs"] == 20
    a = torch.load(killed / "checkpoint.pt", weights_only=False)
    b = torch.load(straight / "checkpoint.pt", weights_only=False)
    assert [h["epoch"] for h in b["history"]] == list(range(2, 21, 2))
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    for k in b["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_bad_input_errors(morse_labels, tmp_path):
    with pytest.raises(InputError, match="larger than 3N"):
        Trainer(tiny(hessian_rows=16), morse_labels, tmp_path / "r")
    with pytest.raises(ConfigError, match="architecture"):
        tiny(architecture="mace").validate()
    cfg = tmp_path / "c.yaml"
    write_config(cfg, tiny(epochs=7))
    assert load_config(cfg).epochs == 7 and load_config(cfg, epochs=9).epochs == 9
    cfg.write_text("epochs: 3\nlearning_rate: 1\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_config(cfg)
    foreign = tmp_path / "foreign" / "checkpoint.pt"
    foreign.parent.mkdir()
    torch.save({"epoch": 3}, foreign)
    with pytest.raises(InputError, match="not a hessdistill checkpoint \\(format None, expected"):
        model_from_checkpoint(foreign.parent)
    with pytest.raises(InputError, match="not a hessdistill checkpoint"):
        Trainer(tiny(), morse_labels, foreign.parent)


@pytest.mark.parametrize(
    "setup,args,message",
    [
        (None, ["distill", "{tmp}/missing.h5"], "does not exist"),
        ("corrupt", ["distill", "{tmp}/bad.h5"], "cannot read label store"),
        ("labels", ["distill", "{labels}", "--hessian-rows", "99"], "larger than 3N"),
        ("empty", ["label", "{tmp}/empty.xyz", "--teacher", "morse", "-o", "{tmp}/x.h5"], "holds no structures"),
        ("nan", ["label", "{tmp}/nan.xyz", "--teacher", "morse", "-o", "{tmp}/x.h5"], "non-finite"),
        ("si", ["label", "{tmp}/si.xyz", "--teacher", "ani1x", "-o", "{tmp}/x.h5"], "does not cover element"),
        (None, ["md", "--model", "{tmp}/nope.pt", "--structure", "CH4"], "does not exist"),
    ],
)
def test_cli_prints_one_line_errors(setup, args, message, morse_labels, tmp_path):
    if setup == "si":
        pytest.importorskip("torchani")  # absent in the newer CI environment
    if setup == "corrupt":
        (tmp_path / "bad.h5").write_bytes(b"junk" * 50)
    elif setup == "empty":
        (tmp_path / "empty.xyz").write_text("")
    elif setup == "nan":
        (tmp_path / "nan.xyz").write_text("2\n\nC 0 0 0\nC nan 0 1.5\n")
    if setup == "si":
        (tmp_path / "si.xyz").write_text("2\n\nSi 0 0 0\nSi 0 0 2.3\n")
    argv = [a.format(tmp=tmp_path, labels=morse_labels) for a in args]
    res = subprocess.run(_cli(*argv), env=ENV, capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hessdistill: error:") and message in lines[0], res.stderr


def test_trainer_leaves_the_callers_torch_rng_alone(morse_labels, tmp_path):
    """The student's initial weights come from config.seed, without reseeding the caller's global RNG, and two
    trainers with one seed start from the same weights."""
    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = Trainer(tiny(epochs=1, seed=5), morse_labels, tmp_path / "a", progress=False)
    assert torch.equal(torch.rand(4), expected)
    second = Trainer(tiny(epochs=1, seed=5), morse_labels, tmp_path / "b", progress=False)
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
