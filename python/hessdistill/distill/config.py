"""Distillation settings: a dataclass whose defaults are documented, loaded from YAML, overridden by CLI flags.

``hessdistill distill --write-config distill.yaml`` writes these defaults, with their comments, to start from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..dtypes import DTYPES
from ..errors import ConfigError, first_line
from ..paths import atomic_write_text
from ..students import ARCHITECTURES

# name -> help text; also the comments of the written YAML file.
HELP = {
    "architecture": "student architecture: painn (equivariant, the paper's student), schnet (smaller, faster) or "
                    "tensornet (rank-2 Cartesian tensors; 2-3x PaiNN's cost per call)",
    "features": "feature width of the student",
    "num_interactions": "message-passing layers (interaction range = num_interactions x cutoff); 1: a strictly "
                        "local student, whose LAMMPS ranks each evaluate only their atoms x neighbours",
    "num_basis": "radial basis functions",
    "cutoff": "radial cutoff in Angstrom",
    "energy_weight": "wE: weight of the energy-per-atom MSE (each term is divided by its training-set variance)",
    "force_weight": "wF: weight of the force MSE",
    "hessian_weight": "wH: weight of the Hessian-row MSE; 0 trains the undistilled baseline",
    "stress_weight": "wS: weight of the stress MSE (Voigt components, eV/A^3) over structures with a stress label "
                     "(periodic cells of teachers with stress); the student's stress is its strain derivative; 0: off",
    "net_force_weight": "wNF: weight of the MSE of each molecule's net force (the intermolecular part of the "
                        "forces; molecules from the covalent bond graph) over structures of several molecules, single atoms and "
                        "cell-spanning networks left out; 0: off",
    "net_torque_weight": "wNT: weight of the MSE of each molecule's net torque about its centre of mass, as "
                         "net_force_weight; 0: off",
    "hessian_rows": "s: Hessian rows (or probes, of a store labelled with random probes) sampled per structure per "
                    "step (uniform, without replacement over the stored ones)",
    "hessian_probe_weighting": "none: the Hessian term is the plain MSE of H v (Cartesian rows or probes); "
                               "curvature: each probe's squared error divided by the teacher's curvature v.Hv "
                               "squared (floored at 1% of the median absolute v.Hv over the training probes), so "
                               "that soft directions count like stiff ones",
    "batch_size": "structures per optimizer step",
    "epochs": "maximum epochs; 0: from max_steps (none with a time_budget: the plateau rule or the budget ends it)",
    "max_steps": "optimizer steps that set the epoch cap when epochs is 0 (the cap adapts to the data size)",
    "time_budget": "wall-time budget of the training, e.g. 90s, 30m, 2h ('' : none); the epoch that crosses it "
                   "is finished, the best weights kept; counted across resumes",
    "lr": "peak AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "lr_schedule": "plateau (halve the LR after patience epochs without a better val force MAE; stop at a "
                   "plateau at the smallest LR), cosine (to lr*lr_min_factor at the epoch cap), constant",
    "lr_min_factor": "smallest learning rate as a fraction of lr (plateau: about 6 halvings; cosine: final LR)",
    "ema_decay": "decay of the exponential moving average of weights used for validation and export (0: off)",
    "grad_clip": "clip the gradient norm to this value (0: off)",
    "patience": "epochs without a better validation force MAE before the plateau schedule halves the LR (at the "
                "smallest LR: before training stops; other schedules: stop); 0: epochs of about 1000 steps, >= 20; "
                "counted in validations (rounded up) when val_every > 1",
    "val_every": "epochs between validations (and checkpoints, metrics rows); 0: about every 50 optimizer steps, "
                 "i.e. every epoch from 100 training structures at batch size 4",
    "seed": "seed of initialization, shuffling and row sampling",
    "dtype": "training dtype: float32 or float64",
    "export_dtype": "dtype of the exported TorchScript student: float32 or float64",
    "device": "auto (cuda when present, else cpu), cpu or cuda",
    "val_hessian_rows": "Hessian rows per validation structure used for the Hessian MAE (taken at the first validation and every 10th)",
    "compile": "compiled training step (loss and gradients traced and compiled; 3-5x faster steps after a 1-5 "
               "minute compile): on, off, or auto (on when the planned training time is at least 10 minutes; "
               "eager, with one warning, where the compile fails)",
}


@dataclass
class DistillConfig:
    architecture: str = "painn"
    features: int = 32
    num_interactions: int = 2
    num_basis: int = 16
    cutoff: float = 5.0
    energy_weight: float = 1.0
    force_weight: float = 10.0
    # 100: the lowest force and Hessian errors of 10, 30, 100 on every benchmark system; see docs/design/training.md
    hessian_weight: float = 100.0
    # 10: a few-fold smaller pressure error at an unchanged force error; see docs/design/training.md
    stress_weight: float = 10.0
    # 10: molecules' net force and torque errors 2.4x smaller on a molecular complex, inactive on one molecule or a
    # crystal; see docs/design/training.md
    net_force_weight: float = 10.0
    net_torque_weight: float = 10.0
    hessian_rows: int = 1
    hessian_probe_weighting: str = "none"
    batch_size: int = 4
    # Run length: the plateau rule ends a run; the step cap only guards against one that never plateaus
    # (see docs/design/training.md)
    epochs: int = 0
    max_steps: int = 100000
    time_budget: str = ""
    lr: float = 3e-3
    weight_decay: float = 0.0
    lr_schedule: str = "plateau"
    lr_min_factor: float = 0.02
    ema_decay: float = 0.99
    grad_clip: float = 10.0
    patience: int = 0
    val_every: int = 0
    seed: int = 0
    dtype: str = "float32"
    export_dtype: str = "float64"
    device: str = "auto"
    val_hessian_rows: int = 6
    compile: str = "auto"

    def validate(self) -> "DistillConfig":
        choices = {
            "architecture": tuple(ARCHITECTURES),
            "lr_schedule": ("cosine", "plateau", "constant"),
            "dtype": tuple(DTYPES),
            "export_dtype": tuple(DTYPES),
            "device": ("auto", "cpu", "cuda"),
            "compile": ("auto", "on", "off"),
            "hessian_probe_weighting": ("none", "curvature"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("features", "num_interactions", "num_basis", "hessian_rows", "batch_size", "max_steps"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "patience", "val_every"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be >= 0 (0: automatic), got {getattr(self, name)}")
        parse_duration(self.time_budget)
        for name in ("energy_weight", "force_weight", "hessian_weight", "stress_weight", "net_force_weight",
                     "net_torque_weight", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cutoff <= 0 or self.lr <= 0:
            raise ConfigError("cutoff and lr must be positive")
        return self

    def replace(self, **changes) -> "DistillConfig":
        return dataclasses.replace(self, **changes).validate()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float | None:
    """Seconds of a duration like ``90s``, ``30m``, ``1.5h`` or ``2d`` (a bare number is seconds); None for ''.

    >>> parse_duration("30m")
    1800.0
    """
    t = str(text).strip().lower()
    if not t:
        return None
    unit = t[-1] if t[-1] in _SECONDS else "s"
    try:
        value = float(t[:-1] if t[-1] in _SECONDS else t)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"time_budget must be a positive duration like 90s, 30m or 2h, got {text!r}")
    return value * _SECONDS[unit]


def load_config(path: str | Path | None = None, **overrides) -> DistillConfig:
    """Defaults, then the YAML file (if given), then ``overrides`` whose value is not None."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} " + ("is not a file" if p.exists() else "does not exist"))
        try:
            values = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1})" if where is not None else ""
            problem = getattr(exc, "problem", None) or first_line(exc)
            raise ConfigError(f"config file {p} is not valid YAML{at}: {problem}") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"config file {p} must hold a mapping of option: value")
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name: f for f in dataclasses.fields(DistillConfig)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    typed = {}
    for k, v in values.items():
        kind = type(known[k].default)
        try:
            typed[k] = kind(v)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"option {k} must be {kind.__name__}, got {v!r}") from exc
    return DistillConfig(**typed).validate()


def write_config(path: str | Path, config: DistillConfig | None = None) -> None:
    """Write a YAML file with every option, its value and its meaning."""
    config = config or DistillConfig()
    lines = ["# hessdistill distillation settings (hessdistill distill --config FILE); CLI flags override."]
    for k, v in config.to_dict().items():
        lines.append(f"# {HELP[k]}")
        lines.append(yaml.safe_dump({k: v}, default_flow_style=False).strip())
    atomic_write_text(path, "\n".join(lines) + "\n")
