"""``hessdistill refine``: active learning with a committee (:func:`hessdistill.workflows.refine.refine`)."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    from .options import nonnegative_float, positive_float, positive_int, rows

    p = sub.add_parser("refine", help="active learning: committee MD, label frames whose force deviation passes a "
                                      "threshold with the teacher, continue training; repeat until a run stays below")
    p.add_argument("labels", help="label store the committee was trained on")
    p.add_argument("--committee-dir", required=True, help="run folder of `hessdistill distill --committee K`")
    p.add_argument("--teacher", required=True, help="teacher that labels harvested frames (e.g. ani1x)")
    p.add_argument("--structure", required=True, help="starting structure of the MD (file, g2 name, bulk:Si[:n])")
    p.add_argument("--out", default="refine_run")
    p.add_argument("--threshold", type=positive_float, required=True,
                   help="max_devi_f above which a frame is harvested, eV/A")
    p.add_argument("--upper", type=positive_float, default=None,
                   help="frames above this deviation are not labelled, eV/A")
    p.add_argument("--rounds", type=positive_int, default=5)
    p.add_argument("--frames-per-round", type=positive_int, default=10)
    p.add_argument("--rows", type=rows, default="full", help="Hessian rows labelled per frame: full or a number")
    p.add_argument("--refine-epochs", type=positive_int, default=50, help="training epochs per round per member")
    p.add_argument("--test", default=None, help="held-out label store: force MAE per round in refine.csv")
    p.add_argument("--engine", default="ase", choices=["ase", "openmm", "lammps"])
    p.add_argument("--platform", help="openmm platform")
    p.add_argument("--steps", type=positive_int, default=1000, help="MD steps per round")
    p.add_argument("--timestep", type=positive_float, default=0.5, help="fs")
    p.add_argument("--temperature", type=nonnegative_float, default=300.0, help="K")
    p.add_argument("--ensemble", default="nvt", choices=["nve", "nvt"])
    p.add_argument("--report-interval", type=positive_int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the MD and of the frame choice")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..engines import MDOptions
    from ..sample import starting_structure
    from ..workflows.refine import RefineSettings, refine

    md = MDOptions(timestep_fs=a.timestep, temperature_K=a.temperature, ensemble=a.ensemble,
                   report_interval=a.report_interval, seed=a.seed, max_drift=None, max_deviation=None)
    settings = RefineSettings(teacher=a.teacher, threshold=a.threshold, steps=a.steps, rounds=a.rounds,
                              frames_per_round=a.frames_per_round, upper=a.upper,
                              rows=a.rows, epochs=a.refine_epochs,
                              engine=a.engine, md=md, seed=a.seed,
                              engine_options={"platform": a.platform} if a.platform else {})
    rows = refine(a.labels, a.out, a.committee_dir, starting_structure(a.structure), settings, test=a.test)
    for row in rows:
        print(json.dumps(row))
