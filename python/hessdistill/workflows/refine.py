"""``hessdistill refine``: active learning with a committee, the loop of DeePMD's dpgen with the student's engines.

Each round

1. runs committee MD (ASE, OpenMM or LAMMPS) of the first member from the starting structure, every other member
   reporting force deviation, frames above ``threshold`` flagged (:mod:`hessdistill.monitor.deviation`);
2. stops when the run went the full length with no flagged frame (converged), or the rounds are used up;
3. else picks up to ``frames_per_round`` flagged frames (seeded, at random, as dpgen does; frames above
   ``upper`` are dropped: an exploded structure teaches nothing), labels them with the teacher (energy, forces,
   ``rows`` Hessian rows) and adds them to the training set;
4. continues training every member from its last weights for ``epochs`` epochs on the grown set, and exports it.

Layout of ``RUN``: ``round{r}/md/`` (the MD run), ``round{r}/labels.h5`` (the grown store),
``round{r}/member{k}/`` (run folders), ``refine.csv`` (one row per round) and ``refine.png``.

Example
-------
>>> settings = RefineSettings(teacher="ani1x", threshold=0.3, steps=2000, md=MDOptions(temperature_K=600))
>>> refine("labels.h5", "run", "committee_run", molecule("CH3CH2OH"), settings)
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..distill.committee import committee_students
from ..engines.contract import MDOptions
from ..errors import ConfigError, InputError

COLUMNS = ("round", "n_train", "md_steps_done", "md_stopped", "n_reports", "n_flagged", "mean_max_devi_f",
           "max_devi_f", "n_labelled", "teacher_calls", "test_force_mae", "test_force_mae_mean")


@dataclass
class RefineSettings:
    """Settings of :func:`refine`.

    teacher: teacher name or Teacher (labels the harvested frames).
    threshold: max_devi_f above which a frame is flagged, eV/A.
    steps: MD steps per round (the run that must stay below the threshold).
    rounds: most rounds of harvesting and training.
    frames_per_round: most frames labelled per round.
    upper: frames with max_devi_f above this are not labelled (None: keep all).
    rows: Hessian rows labelled per frame (``full`` or a number).
    epochs: training epochs per round for each member.
    engine: ``ase``, ``openmm`` or ``lammps``.
    md: the MD settings (committee, threshold and action are set by refine; seed + round).
    engine_options: keywords for the engine (e.g. ``platform="Reference"``).
    seed: seed of the frame choice.
    """

    teacher: Any
    threshold: float
    steps: int = 1000
    rounds: int = 5
    frames_per_round: int = 10
    upper: Optional[float] = None
    rows: Any = "full"
    epochs: int = 50
    engine: str = "ase"
    md: MDOptions = field(default_factory=MDOptions)
    engine_options: dict = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.threshold, (int, float)) and self.threshold > 0):
            raise ConfigError(f"refine threshold must be a positive force deviation (eV/A), got {self.threshold!r}")
        if self.upper is not None and not self.upper > self.threshold:
            raise ConfigError(f"refine upper ({self.upper}) must be above the threshold ({self.threshold})")
        for name in ("steps", "rounds", "frames_per_round", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"refine {name} must be >= 1, got {getattr(self, name)}")
        if self.engine not in ("ase", "openmm", "lammps"):
            raise ConfigError(f"refine runs MD with engine ase, openmm or lammps, got {self.engine!r}")


def held_out_force_mae(students: Sequence, items) -> tuple[float, float]:
    """Force MAE (eV/A) on labelled structures ``items`` of the first student and of the committee's mean."""
    from ..engines.ase.calculator import evaluate_student
    from ..formats import load_student

    loaded = [load_student(p, device="cpu") for p in students]
    first, mean = [], []
    for it in items:
        atoms = it.atoms()
        forces = np.stack([evaluate_student(sf, atoms)["forces"] for sf in loaded])
        first.append(np.abs(forces[0] - it.forces).mean())
        mean.append(np.abs(forces.mean(axis=0) - it.forces).mean())
    return float(np.mean(first)), float(np.mean(mean))


def pick_frames(frames: list, n: int, upper: float | None, rng: np.random.Generator) -> list:
    """Up to ``n`` of the flagged ``frames`` at random, those above ``upper`` dropped; in step order."""
    keep = [f for f in frames if upper is None or f.info["max_devi_f"] <= upper]
    if len(keep) > n:
        keep = [keep[i] for i in sorted(rng.choice(len(keep), size=n, replace=False))]
    return keep


def continue_training(labels, run_dir, previous_run, epochs: int, progress: bool = False) -> str:
    """Train a student on ``labels`` in ``run_dir`` for ``epochs`` epochs with the settings of ``previous_run``
    (a run folder), starting from its best weights; resumes ``run_dir`` if it has a checkpoint. Exports and
    returns ``run_dir/student.pt``."""
    from ..distill import Trainer, load_config, model_from_checkpoint
    from ..formats.torchscript import export_student

    config = load_config(Path(previous_run) / "config.yaml", epochs=epochs)

    trainer = Trainer(config, labels, run_dir, resume=True, progress=progress)
    if trainer.resumed_from is None:
        previous, _ = model_from_checkpoint(previous_run)
        # the previous shift, scale and weights (the energy reference stays that of the first training set)
        trainer.model.load_state_dict(previous.state_dict())
        if trainer.ema is not None:
            trainer.ema.module.load_state_dict(previous.state_dict())
    model = trainer.fit()
    return str(export_student(model, Path(run_dir) / "student.pt", dtype=config.export_dtype,
                              teacher=trainer.teacher_name))


def refine(labels, run_dir, committee_dir, atoms, settings: RefineSettings, test=None,
           progress: bool = True) -> list[dict]:
    """Run the refine loop (module docstring) from the committee in ``committee_dir`` (``distill --committee``)
    trained on ``labels``; each member keeps its own settings (its ``config.yaml``). ``test`` (a label store)
    gives held-out force errors per round. Returns the rows of ``refine.csv``."""
    from ase.io import read

    from ..engines import run_md
    from ..engines.trust import resolve_teacher
    from ..label.store import label_structures, load_labels, write_store
    from ..progress import progress_bar

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher = resolve_teacher(settings.teacher)
    teacher.check(atoms)
    students = committee_students(committee_dir)
    member_runs = [Path(s).parent for s in students]
    test_items = load_labels(test) if test is not None else None
    current = Path(labels)
    rng = np.random.default_rng(settings.seed)
    rows, calls = [], 0
    bar = progress_bar(settings.rounds, "refine", unit="round", enabled=progress)
    for r in range(settings.rounds + 1):
        round_dir = run_dir / f"round{r}"
        md = dataclasses.replace(settings.md, steps=settings.steps, committee=tuple(students[1:]),
                                 max_force_deviation=settings.threshold, deviation_action="flag",
                                 seed=settings.md.seed + r, progress=False)
        result = run_md(settings.engine, students[0], atoms, round_dir / "md", md, **settings.engine_options)
        trust = result.trust
        flagged = read(result.files["flagged"], index=":") if "flagged" in result.files else []
        row = {"round": r, "n_train": sum(it.split == "train" for it in load_labels(current)),
               "md_steps_done": result.steps_done, "md_stopped": int(result.stopped),
               "n_reports": trust["n_samples"], "n_flagged": trust["n_flagged"],
               "mean_max_devi_f": trust["mean_max_devi_f"], "max_devi_f": trust["max_devi_f"], "n_labelled": 0,
               "teacher_calls": calls, "test_force_mae": math.nan, "test_force_mae_mean": math.nan}
        if test_items is not None:
            row["test_force_mae"], row["test_force_mae_mean"] = held_out_force_mae(students, test_items)
        converged = trust["n_flagged"] == 0 and not result.stopped
        frames = [] if converged or r == settings.rounds else pick_frames(flagged, settings.frames_per_round,
                                                                          settings.upper, rng)
        if frames:
            for f in frames:
                f.info["split"] = "train"
            new = round_dir / "new_labels.h5"
            label_structures(frames, teacher, new, rows=settings.rows, seed=settings.seed + r, progress=False)
            calls += len(frames)
            row["n_labelled"] = len(frames)
            grown = round_dir / "labels.h5"
            write_store(load_labels(current) + load_labels(new), grown, teacher_name=teacher.spec or teacher.name)
            current = grown
            students = [continue_training(current, round_dir / f"member{k}", member_runs[k], settings.epochs)
                        for k in range(len(students))]
            member_runs = [round_dir / f"member{k}" for k in range(len(students))]
        rows.append(row)
        _write_csv(rows, run_dir / "refine.csv")
        if r < settings.rounds:
            bar.update(1)
            bar.set_postfix(flagged=row["n_flagged"], max_devi_f=f"{row['max_devi_f']:.3g}")
        if converged or not frames:
            break
    bar.close()
    plot_refine(run_dir / "refine.csv", run_dir / "refine.png")
    return rows


def _write_csv(rows: list[dict], path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def read_refine_csv(path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise InputError(f"{path} holds no rounds")
    return {c: np.array([float(r[c]) for r in rows]) for c in COLUMNS}


def plot_refine(csv_path, png_path) -> None:
    """Two panels per round: committee deviation (mean and largest max_devi_f) and held-out force MAE against
    teacher calls."""
    from matplotlib.figure import Figure

    d = read_refine_csv(csv_path)
    fig = Figure(figsize=(6, 5))
    ax1, ax2 = fig.subplots(2, 1)
    ax1.plot(d["round"], d["mean_max_devi_f"], "o-", label="mean max_devi_f")
    ax1.plot(d["round"], d["max_devi_f"], "s--", label="largest max_devi_f")
    ax1.set_xlabel("round")
    ax1.set_ylabel("force deviation (eV/A)")
    ax1.legend()
    if np.isfinite(d["test_force_mae"]).any():
        ax2.plot(d["teacher_calls"], d["test_force_mae"] * 1000, "o-", label="first member")
        ax2.plot(d["teacher_calls"], d["test_force_mae_mean"] * 1000, "s--", label="committee mean")
        ax2.legend()
    ax2.set_xlabel("teacher calls (labelled frames)")
    ax2.set_ylabel("held-out force MAE (meV/A)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
