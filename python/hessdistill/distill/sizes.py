"""A size ladder: students of several sizes trained on the same labels, each size's validation errors beside its
cost per atom-step, and the size to use recommended.

A size is ``FxL`` (features x message-passing layers), optionally followed by ``bB`` (radial basis functions)
and ``@C`` (cutoff, A): ``16x2``, ``64x3``, ``64x3b32@6``; parts left out keep the config's values. Each size
trains into ``RUN/sizes/<spec>/``, an ordinary run folder (the config with that size: same seed, labels and
settings; the ladder's per-size time budget, if given), so the chosen size can be trained further there with
``hessdistill distill`` (:func:`continue_command`). ``RUN/sizes/ladder.json`` holds the table and
``RUN/sizes/ladder.png`` plots validation force error against cost.

Cost: the exported TorchScript student's energy + forces call (neighbour list excluded) on the validation
structure with the most atoms (a periodic cell repeated to at least :data:`COST_ATOMS` atoms), in CPU process
time, median of :data:`COST_REPEATS` repeats, at the caller's torch thread count (recorded); divided by the atoms
it is the cost per atom-step. With ``pt2=True`` each size is also exported as ``student.pt2`` and timed the same
way (one compile per size: minutes on a CPU).

Recommendation: the cheapest size (by TorchScript cost per atom-step) whose validation force MAE is at most
``1 + tolerance`` times the best size's. ``still_falling`` says the best size is the costliest one: a larger size
may be better still.

Example
-------
>>> ladder = size_ladder(DistillConfig(), "labels.h5", "run", parse_sizes("16x2,32x2,64x3"), time_budget="5m")
>>> ladder["recommended"], [(r["spec"], r["val"]["force_mae"], r["cost"]["us_per_atom"]) for r in ladder["sizes"]]
"""

from __future__ import annotations

import json
import math
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..paths import atomic_write_text
from .config import DistillConfig, parse_duration
from .evaluation import evaluate
from .run import train_student

LADDER_DIR = "sizes"
LADDER_FILE = "ladder.json"
#: periodic cells are repeated to at least this many atoms for the cost: per-atom cost of a small cell is mostly
#: the call's fixed overhead
COST_ATOMS = 256
COST_REPEATS = 7
#: each timed repeat runs the call often enough to last at least this much CPU time
COST_MIN_SECONDS = 0.01

_SPEC = re.compile(r"(\d+)x(\d+)(?:b(\d+))?(?:@(\d+(?:\.\d*)?|\.\d+))?")


@dataclass(frozen=True)
class Size:
    features: int
    num_interactions: int
    num_basis: int | None = None  # None: the config's
    cutoff: float | None = None  # None: the config's

    @property
    def spec(self) -> str:
        """The canonical spec, also the size's folder name: ``64x3``, ``64x3b32@6``."""
        text = f"{self.features}x{self.num_interactions}"
        if self.num_basis is not None:
            text += f"b{self.num_basis}"
        if self.cutoff is not None:
            text += f"@{self.cutoff:g}"
        return text

    def apply(self, config: DistillConfig) -> DistillConfig:
        changes = {"features": self.features, "num_interactions": self.num_interactions}
        if self.num_basis is not None:
            changes["num_basis"] = self.num_basis
        if self.cutoff is not None:
            changes["cutoff"] = self.cutoff
        return config.replace(**changes)


def parse_size(text: str) -> Size:
    """A :class:`Size` from ``FxL[bB][@C]`` (features, layers, radial basis functions, cutoff in A).

    >>> parse_size("64x3@6.0").spec
    '64x3@6'
    """
    m = _SPEC.fullmatch(str(text).strip())
    if m is None:
        raise ConfigError(f"a student size is FEATURESxLAYERS[bBASIS][@CUTOFF] (32x2, 64x3b32@6), got {text!r}")
    features, layers = int(m[1]), int(m[2])
    basis = int(m[3]) if m[3] is not None else None
    cutoff = float(m[4]) if m[4] is not None else None
    if features < 1 or layers < 1 or (basis is not None and basis < 1) or (cutoff is not None and cutoff <= 0):
        raise ConfigError(f"a student size needs features, layers and basis >= 1 and a cutoff > 0, got {text!r}")
    return Size(features, layers, basis, cutoff)


def parse_sizes(text: str) -> list[Size]:
    """Sizes from a comma list (``16x2,32x2,64x3``); a size given twice is refused (they share a folder)."""
    sizes = [parse_size(t) for t in str(text).split(",")]
    specs = [s.spec for s in sizes]
    twice = sorted({s for s in specs if specs.count(s) > 1})
    if twice:
        raise ConfigError(f"student size {twice[0]} is given twice in {text!r}")
    return sizes


def ladder_dir(run_dir) -> Path:
    return Path(run_dir) / LADDER_DIR


def size_ladder(config: DistillConfig, labels, run_dir, sizes: list[Size], time_budget: str = "",
                tolerance: float = 0.1, pt2: bool = False, resume: bool = True, progress: bool = True) -> dict:
    """Train one student per size (module docstring), evaluate each on the validation split, time it, recommend
    a size; returns the table (also ``RUN/sizes/ladder.json``, plotted in ``ladder.png``).

    ``time_budget`` (``90s``, ``5m``; '' : the config's) is each size's training budget. Rows, in the order given:
    ``spec``, the size's options, ``parameters``, ``epochs``, ``stop_reason``, ``train_seconds``, ``val`` (the
    :func:`~.evaluation.evaluate` errors of the best student on the validation split, plus ``force_mae_relative``:
    force MAE / mean |F| component of the validation labels), ``cost`` and ``run_dir``, ``student``.
    """
    if not sizes:
        raise ConfigError("a size ladder needs at least one size")
    if not tolerance >= 0:
        raise ConfigError(f"the ladder's tolerance must be >= 0, got {tolerance}")
    if time_budget:
        parse_duration(time_budget)
    structure = cost_structure(labels)
    rows = []
    for size in sizes:
        cfg = size.apply(config)
        if time_budget:
            cfg = cfg.replace(time_budget=time_budget)
        out = ladder_dir(run_dir) / size.spec
        summary, trainer, model = train_student(cfg, labels, out, resume=resume, progress=progress)
        val_graphs = trainer.graphs["val"]
        val = evaluate(model, val_graphs, cfg.val_hessian_rows)
        mean_force = float(torch.cat([g.forces.abs().reshape(-1) for g in val_graphs]).mean())
        val["force_mae_relative"] = val["force_mae"] / mean_force if mean_force > 0 else float("nan")
        cost = {"torchscript": time_student(summary["student"], structure)}
        if pt2:
            from ..formats import save_student

            package = save_student(model, out / "student.pt2", dtype=cfg.export_dtype, teacher=trainer.teacher_name)
            cost["pt2"] = time_student(package, structure)
        rows.append({
            "spec": size.spec, "features": cfg.features, "num_interactions": cfg.num_interactions,
            "num_basis": cfg.num_basis, "cutoff": cfg.cutoff, "parameters": summary["parameters"],
            "epochs": summary["epochs"], "stop_reason": summary["stop_reason"],
            "train_seconds": summary["train_seconds"], "val": val, "cost": cost,
            "run_dir": str(out), "student": summary["student"], "config": cfg.to_dict(),
        })
    ladder = {"sizes": rows, "tolerance": tolerance, "time_budget_per_size": time_budget or config.time_budget,
              "cost_atoms": rows[0]["cost"]["torchscript"]["atoms"], "cost_threads": torch.get_num_threads(),
              **recommend(rows, tolerance)}
    folder = ladder_dir(run_dir)
    atomic_write_text(folder / LADDER_FILE, json.dumps(ladder, indent=2))
    plot_ladder(ladder, folder / "ladder.png")
    return ladder


def recommend(rows: list[dict], tolerance: float) -> dict:
    """``best`` (lowest validation force MAE), ``recommended`` (the cheapest, by TorchScript cost per atom-step,
    within ``1 + tolerance`` of the best's MAE) and ``still_falling`` (the best is the costliest size)."""
    def cost(r):
        return r["cost"]["torchscript"]["us_per_atom"]

    best = min(rows, key=lambda r: r["val"]["force_mae"])
    limit = best["val"]["force_mae"] * (1 + tolerance)
    recommended = min((r for r in rows if r["val"]["force_mae"] <= limit), key=cost)
    return {"best": best["spec"], "recommended": recommended["spec"],
            "still_falling": len(rows) > 1 and best is max(rows, key=cost)}


def cost_structure(labels):
    """The validation structure with the most atoms, as ASE Atoms; a periodic cell repeated to >= COST_ATOMS."""
    from .data import load_splits

    atoms = max(load_splits(labels)["val"], key=lambda it: len(it.numbers)).atoms()
    if atoms.pbc.all() and len(atoms) < COST_ATOMS:
        k = math.ceil((COST_ATOMS / len(atoms)) ** (1 / 3))
        atoms = atoms.repeat((k, k, k))
    return atoms


def time_student(path, atoms, repeats: int = COST_REPEATS) -> dict:
    """CPU process seconds of one energy + forces call of the student file ``path`` (either format, on the CPU)
    on ``atoms``, neighbour list excluded: median over ``repeats``; as ms per call and us per atom-step."""
    from ..formats import load_student
    from ..neighbors import neighbor_list

    student = load_student(path, device="cpu")
    edge_index, shifts = neighbor_list(atoms, student.cutoff)
    inputs = (torch.tensor(atoms.positions, dtype=student.dtype), student.species(atoms.get_chemical_symbols()),
              torch.as_tensor(edge_index), torch.tensor(shifts, dtype=student.dtype))
    for _ in range(3):  # TorchScript's profiling executor optimises the graph over the first calls
        student.evaluate(*inputs)
    t0 = time.process_time()
    student.evaluate(*inputs)
    number = max(1, math.ceil(COST_MIN_SECONDS / max(time.process_time() - t0, 1e-6)))
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(number):
            student.evaluate(*inputs)
        times.append((time.process_time() - t0) / number)
    seconds = float(np.median(times))
    return {"format": student.format, "atoms": len(atoms), "ms_per_call": 1e3 * seconds,
            "us_per_atom": 1e6 * seconds / len(atoms)}


def continue_command(ladder: dict, labels, spec: str | None = None) -> str:
    """The ``hessdistill distill`` command that goes on training size ``spec`` (default: the recommended one) in
    its ladder folder: its options that differ from the defaults, but for the run length (epochs, max_steps,
    time_budget: a checkpoint resumes under new ones), which is left for the user to set as ``--time-budget TIME``."""
    row = next(r for r in ladder["sizes"] if r["spec"] == (spec or ladder["recommended"]))
    defaults = DistillConfig().to_dict()
    flags = [f"--{k.replace('_', '-')} {shlex.quote(str(v))}" for k, v in row["config"].items()
             if v != defaults[k] and k not in ("epochs", "max_steps", "time_budget")]
    return " ".join(["hessdistill distill", shlex.quote(str(labels)), "--out", shlex.quote(row["run_dir"]), *flags,
                     "--time-budget TIME"])


def plot_ladder(ladder: dict, png) -> None:
    """Validation force MAE against TorchScript cost per atom-step, one labelled point per size."""
    from matplotlib.figure import Figure  # no pyplot: the process's backend stays the caller's

    rows = ladder["sizes"]
    x = [r["cost"]["torchscript"]["us_per_atom"] for r in rows]
    y = [1e3 * r["val"]["force_mae"] for r in rows]
    fig = Figure(figsize=(5, 3.6))
    ax = fig.subplots()
    ax.plot(x, y, "o")
    for xi, yi, r in zip(x, y, rows):
        mark = " (recommended)" if r["spec"] == ladder["recommended"] else ""
        ax.annotate(r["spec"] + mark, (xi, yi), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if max(x) > 10 * min(x):  # a narrow range on a log axis crowds its minor tick labels
        ax.set_xscale("log")
    ax.margins(0.2)  # room for the labels
    ax.set_xlabel(f"TorchScript CPU us per atom-step ({ladder['cost_atoms']} atoms)")
    ax.set_ylabel("validation force MAE (meV/A)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
