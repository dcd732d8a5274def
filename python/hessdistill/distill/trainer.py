"""Distillation: train a student on teacher energies, forces and sampled Hessian rows.

loss = wE * MSE(E/N) / var(E/N) + wF * MSE(F) / <F^2> + wH * MSE(H rows) / <H^2>, with ``s`` Hessian rows per
structure and step drawn uniformly without replacement from the stored rows, the student's rows coming from
vector-Jacobian products of its forces (``hessian.hessian_rows``). wH = 0 is the undistilled baseline.

A run folder holds ``checkpoint.pt`` (written atomically every epoch: model, EMA, optimizer, scheduler, history;
shuffling and row sampling are seeded by (seed, epoch, batch), so a resumed run repeats an uninterrupted one
exactly), ``metrics.csv``, ``learning_curve.png``, ``config.yaml`` and, at the end, the best EMA weights.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import DistillConfig, write_config
from .data import Graph, build_graphs, collate, sample_row_slots
from ..errors import ConfigError, InputError
from .hessian import energy_gradient, hessian_rows
from ..heap import keep_freed_memory
from ..label.store import load_labels
from ..students import StudentBase, build_student

METRIC_COLUMNS = ("epoch", "lr", "train_loss", "val_energy_mae", "val_force_mae", "val_hessian_mae", "seconds")
#: Options that may differ between a checkpoint and the config of the run that resumes it.
RESUMABLE_CHANGES = {"epochs", "patience", "device"}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but no CUDA device is available")
    return torch.device(name)


def _type_names(items) -> tuple[list[str], list[int]]:
    from ase.data import chemical_symbols

    zs = sorted({int(z) for it in items for z in it.numbers})
    return [chemical_symbols[z] for z in zs], zs


def _fit_shift_and_scale(model: StudentBase, graphs: list[Graph]) -> None:
    """Per-element reference energies by least squares on the training energies; scale = RMS force."""
    counts = np.zeros((len(graphs), len(model.type_names)))
    for k, g in enumerate(graphs):
        counts[k] = np.bincount(g.species.cpu().numpy(), minlength=len(model.type_names))
    energies = np.array([g.energy for g in graphs])
    shift = np.linalg.lstsq(counts, energies, rcond=None)[0]
    rms_f = float(torch.sqrt(torch.mean(torch.cat([g.forces.reshape(-1) for g in graphs]) ** 2)))
    with torch.no_grad():
        model.shift.copy_(torch.as_tensor(shift, dtype=model.shift.dtype))
        model.scale.fill_(max(rms_f, 1e-3))


def _normalizers(graphs: list[Graph], model: StudentBase) -> dict:
    """Variance of energy per atom (after the element fit), mean squared force and Hessian element."""
    with torch.no_grad():
        resid = [
            (g.energy - float(model.shift[g.species].sum())) / g.n_atoms for g in graphs
        ]
    var_e = float(np.var(resid)) if len(resid) > 1 else 1.0
    f2 = float(torch.mean(torch.cat([g.forces.reshape(-1) for g in graphs]) ** 2))
    h = [g.hessian.reshape(-1) for g in graphs if g.hessian.numel()]
    h2 = float(torch.mean(torch.cat(h) ** 2)) if h else 1.0
    return {"energy": max(var_e, 1e-8), "forces": max(f2, 1e-8), "hessian": max(h2, 1e-8)}


def predict(model, batch, create_graph: bool):
    """Per-structure energies, energy gradient (with graph if asked) and the leaf positions."""
    pos = batch.positions.detach().clone().requires_grad_(True)
    atomic = model(pos, batch.species, batch.edge_index, batch.shifts)
    energy = torch.zeros(len(batch.graphs), dtype=atomic.dtype, device=atomic.device).index_add(
        0, batch.batch, atomic
    )
    if create_graph:
        grad = energy_gradient(energy, pos)
    else:
        grad = torch.autograd.grad(energy.sum(), pos)[0]
    return energy, grad, pos


def evaluate(model, graphs: list[Graph], hessian_rows_per_structure: int = 6, batch_size: int = 16) -> dict:
    """MAE of energy (eV/structure and eV/atom), forces (eV/A) and Hessian rows (eV/A^2) against the labels.

    The Hessian MAE uses the first ``hessian_rows_per_structure`` stored rows of each structure (a fixed set).
    """
    e_err, e_err_atom, f_err, h_err = [], [], [], []
    for start in range(0, len(graphs), batch_size):
        batch = collate(graphs[start : start + batch_size])
        want_h = hessian_rows_per_structure > 0 and all(len(g.hessian_rows) for g in batch.graphs)
        energy, grad, pos = predict(model, batch, create_graph=want_h)
        e_err.append((energy - batch.energy).abs().detach())
        e_err_atom.append(((energy - batch.energy).abs() / batch.n_atoms).detach())
        f_err.append((-grad - batch.forces).abs().reshape(-1).detach())
        if want_h:
            s = min(hessian_rows_per_structure, min(len(g.hessian_rows) for g in batch.graphs))
            coords = torch.tensor(
                [[3 * o + int(g.hessian_rows[j]) for g, o in zip(batch.graphs, batch.offsets)] for j in range(s)],
                device=pos.device,
            )
            rows = hessian_rows(grad, pos, coords, create_graph=False).reshape(s, -1)
            teacher = torch.zeros_like(rows)
            for b, (g, o) in enumerate(zip(batch.graphs, batch.offsets)):
                teacher[:, 3 * o : 3 * (o + g.n_atoms)] = g.hessian[:s]
            h_err.append((rows - teacher).abs().reshape(-1).detach())
    out = {
        "energy_mae": float(torch.cat(e_err).mean()),
        "energy_mae_per_atom": float(torch.cat(e_err_atom).mean()),
        "force_mae": float(torch.cat(f_err).mean()),
        "hessian_mae": float(torch.cat(h_err).mean()) if h_err else float("nan"),
    }
    return out


class Trainer:
    """Owns one run folder; ``fit()`` trains (resuming from its checkpoint if there is one) and returns the
    best-EMA student."""

    def __init__(self, config: DistillConfig, labels: str | os.PathLike, run_dir: str | os.PathLike,
                 resume: bool = True, progress: bool = True, teacher_name: str = ""):
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.device = resolve_device(config.device)
        self.dtype = getattr(torch, config.dtype)
        keep_freed_memory()  # page faults otherwise cost up to 1.4x per Hessian-row step (heap.py)
        items = load_labels(labels)
        self.teacher_name = teacher_name or _store_teacher(labels)
        by_split = {s: [it for it in items if it.split == s] for s in ("train", "val", "test")}
        if not by_split["train"]:
            raise InputError(f"label store {labels} holds no training structures")
        if not by_split["val"]:
            raise InputError(f"label store {labels} holds no validation structures (split 'val')")
        self._check_rows(by_split["train"])
        type_names, zs = _type_names(items)
        torch.manual_seed(config.seed)
        self.model = build_student(
            config.architecture, type_names=type_names, atomic_numbers=zs, cutoff=config.cutoff,
            features=config.features, num_interactions=config.num_interactions, num_basis=config.num_basis,
        ).to(device=self.device, dtype=self.dtype)
        self.graphs = {s: build_graphs(v, type_names, config.cutoff, self.dtype, self.device) for s, v in by_split.items()}
        _fit_shift_and_scale(self.model, self.graphs["train"])
        self.norm = _normalizers(self.graphs["train"], self.model)
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
            if config.ema_decay > 0 else None
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        # fused: one kernel for all parameters instead of ~30 small ops per tensor (optimizer step 5x faster on CPU)
        self.optimizer = torch.optim.AdamW(self.parameters, lr=config.lr, weight_decay=config.weight_decay,
                                           fused=self.device.type in ("cpu", "cuda"))
        self.scheduler = self._make_scheduler()
        self.epoch = 0
        self.history: list[dict] = []
        self.best = math.inf
        self.best_state = None
        self.bad_epochs = 0
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.resumed_from = None
        if resume and self.checkpoint_path.exists():
            self._load_checkpoint()

    def _check_rows(self, items) -> None:
        s = self.config.hessian_rows
        if self.config.hessian_weight == 0:
            return
        for it in items:
            n3 = 3 * len(it.numbers)
            if s > n3:
                raise InputError(f"hessian_rows s = {s} is larger than 3N = {n3} of structure #{it.index}")
            if s > len(it.hessian_rows):
                raise InputError(
                    f"hessian_rows s = {s} but structure #{it.index} has only {len(it.hessian_rows)} stored Hessian "
                    "rows; label with more rows or lower s"
                )

    def _make_scheduler(self):
        c = self.config
        if c.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=c.epochs, eta_min=c.lr * c.lr_min_factor)
        if c.lr_schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=max(2, c.patience // 4))
        return torch.optim.lr_scheduler.ConstantLR(self.optimizer, factor=1.0, total_iters=0)

    # -- checkpoints -------------------------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "hyperparameters": self.model.hyperparameters(),
            "architecture": self.model.architecture,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
            "best": self.best,
            "best_state": self.best_state,
            "bad_epochs": self.bad_epochs,
            "norm": self.norm,
            "teacher": self.teacher_name,
            "torch_rng": torch.get_rng_state(),
        }

    def _save_checkpoint(self) -> None:
        tmp = self.checkpoint_path.with_suffix(".pt.tmp")
        torch.save(self._state(), tmp)
        os.replace(tmp, self.checkpoint_path)

    def _load_checkpoint(self) -> None:
        try:
            state = torch.load(self.checkpoint_path, map_location=self.device, weights_only=False)
        except Exception as exc:
            raise InputError(f"cannot read checkpoint {self.checkpoint_path}: {exc}; delete it to start over") from None
        old = state["config"]
        diff = sorted(k for k, v in self.config.to_dict().items() if old.get(k) != v and k not in RESUMABLE_CHANGES)
        if diff:
            raise ConfigError(
                f"{self.checkpoint_path} was written with other settings ({', '.join(diff)}); use another run folder "
                "or --no-resume"
            )
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.history = state["epoch"], state["history"]
        self.best, self.best_state, self.bad_epochs = state["best"], state["best_state"], state["bad_epochs"]
        self.norm = state["norm"]
        torch.set_rng_state(state["torch_rng"])
        self.resumed_from = self.epoch

    # -- training ----------------------------------------------------------------------------------------
    def _energy_force_loss(self, energy, grad, batch) -> torch.Tensor:
        c = self.config
        n = batch.n_atoms.to(energy.dtype)
        loss = c.energy_weight * torch.mean(((energy - batch.energy) / n) ** 2) / self.norm["energy"]
        return loss + c.force_weight * torch.mean((grad + batch.forces) ** 2) / self.norm["forces"]

    def _loss(self, batch, rng) -> torch.Tensor:
        """One batch's loss: energies, forces and, with wH > 0, s sampled Hessian rows per structure."""
        c = self.config
        energy, grad, pos = predict(self.model, batch, create_graph=True)
        loss = self._energy_force_loss(energy, grad, batch)
        if c.hessian_weight > 0:
            coords, teacher = sample_row_slots(batch, c.hessian_rows, rng)
            rows = hessian_rows(grad, pos, coords).reshape(c.hessian_rows, -1)
            loss = loss + c.hessian_weight * torch.mean((rows - teacher) ** 2) / self.norm["hessian"]
        return loss

    def _step(self, batch, rng) -> float:
        loss = self._loss(batch, rng)
        self.optimizer.zero_grad(set_to_none=True)
        # gradients for the parameters only: left to itself, backward also takes the loss's third derivative with
        # respect to the positions leaf, which nothing reads (11-18% of a Hessian-row step)
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
        c = self.config
        train = self.graphs["train"]
        order = np.random.default_rng([c.seed, self.epoch]).permutation(len(train))
        losses = []
        self.model.train()
        for b, start in enumerate(range(0, len(train), c.batch_size)):
            batch = collate([train[k] for k in order[start : start + c.batch_size]])
            losses.append(self._step(batch, np.random.default_rng([c.seed, self.epoch, b])))
        return float(np.mean(losses))

    def fit(self) -> StudentBase:
        from tqdm import tqdm

        c = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.run_dir / "config.yaml", c)
        bar = tqdm(total=c.epochs, initial=self.epoch, desc="distill" if c.hessian_weight else "baseline",
                   disable=not self.progress, unit="epoch")
        while self.epoch < c.epochs and self.bad_epochs < c.patience:
            t0 = time.perf_counter()
            loss = self.train_epoch()
            val = evaluate(self._eval_model(), self.graphs["val"], c.val_hessian_rows)
            lr = self.optimizer.param_groups[0]["lr"]
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val["force_mae"])
            else:
                self.scheduler.step()
            self.epoch += 1
            if val["force_mae"] < self.best:
                self.best, self.bad_epochs = val["force_mae"], 0
                self.best_state = {k: v.detach().clone() for k, v in self._eval_model().state_dict().items()}
            else:
                self.bad_epochs += 1
            self.history.append({
                "epoch": self.epoch, "lr": lr, "train_loss": loss, "val_energy_mae": val["energy_mae"],
                "val_force_mae": val["force_mae"], "val_hessian_mae": val["hessian_mae"],
                "seconds": time.perf_counter() - t0,
            })
            self._save_checkpoint()
            self._write_metrics()
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3g}", F_mae=f"{val['force_mae']:.4f}")
        bar.close()
        plot_learning_curve(self.run_dir / "metrics.csv", self.run_dir / "learning_curve.png")
        return self.best_model()

    def best_model(self) -> StudentBase:
        model = build_student(self.model.architecture, **self.model.hyperparameters()).to(self.device, self.dtype)
        model.load_state_dict(self.best_state if self.best_state is not None else self._eval_model().state_dict())
        return model.eval()

    def _write_metrics(self) -> None:
        # Rewritten whole from the history, so a resumed run never holds rows of epochs it redid.
        tmp = self.run_dir / "metrics.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS)
            w.writeheader()
            w.writerows(self.history)
        os.replace(tmp, self.run_dir / "metrics.csv")


def _store_teacher(labels) -> str:
    import h5py

    with h5py.File(labels, "r") as f:
        return str(f.attrs.get("teacher", ""))


def plot_learning_curve(metrics_csv, png) -> None:
    """Training loss and validation energy/force/Hessian MAE against epoch (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    ep = [int(r["epoch"]) for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, key, label in zip(
        axes,
        ("train_loss", "val_energy_mae", "val_force_mae", "val_hessian_mae"),
        ("train loss", "val energy MAE (eV)", "val force MAE (eV/A)", "val Hessian MAE (eV/A^2)"),
    ):
        vals = [float(r[key]) for r in rows]
        ax.plot(ep, vals)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def distill(config: DistillConfig, labels, run_dir, resume: bool = True, progress: bool = True) -> dict:
    """Train, evaluate on the test split, export ``student.pt``; returns a summary (also ``summary.json``)."""
    from ..formats.torchscript import export_student

    trainer = Trainer(config, labels, run_dir, resume=resume, progress=progress)
    model = trainer.fit()
    test = trainer.graphs["test"] or trainer.graphs["val"]
    metrics = evaluate(model, test, config.val_hessian_rows)
    path = export_student(model, Path(run_dir) / "student.pt", dtype=config.export_dtype, teacher=trainer.teacher_name)
    summary = {
        "student": str(path),
        "epochs": trainer.epoch,
        "resumed_from_epoch": trainer.resumed_from,
        "test_split": "test" if trainer.graphs["test"] else "val",
        "test": metrics,
        "parameters": sum(p.numel() for p in model.parameters()),
        "config": config.to_dict(),
    }
    (Path(run_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def model_from_checkpoint(path) -> tuple[StudentBase, dict]:
    """The best-EMA student stored in a run's checkpoint, and the checkpoint dict."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise InputError(f"checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(f"cannot read checkpoint {p}: {exc}") from None
    model = build_student(state["architecture"], **state["hyperparameters"])
    weights = state["best_state"] or state["model"]
    model = model.to(next(iter(weights.values())).dtype)
    model.load_state_dict(weights)
    return model.eval(), state
