"""``hessdistill md``: MD of an exported student in any engine with energy-conservation monitoring
(:func:`hessdistill.engines.run_md`)."""

from __future__ import annotations

import json
import sys

#: CLI flags that belong to one engine only: flag -> (engine, option name)
ENGINE_FLAGS = {"platform": ("openmm", "platform"), "precision": ("openmm", "precision"),
                "nprocs": ("lammps", "nprocs")}


def add_parser(sub) -> None:
    from .options import device, finite_float, nonnegative_float, positive_float, positive_int

    p = sub.add_parser("md", help="run MD of an exported student with energy-conservation monitoring")
    p.add_argument("--engine", default="ase", choices=["ase", "openmm", "lammps"])
    p.add_argument("--model", required=True, help="student file (TorchScript .pt or compiled .pt2)")
    p.add_argument("--structure", required=True, help="starting structure (file, g2 molecule name, bulk:Si[:n])")
    p.add_argument("--out", default="md_run")
    p.add_argument("--steps", type=positive_int, default=1000)
    p.add_argument("--timestep", type=positive_float, default=0.5, help="fs")
    p.add_argument("--temperature", type=nonnegative_float, default=300.0, help="initial/bath temperature, K")
    p.add_argument("--ensemble", default="nve", choices=["nve", "nvt", "npt"],
                   help="npt: the nvt thermostat and an isotropic barostat (a cell periodic in x, y and z); "
                        "monitor.csv gains the cell volume, and the energy thresholds are not applied")
    p.add_argument("--friction", type=positive_float, default=1.0, help="Langevin friction, 1/ps")
    p.add_argument("--pressure", type=finite_float, default=1.0, help="npt: pressure, bar")
    p.add_argument("--barostat-time", type=positive_float, default=1.0,
                   help="npt: time scale of the box, ps (ase P_tau, lammps Pdamp)")
    p.add_argument("--barostat-interval", type=positive_int, default=25,
                   help="npt: steps between openmm's Monte Carlo volume moves")
    p.add_argument("--report-interval", type=positive_int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-drift", type=positive_float, default=0.01, help="stop above this drift, eV/atom/ps (NVE only)")
    p.add_argument("--max-deviation", type=positive_float, default=0.05, help="stop above this |E-E0|, eV/atom (NVE only)")
    p.add_argument("--trajectory-interval", type=positive_int, default=None, help="steps between frames (default: the "
                   "report interval)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (ase, openmm)")
    p.add_argument("--device", type=device, default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--platform", help="openmm: platform (Reference, CPU, CUDA, OpenCL); default CUDA with a GPU, "
                   "else Reference (the faster one for a system of students only)")
    p.add_argument("--precision", help="openmm: precision (single, mixed, double)")
    p.add_argument("--nprocs", type=positive_int, default=None, help="lammps: MPI ranks (default 1)")
    add_trust_flags(p)
    p.set_defaults(func=run)


def add_trust_flags(p) -> None:
    from .options import positive_float, positive_int

    p.add_argument("--committee", nargs="+", default=(), metavar="STUDENT",
                   help="further student files (other seeds; or a `distill --committee` run folder): their force "
                        "deviation max_devi_f is written to deviation.csv every report (ase, openmm)")
    p.add_argument("--committee-drive", default="mean", choices=["mean", "first"],
                   help="mean: the committee's mean forces drive the MD; first: --model alone (cheaper)")
    p.add_argument("--max-force-deviation", type=positive_float, default=None, help="max_devi_f threshold, eV/A")
    p.add_argument("--deviation-action", default="stop", choices=["stop", "flag"],
                   help="above --max-force-deviation: stop the run, or save the frame to flagged.extxyz and go on")
    p.add_argument("--spot-check-teacher", default=None, help="teacher that checks the current frame's forces "
                   "(e.g. ani1x, morse); errors go to deviation.csv")
    p.add_argument("--spot-check-interval", type=positive_int, default=None, help="steps between spot checks (a "
                   "multiple of --report-interval; default every report)")


def committee_files(entries) -> tuple:
    """Student files of --committee: files, or committee run folders (their members)."""
    from pathlib import Path

    from ..distill.committee import committee_students

    out = []
    for e in entries:
        out += committee_students(e) if Path(e).is_dir() else [e]
    return tuple(out)


def md_engine_options(a) -> dict:
    """The chosen engine's options from the CLI flags; a flag of another engine is an error, not ignored."""
    from ..errors import ConfigError

    opts = {}
    for flag, (engine, name) in ENGINE_FLAGS.items():
        value = getattr(a, flag)
        if value is None:
            continue
        if engine != a.engine:
            raise ConfigError(f"--{flag} applies to --engine {engine}, not {a.engine}")
        opts[name] = value
    if a.device is not None:
        opts["device"] = a.device
    if a.engine == "lammps":
        opts["threads"] = a.threads  # torch threads per rank, as --threads sets them for this process
    return opts


def run(a) -> None:
    from ..engines import MDOptions, run_md
    from ..engines.contract import COMMON_FILES, TRAJECTORY_EXTENSIONS, TRUST_FILES
    from ..paths import check_input_file, check_output
    from ..sample import starting_structure

    check_input_file(a.model, "student file")
    committee = committee_files(a.committee)
    for path in committee:
        check_input_file(path, "committee student file")
    atoms = starting_structure(a.structure)
    written = [*COMMON_FILES.values(), *TRUST_FILES.values(), f"trajectory.{TRAJECTORY_EXTENSIONS[a.engine]}"]
    check_output(a.out, inputs=[a.model, a.structure, *committee], kind="dir", writes=written, what="MD folder")

    options = MDOptions(steps=a.steps, timestep_fs=a.timestep, temperature_K=a.temperature, ensemble=a.ensemble,
                        friction_per_ps=a.friction, pressure_bar=a.pressure, barostat_time_ps=a.barostat_time,
                        barostat_interval=a.barostat_interval, report_interval=a.report_interval,
                        trajectory_interval=a.trajectory_interval, seed=a.seed, max_drift=a.max_drift,
                        max_deviation=a.max_deviation, progress=a.progress, committee=committee,
                        committee_drive=a.committee_drive, max_force_deviation=a.max_force_deviation,
                        deviation_action=a.deviation_action, spot_check_teacher=a.spot_check_teacher,
                        spot_check_interval=a.spot_check_interval)
    result = run_md(a.engine, a.model, atoms, a.out, options, **md_engine_options(a))
    print(json.dumps(result.to_dict(), indent=2))
    if result.stopped:
        print(result.reason, file=sys.stderr)
        raise SystemExit(3)
