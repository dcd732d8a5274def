"""The training loop: one optimizer step per batch, one validation and checkpoint every ``val_every`` epochs.

The run ends at the first of: the epoch cap (``epochs``, or the epochs of ``max_steps`` optimizer steps), a
plateau (plateau schedule: ``patience`` epochs without a better validation force MAE at the smallest LR, after
halving the LR at each earlier plateau; other schedules: ``patience`` epochs without improvement), or the first
validation after ``time_budget`` is spent. A step is eager or compiled (``compiled.py``; ``config.compile``).
Validation comes every epoch from ~100 training structures; on fewer, every few epochs (about
``VAL_EVERY_STEPS`` steps), since an epoch of 5 steps costs less than its validation pass (a 20-structure MgO run
validated 6438 times in 29 minutes). Patience is then counted in validations.

A run folder holds ``checkpoint.pt`` (``state_dict()``, written by ``checkpoint.py`` at each validation, so a
killed run resumes exactly), ``metrics.csv`` and ``learning_curve.png`` (``metrics.py``) and ``config.yaml``. The
loss is ``loss.py``'s; validation is ``evaluation.py``'s; ``run.distill`` adds the test evaluation and the export.

Example
-------
>>> trainer = Trainer(DistillConfig(epochs=50), "labels.h5", "run")
>>> student = trainer.fit()  # the best-EMA student (by validation force MAE)
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..devices import resolve_device
from ..provenance import labels_fingerprint
from .checkpoint import load_checkpoint, save_checkpoint
from .compiled import CompiledStep
from .config import DistillConfig, parse_duration, write_config
from .data import build_graphs, check_hessian_rows, collate, element_types, load_splits, sample_row_slots
from .evaluation import evaluate
from .loss import batch_loss, fit_shift_and_scale, normalizers, slots_loss
from .metrics import plot_learning_curve, write_metrics
from ..errors import ConfigError, first_line
from ..label.store import store_teacher
from ..students import StudentBase, build_student

log = logging.getLogger("hessdistill.distill")

#: compile = auto compiles when the planned training time is at least this (the compile takes 1-5 CPU minutes)
AUTO_COMPILE_SECONDS = 600.0
#: patience = 0 means epochs of about this many optimizer steps, or AUTO_PATIENCE_EPOCHS epochs where that is more:
#: a fixed step count is fewer passes over a larger set (8 epochs at 540 structures), and the plateau rule then
#: halved the LR while the validation error was still falling (33-atom complex, 540 structures: 9.7% of the mean
#: |F| at the plateau after 15 min of training; with 24 epochs of patience, 8.1%)
AUTO_PATIENCE_STEPS = 1000
AUTO_PATIENCE_EPOCHS = 20
#: the validation Hessian MAE (a double backward per row: as costly as ~30 training steps on a 33-atom molecule,
#: and read by no stopping rule) is taken at the first validation and every this many; NaN in between
VAL_HESSIAN_EVERY = 10
#: val_every = 0 means a validation about every this many optimizer steps (every epoch from 50 steps per epoch)
VAL_EVERY_STEPS = 50


def auto_patience(steps_per_epoch: int) -> int:
    """The plateau patience (epochs) of patience = 0: ~AUTO_PATIENCE_STEPS steps, at least AUTO_PATIENCE_EPOCHS."""
    return max(AUTO_PATIENCE_EPOCHS, math.ceil(AUTO_PATIENCE_STEPS / steps_per_epoch))


class Trainer:
    """Owns one run folder; ``fit()`` trains (resuming from its checkpoint if there is one) and returns the
    best-EMA student.

    Builds the student for the elements of the label store ``labels``, its graphs per split (``graphs``), the
    loss normalizers (``norm``), EMA, optimizer and scheduler. ``loss(batch, rng)`` is the one hook a subclass
    overrides to train on another loss. Changes no process-wide setting (the initial
    weights come from ``config.seed`` inside ``torch.random.fork_rng``); for glibc's heap see
    :func:`hessdistill.heap.keep_freed_memory`.
    """

    def __init__(self, config: DistillConfig, labels: str | os.PathLike, run_dir: str | os.PathLike,
                 resume: bool = True, progress: bool = True, teacher_name: str = ""):
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        by_split = load_splits(labels)
        self.teacher_name = teacher_name or store_teacher(labels)
        if config.hessian_weight != 0:
            check_hessian_rows(by_split["train"], config.hessian_rows)
        every_item = [it for items in by_split.values() for it in items]
        type_names, zs = element_types(every_item)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights; the caller's RNG state is left as it was
            torch.manual_seed(config.seed)
            self.model = build_student(
                config.architecture, type_names=type_names, atomic_numbers=zs, cutoff=config.cutoff,
                features=config.features, num_interactions=config.num_interactions, num_basis=config.num_basis,
            ).to(device=self.device, dtype=self.dtype)
        self.graphs = {s: build_graphs(v, type_names, config.cutoff, self.dtype, self.device) for s, v in by_split.items()}
        fit_shift_and_scale(self.model, self.graphs["train"])
        self.norm = normalizers(self.graphs["train"], self.model)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
            if config.ema_decay > 0 else None
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters instead of ~30 small ops per tensor (optimizer step 5x faster on CPU)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=config.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        self.steps_per_epoch = math.ceil(len(self.graphs["train"]) / config.batch_size)
        self.time_budget = parse_duration(config.time_budget)
        # epoch cap: explicit; else from max_steps; none when a time budget (and the plateau rule) ends the run
        self.max_epochs = config.epochs or (
            None if self.time_budget else math.ceil(config.max_steps / self.steps_per_epoch))
        self.val_every = config.val_every or max(1, VAL_EVERY_STEPS // self.steps_per_epoch)
        # in validations: the plateau rule can only look at validated epochs
        self.patience = math.ceil((config.patience or auto_patience(self.steps_per_epoch)) / self.val_every)
        self.scheduler = self._make_scheduler()
        self.elapsed = 0.0  # seconds of training (fit), over all resumes: what time_budget counts
        self.compiled: bool | None = None  # the step mode once chosen; kept in the checkpoint
        self.step_fn: CompiledStep | None = None
        self.stop_reason = ""
        self.epoch = 0
        self.history: list[dict] = []
        self.best = math.inf
        self.best_state = None
        self.bad_validations = 0
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.resumed_from = None
        # the labels' content: a checkpoint records it, and a resume on other labels is refused
        self.labels_fingerprint = labels_fingerprint(every_item)
        if resume and self.checkpoint_path.exists():
            self.load_state_dict(load_checkpoint(self.checkpoint_path, self.config.to_dict(), self.labels_fingerprint,
                                                 self.device))

    def state_dict(self) -> dict:
        """All an exact resume needs: the config, the student's architecture and hyperparameters, model, EMA,
        optimizer and scheduler states, epoch, history (the rows of ``metrics.csv``), the best EMA weights and their
        validation force MAE, validations without improvement, the loss normalizers, the teacher's name, the labels' fingerprint, the
        training seconds spent (what ``time_budget`` counts) and the step mode (eager or compiled). Shuffling and
        Hessian-row sampling are seeded by (seed, epoch, batch) and need no state, so a resumed run repeats an
        uninterrupted one bit for bit."""
        return {
            "config": self.config.to_dict(),
            "architecture": self.model.architecture,
            "hyperparameters": self.model.hyperparameters(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best": self.best,
            "best_state": self.best_state,
            "bad_validations": self.bad_validations,
            "norm": self.norm,
            "teacher": self.teacher_name,
            "elapsed": self.elapsed,
            "compiled": self.compiled,
            "labels_fingerprint": self.labels_fingerprint,
        }

    def load_state_dict(self, state: dict) -> None:
        """Put a ``state_dict()`` of a trainer with the same settings back (``checkpoint.load_checkpoint`` checks
        them) and set ``resumed_from``."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.best, self.best_state, self.bad_validations = state["best"], state["best_state"], state["bad_validations"]
        self.norm = state["norm"]
        self.elapsed = state["elapsed"]
        # auto keeps the mode the run started in: eager and compiled steps round differently
        self.compiled = state["compiled"] if self.config.compile == "auto" else None
        self.resumed_from = self.epoch

    def _make_scheduler(self):
        c = self.config
        if c.lr_schedule == "cosine":
            t_max = self.max_epochs or math.ceil(c.max_steps / self.steps_per_epoch)
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=t_max, eta_min=c.lr * c.lr_min_factor)
        if c.lr_schedule == "plateau":
            # threshold 0: any better MAE counts; the patience window already absorbs noise
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=self.patience,
                                                              threshold=0.0, min_lr=c.lr * c.lr_min_factor)
        return torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)

    def loss(self, batch, rng: np.random.Generator) -> torch.Tensor:
        """One batch's loss (``loss.batch_loss``). A subclass may override it; it must draw its Hessian rows with
        ``rng`` (seeded by seed, epoch and batch) for resumed runs to repeat uninterrupted ones."""
        return batch_loss(self.model, batch, self.config, self.norm, rng)

    def _step(self, batch, rng) -> float:
        if self.step_fn is not None:
            slots = sample_row_slots(batch, self.config.hessian_rows, rng) if self.config.hessian_weight > 0 else None
            loss, grads = self.step_fn(batch, slots)
            for p, g in zip(self.parameters, grads):
                p.grad = g
        else:
            loss = self.loss(batch, rng)
            self.optimizer.zero_grad(set_to_none=True)
            # gradients for the parameters only: left to itself, backward also takes the loss's third derivative
            # with respect to the positions leaf, which nothing reads (11-18% of a Hessian-row step)
            loss.backward(inputs=self.parameters)
        if self.config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.config.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return float(loss.detach())

    def _eval_model(self):
        return self.ema.module if self.ema is not None else self.model

    def train_epoch(self) -> float:
        """One pass over the training graphs in a (seed, epoch)-seeded order; the mean batch loss."""
        c = self.config
        train = self.graphs["train"]
        order = np.random.default_rng([c.seed, self.epoch]).permutation(len(train))
        losses = []
        self.model.train()
        for b, start in enumerate(range(0, len(train), c.batch_size)):
            batch = collate([train[k] for k in order[start : start + c.batch_size]])
            losses.append(self._step(batch, np.random.default_rng([c.seed, self.epoch, b])))
        return float(np.mean(losses))

    def _epochs_to_validation(self) -> int:
        """Epochs to train before the next validation: ``val_every``, or fewer to end at the epoch cap."""
        if self.max_epochs is None:
            return self.val_every
        return max(1, min(self.val_every, self.max_epochs - self.epoch))

    def _stop(self) -> str:
        """Why training ends now ('' : it goes on)."""
        if self.max_epochs is not None and self.epoch >= self.max_epochs:
            return "epochs"
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            at_min = self.optimizer.param_groups[0]["lr"] <= self.scheduler.min_lrs[0] * (1 + 1e-9)
            if at_min and self.scheduler.num_bad_epochs >= self.patience:
                return "plateau"
        elif self.bad_validations >= self.patience:
            return "plateau"
        if self.time_budget is not None and self.elapsed >= self.time_budget:
            return "time budget"
        return ""

    def _choose_step(self) -> None:
        """Set the step mode (``self.compiled``; kept from the checkpoint on resume) and build the compiled step:
        its first call compiles, and its loss and gradients must match an eager step's on the first batch."""
        c = self.config
        # a subclass's own loss: only the eager step computes it; batches of one structure run eagerly anyway
        if type(self).loss is not Trainer.loss or c.batch_size == 1:
            self.compiled = False
        if self.compiled is None:
            if c.compile == "auto":
                self.compiled = self._planned_seconds() >= AUTO_COMPILE_SECONDS
            else:
                self.compiled = c.compile == "on"
        if not self.compiled:
            return
        t0 = time.perf_counter()
        try:
            self.step_fn = CompiledStep(self.model, c, self.norm)
            self._check_compiled(self.step_fn)
        except Exception as exc:  # tracing and compiler failures arrive as many exception types
            self.step_fn = None
            if c.compile == "on":
                raise ConfigError(
                    f"compiled training failed ({first_line(exc, named=True)}); use --compile off") from exc
            self.compiled = False
            log.warning("compiled training failed (%s); training eagerly", first_line(exc, named=True))
            return
        log.info("compiled the training step in %.0f s", time.perf_counter() - t0)

    def _probe_batch(self):
        train = self.graphs["train"]
        batch = collate(train[: self.config.batch_size])
        rng = np.random.default_rng([self.config.seed, 2**32 - 1])  # no epoch has this seed: training draws stay
        slots = sample_row_slots(batch, self.config.hessian_rows, rng) if self.config.hessian_weight > 0 else None
        return batch, slots

    def _eager_loss_and_grads(self, batch, slots):
        loss = slots_loss(self.model, batch, self.config, self.norm, slots)
        return loss, torch.autograd.grad(loss, self.parameters, allow_unused=True)

    def _planned_seconds(self) -> float:
        """The time budget, else eager seconds per step (timed on one batch) x the steps left to the epoch cap."""
        if self.time_budget is not None:
            return self.time_budget - self.elapsed
        batch, slots = self._probe_batch()
        self._eager_loss_and_grads(batch, slots)  # warm-up
        t0 = time.perf_counter()
        self._eager_loss_and_grads(batch, slots)
        return (time.perf_counter() - t0) * self.steps_per_epoch * (self.max_epochs - self.epoch)

    def _check_compiled(self, step: CompiledStep) -> None:
        batch, slots = self._probe_batch()
        loss, grads = step(batch, slots)
        ref_loss, ref_grads = self._eager_loss_and_grads(batch, slots)
        tol = 10 * torch.finfo(self.dtype).eps ** 0.5  # rounding of reordered arithmetic, not a wrong graph
        for got, ref in zip([loss, *grads], [ref_loss.detach(), *ref_grads]):
            if (got is None) != (ref is None) or (ref is not None and float((got - ref).norm()) > tol * float(ref.norm())):
                raise RuntimeError("the compiled step's loss or gradients differ from the eager step's")

    def fit(self) -> StudentBase:
        """Train until the epoch cap, a plateau or the time budget (module docstring); the best-EMA student."""
        from ..progress import progress_bar

        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.run_dir / "config.yaml", c)
        t_start = time.perf_counter()
        self._choose_step()
        self.elapsed += time.perf_counter() - t_start
        bar = progress_bar(self.max_epochs, "distill" if c.hessian_weight else "baseline", unit="epoch",
                           enabled=self.progress, initial=self.epoch)
        plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        while not (reason := self._stop()):
            t0 = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            losses = []
            for _ in range(self._epochs_to_validation()):
                losses.append(self.train_epoch())
                self.epoch += 1
                if not plateau:
                    self.scheduler.step()
                bar.update(1)
            loss = float(np.mean(losses))
            hessian_now = len(self.history) % VAL_HESSIAN_EVERY == 0
            val = evaluate(self._eval_model(), self.graphs["val"], c.val_hessian_rows if hessian_now else 0)
            if plateau:
                self.scheduler.step(val["force_mae"])
            if val["force_mae"] < self.best:
                self.best, self.bad_validations = val["force_mae"], 0
                self.best_state = {k: v.detach().clone() for k, v in self._eval_model().state_dict().items()}
            else:
                self.bad_validations += 1
            self.history.append({
                "epoch": self.epoch, "lr": lr, "train_loss": loss, "val_energy_mae": val["energy_mae"],
                "val_force_mae": val["force_mae"], "val_hessian_mae": val["hessian_mae"],
                "seconds": time.perf_counter() - t0, "val_stress_mae": val["stress_mae"],
            })
            self.elapsed += time.perf_counter() - t0
            save_checkpoint(self.state_dict(), self.checkpoint_path)
            write_metrics(self.history, self.run_dir / "metrics.csv")
            bar.set_postfix(loss=f"{loss:.3g}", F_mae=f"{val['force_mae']:.4f}")
        bar.close()
        self.stop_reason = reason
        plot_learning_curve(self.run_dir / "metrics.csv", self.run_dir / "learning_curve.png")
        return self.best_model()

    def best_model(self) -> StudentBase:
        """A fresh student holding the best-EMA weights so far (the current EMA weights before any epoch)."""
        model = build_student(self.model.architecture, **self.model.hyperparameters()).to(self.device, self.dtype)
        model.load_state_dict(self.best_state if self.best_state is not None else self._eval_model().state_dict())
        return model.eval()
