"""A run's ``checkpoint.pt``: all an exact resume needs, written atomically at every validation, and the student it
holds.

It stores the config, the student's architecture and hyperparameters, model, EMA, optimizer and scheduler states,
epoch, history (the rows of ``metrics.csv``), the best EMA weights and their validation force MAE, validations
without improvement, the loss normalizers, the teacher's name, torch's RNG state, the training seconds spent (what
``time_budget`` counts) and the step mode (eager or compiled). Shuffling and Hessian-row sampling
are seeded by (seed, epoch, batch) and need no state, so a resumed run repeats an uninterrupted one bit for bit. This module is the one place that knows these keys.

Example
-------
>>> model, state = model_from_checkpoint("run")  # the run folder or its checkpoint.pt
>>> state["epoch"], state["teacher"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import ConfigError, InputError, first_line
from ..students import StudentBase, build_student

if TYPE_CHECKING:
    from .trainer import Trainer

#: Options that may differ between a checkpoint and the config of the run that resumes it.
RESUMABLE_CHANGES = {"epochs", "max_steps", "time_budget", "patience", "val_every", "device", "compile"}
#: Options newer than some checkpoints, with the value that matches how those runs trained.
ADDED_OPTIONS = {"stress_weight": 0.0}


def save_checkpoint(trainer: Trainer, path: str | os.PathLike) -> None:
    """Write the trainer's whole state to ``path`` (under a temporary name, then renamed: a kill never leaves a
    half-written checkpoint)."""
    state = {
        "config": trainer.config.to_dict(),
        "hyperparameters": trainer.model.hyperparameters(),
        "architecture": trainer.model.architecture,
        "model": trainer.model.state_dict(),
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "epoch": trainer.epoch,
        "history": trainer.history,
        "best": trainer.best,
        "best_state": trainer.best_state,
        "bad_epochs": trainer.bad_validations,  # the key of checkpoints that validated every epoch
        "norm": trainer.norm,
        "teacher": trainer.teacher_name,
        "elapsed": trainer.elapsed,
        "compiled": trainer.compiled,
        "labels_fingerprint": getattr(trainer, "labels_fingerprint", None),  # hessdistill.provenance
    }
    path = Path(path)
    tmp = path.with_suffix(".pt.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def restore_checkpoint(trainer: Trainer, path: str | os.PathLike) -> None:
    """Put the state saved in ``path`` back into a freshly built ``trainer`` of the same settings (only
    ``RESUMABLE_CHANGES`` may differ) and set ``trainer.resumed_from``."""
    try:
        state = torch.load(path, map_location=trainer.device, weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {path}: {exc}; delete it to start over") from exc
    old = ADDED_OPTIONS | state["config"]
    diff = sorted(k for k, v in trainer.config.to_dict().items() if old.get(k) != v and k not in RESUMABLE_CHANGES)
    if diff:
        raise ConfigError(
            f"{path} was written with other settings ({', '.join(diff)}); use another run folder or --no-resume"
        )
    trainer.model.load_state_dict(state["model"])
    if trainer.ema is not None:
        trainer.ema.load_state_dict(state["ema"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.epoch, trainer.history = state["epoch"], state["history"]
    trainer.best, trainer.best_state, trainer.bad_validations = state["best"], state["best_state"], state["bad_epochs"]
    trainer.norm = state["norm"]
    trainer.elapsed = state.get("elapsed", 0.0)
    # auto keeps the mode the run started in: eager and compiled steps round differently
    trainer.compiled = state.get("compiled") if trainer.config.compile == "auto" else None
    trainer.resumed_from = trainer.epoch


def model_from_checkpoint(path) -> tuple[StudentBase, dict]:
    """The best-EMA student stored in a run's checkpoint (in eval mode, on the CPU), and the checkpoint dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise InputError(f"checkpoint {p} does not exist" + (" or is not a file" if p.exists() else ""))
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {p}: {first_line(exc)}") from exc
    if not isinstance(state, dict) or "architecture" not in state:
        raise InputError(f"{p} is not a hessdistill run checkpoint")
    model = build_student(state["architecture"], **state["hyperparameters"])
    weights = state["best_state"] or state["model"]
    model = model.to(next(iter(weights.values())).dtype)
    model.load_state_dict(weights)
    return model.eval(), state
