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
    from pathlib import Path

    from ..engines import MDOptions
    from ..errors import InputError
    from ..paths import check_input_file, check_output
    from ..sample import starting_structure
    from ..workflows.refine import RefineSettings, refine

    inputs = [check_input_file(a.labels, "label store")] + ([check_input_file(a.test, "test label store")]
                                                              if a.test else [])
    if not Path(a.committee_dir).is_dir():
        raise InputError(f"--committee-dir {a.committee_dir} is not a folder (a `distill --committee K` run)")
    out = Path(a.out).absolute()
    for other in [Path(a.committee_dir), *inputs]:  # refine writes round folders: none may hold what it reads
        if out == other.absolute() or out in other.absolute().parents:
            raise InputError(f"refine folder {a.out} holds {other}, which refine reads; choose another --out")
    check_output(a.out, kind="dir", inputs=inputs, writes=["refine.csv", "refine.png"], what="refine folder")
    atoms = starting_structure(a.structure)

    md = MDOptions(timestep_fs=a.timestep, temperature_K=a.temperature, ensemble=a.ensemble,
                   report_interval=a.report_interval, seed=a.seed, max_drift=None, max_deviation=None)
    settings = RefineSettings(teacher=a.teacher, threshold=a.threshold, steps=a.steps, rounds=a.rounds,
                              frames_per_round=a.frames_per_round, upper=a.upper,
                              rows=a.rows, epochs=a.refine_epochs,
                              engine=a.engine, md=md, seed=a.seed,
                              engine_options={"platform": a.platform} if a.platform else {})
    rows = refine(a.labels, a.out, a.committee_dir, atoms, settings, test=a.test)
    for row in rows:
        print(json.dumps(row))
