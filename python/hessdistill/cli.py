"""The ``hessdistill`` command: one subcommand per pipeline stage.

sample -> label (-> merge) -> distill (-> report) -> export -> md (-> refine); ``example`` runs them all on the built-in
example.
Errors raised on purpose (bad input, failed runs) print one line and exit with status 2; ``--debug`` shows the
traceback instead.

The command owns its process, so it sets two process-wide things that the library itself never touches: torch's
intra-op thread count (``--threads``, default 1) and glibc's malloc thresholds (:func:`hessdistill.heap.
keep_freed_memory`, on unless ``--no-heap-tuning``): small-system MD and Hessian-row training steps run up to 2x
slower without it.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import HessdistillError


def _add_sample(sub):
    p = sub.add_parser("sample", help="build the specialized structure set (teacher MD, rattling, or a file)")
    p.add_argument("--start", help="starting structure: file, ase g2 molecule name (ethanol), or bulk:Si[:repeat]")
    p.add_argument("--from-file", help="use the structures of this file (any ase.io format) instead of sampling")
    p.add_argument("--teacher", default="ani1x", help="teacher for MD (default ani1x)")
    p.add_argument("--md", type=int, default=0, help="snapshots from teacher Langevin MD")
    p.add_argument("--temperature", default="500", help="temperature, K, of MD and normal-mode sampling; a comma "
                   "list (300,600,900) shares the snapshots out over those temperatures")
    p.add_argument("--normal-modes", type=int, default=0, help="structures displaced along the teacher's normal "
                   "modes (classical Boltzmann amplitudes) around the teacher's minimum near --start; a proposal whose teacher "
                   "energy lies above harmonic is kept with probability exp(-excess / kT), so soft modes do not tear "
                   "the structure apart")
    p.add_argument("--relax-fmax", type=float, default=1e-3, help="force threshold of the relaxation to the "
                   "teacher's minimum before normal-mode sampling, eV/A")
    p.add_argument("--interval", type=int, default=10, help="MD steps between snapshots")
    p.add_argument("--timestep", type=float, default=0.5, help="MD timestep, fs")
    p.add_argument("--rattle", type=int, default=0, help="rattled copies of the starting structure")
    p.add_argument("--rattle-stdev", type=float, default=0.05, help="rattle displacement, A")
    p.add_argument("--strain", type=float, default=0.0,
                   help="strain every sampled periodic structure: isotropic linear strain uniform in +-STRAIN plus "
                        "a shear of a quarter of that (0.01: about +-3%% in volume); teaches the equation of state")
    p.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output extxyz file")
    p.set_defaults(func=cmd_sample)


def cmd_sample(a):
    from .errors import InputError
    from .sample import (rattled, read_structures, share_out, split, starting_structure, strained, teacher_md,
                         write_structures)

    fractions = tuple(float(x) for x in a.split.split(","))
    if a.from_file:
        structures = read_structures(a.from_file)
        if not all("split" in s.info for s in structures):
            structures = split(structures, fractions, a.seed)
    else:
        if not a.start:
            raise InputError("give --start STRUCTURE (or --from-file FILE)")
        if a.md <= 0 and a.rattle <= 0 and a.normal_modes <= 0:
            raise InputError("nothing to sample: give --md N, --rattle N and/or --normal-modes N")
        try:
            temperatures = [float(t) for t in str(a.temperature).split(",")]
        except ValueError:
            raise InputError(f"--temperature takes K or a comma list of K, got {a.temperature!r}") from None
        if not all(t > 0 for t in temperatures):
            raise InputError(f"temperatures must be > 0 K, got {a.temperature!r}")
        start = starting_structure(a.start)
        structures = []
        if a.md > 0 or a.normal_modes > 0:
            from .teachers import load_teacher

            teacher = load_teacher(a.teacher)
            teacher.check(start)
        for k, (t, n) in enumerate(zip(temperatures, share_out(a.md, len(temperatures)))):
            if n > 0:
                structures += teacher_md(start, teacher.as_calculator(), n, t, a.interval, a.timestep,
                                         seed=a.seed + k)
        if a.normal_modes > 0:
            import numpy as np

            from .modes import normal_mode_samples, normal_modes, relax

            minimum = relax(start, teacher.as_calculator(), fmax=a.relax_fmax)
            modes = normal_modes(minimum, teacher.hessian(minimum))
            rng = np.random.default_rng(a.seed)
            for t, n in zip(temperatures, share_out(a.normal_modes, len(temperatures))):
                structures += normal_mode_samples(minimum, modes, n, t, rng=rng,
                                                  energy=lambda x: teacher.energy_forces(x)[0])
        if a.rattle > 0:
            structures += rattled(start, a.rattle, a.rattle_stdev, a.seed)
        if a.strain:
            structures = strained(structures, a.strain, a.seed)
        structures = split(structures, fractions, a.seed)
    write_structures(structures, a.output)
    print(f"wrote {len(structures)} structures to {a.output}")


def _add_label(sub):
    p = sub.add_parser("label", help="label structures with the teacher: energy, forces, Hessian rows (resumable)")
    p.add_argument("structures", help="structure file from `hessdistill sample` (or any ase.io file)")
    p.add_argument("--teacher", default="ani1x")
    p.add_argument("-o", "--output", required=True, help="label store (HDF5); parts go to OUTPUT.parts/")
    p.add_argument("--rows", default="full", help="Hessian rows stored per structure: full or a number")
    p.add_argument("--shard", default="0/1", help="label only structures k with k %% n == i (i/n)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_label)


def cmd_label(a):
    from .label.store import label_structures, parse_shard
    from .sample import read_structures, split
    from .teachers import load_teacher

    structures = read_structures(a.structures)
    teacher = load_teacher(a.teacher)
    for k, atoms in enumerate(structures):  # fail before any work, naming the first bad structure
        try:
            teacher.check(atoms)
        except HessdistillError as exc:
            raise type(exc)(f"structure #{k}: {exc}") from None
    if not all("split" in s.info for s in structures):
        structures = split(structures, seed=a.seed)
    rows = a.rows if a.rows == "full" else int(a.rows)
    res = label_structures(structures, teacher, a.output, rows=rows, shard=parse_shard(a.shard), seed=a.seed)
    print(json.dumps(res))


def _add_merge(sub):
    p = sub.add_parser("merge", help="merge the parts of sharded labelling into the store file")
    p.add_argument("store")
    p.set_defaults(func=lambda a: print(__import__("hessdistill.label", fromlist=["merge"]).merge(a.store)))


def _add_distill(sub):
    from .distill.config import HELP, DistillConfig

    p = sub.add_parser("distill", help="train a student on the labels (Hessian-row loss) and export it")
    p.add_argument("labels", nargs="?", help="label store from `hessdistill label`")
    p.add_argument("--out", default="run", help="run folder (checkpoint, metrics, student.pt)")
    p.add_argument("--config", help="YAML file of settings (see --write-config)")
    p.add_argument("--write-config", metavar="FILE", help="write the documented defaults to FILE and exit")
    p.add_argument("--baseline", action="store_true", help="train the undistilled baseline (hessian_weight 0)")
    p.add_argument("--compare", action="store_true", help="train distilled and baseline students and compare")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint in the run folder")
    p.add_argument("--no-report", action="store_true", help="skip the fidelity report (OUT/report/: errors on the "
                   "test split, and minima, frequencies, pressure against the teacher)")
    p.add_argument("--committee", type=int, default=None, metavar="K",
                   help="train K students that differ in seed (seed, seed+1, ...) into OUT/member{k}/, listed in "
                        "OUT/committee.json: their force deviation tells where the student is not to be trusted")
    for name, default in DistillConfig().to_dict().items():
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=type(default), default=None, help=HELP[name])
    p.set_defaults(func=cmd_distill)


def cmd_distill(a):
    from pathlib import Path

    from .distill.config import DistillConfig, load_config, write_config
    from .errors import InputError
    from .distill import distill
    from .units import EV_PER_A3_TO_GPA

    if a.write_config:
        write_config(a.write_config)
        print(f"wrote {a.write_config}")
        return
    if not a.labels:
        raise InputError("give the label store: hessdistill distill LABELS.h5")
    names = DistillConfig().to_dict()
    config = load_config(a.config, **{k: getattr(a, k) for k in names})
    if a.committee is not None:
        from .distill.committee import distill_committee

        if a.compare:
            raise InputError("--committee and --compare do not go together")
        if a.baseline:
            config = config.replace(hessian_weight=0.0)
        result = distill_committee(config, a.labels, a.out, a.committee, resume=not a.no_resume)
        for m in result["members"]:
            print(f"seed {m['seed']}: {m['student']}  test force MAE {m['test']['force_mae'] * 1000:.2f} meV/A")
        print(f"committee of {result['k']}: {Path(a.out) / 'committee.json'}")
        return
    runs = []
    if a.compare:
        runs = [("distilled", config, Path(a.out) / "distilled"), ("baseline", config.replace(hessian_weight=0.0),
                                                                    Path(a.out) / "baseline")]
    elif a.baseline:
        runs = [("baseline", config.replace(hessian_weight=0.0), Path(a.out))]
    else:
        runs = [("distilled", config, Path(a.out))]
    results = {}
    for name, cfg, out in runs:
        summary = distill(cfg, a.labels, out, resume=not a.no_resume)
        results[name] = summary
        t = summary["test"]  # stress_mae is NaN (so not >= 0) without stress labels
        print(f"{name}: {summary['student']}  test force MAE {t['force_mae'] * 1000:.2f} meV/A, energy MAE "
              f"{t['energy_mae_per_atom'] * 1000:.2f} meV/atom, Hessian MAE {t['hessian_mae']:.4f} eV/A^2"
              + (f", stress MAE {t['stress_mae'] * EV_PER_A3_TO_GPA:.3f} GPa" if t["stress_mae"] >= 0 else ""))
        if not a.no_report:
            _report(summary["student"], a.labels, out / "report")
    if a.compare:
        ratio = results["distilled"]["test"]["force_mae"] / results["baseline"]["test"]["force_mae"]
        print(f"force MAE distilled / baseline = {ratio:.3f}")


def _report(student, labels, out, teacher=None, physics=True) -> None:
    from .fidelity import fidelity_report, summary_lines

    report = fidelity_report(student, labels, out, teacher=teacher, physics=physics)
    for line in summary_lines(report):
        print("  " + line)
    print(f"  fidelity report: {out / 'report.json'}, {out / 'report.png'}")


def _add_report(sub):
    p = sub.add_parser("report", help="fidelity report of a student: held-out errors, parity plots, minima, "
                       "frequencies, pressure against the teacher")
    p.add_argument("student", help="exported student file (.pt, .pt2, metatomic)")
    p.add_argument("labels", help="label store; its test split is reported on")
    p.add_argument("-o", "--out", default="report", help="output folder (report.json, report.png)")
    p.add_argument("--teacher", help="teacher for the physics checks (default: the one named in the store)")
    p.add_argument("--no-physics", action="store_true", help="only the held-out label errors (no teacher calls)")
    p.set_defaults(func=cmd_report)


def cmd_report(a):
    from pathlib import Path

    _report(a.student, a.labels, Path(a.out), teacher=a.teacher, physics=not a.no_physics)


def _add_export(sub):
    p = sub.add_parser("export", help="export a run's best student as TorchScript, a compiled .pt2 package or a "
                                      "metatomic model")
    p.add_argument("checkpoint", help="run folder or its checkpoint.pt")
    p.add_argument("-o", "--output", required=True, help="student file; a .pt2 suffix means --format pt2")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--format", choices=["torchscript", "pt2", "metatomic"], default=None,
                   help="torchscript (portable, default), pt2 (AOTInductor package, several times faster; "
                        "compiled for this machine, device and torch: run the export where it will run) or "
                        "metatomic (an AtomisticModel for metatomic's engines: ASE, i-PI, PLUMED, LAMMPS-metatomic)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device a pt2 package runs on")
    p.set_defaults(func=cmd_export)


def cmd_export(a):
    from .distill import model_from_checkpoint
    from .formats import save_student

    model, state = model_from_checkpoint(a.checkpoint)
    print(save_student(model, a.output, dtype=a.dtype, teacher=state.get("teacher", ""), format=a.format,
                       device=a.device))


def _add_md(sub):
    p = sub.add_parser("md", help="run MD of an exported student with energy-conservation monitoring")
    p.add_argument("--engine", default="ase", choices=["ase", "openmm", "lammps"])
    p.add_argument("--model", required=True, help="student file (TorchScript .pt or compiled .pt2)")
    p.add_argument("--structure", required=True, help="starting structure (file, g2 molecule name, bulk:Si[:n])")
    p.add_argument("--out", default="md_run")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--temperature", type=float, default=300.0, help="initial/bath temperature, K")
    p.add_argument("--ensemble", default="nve", choices=["nve", "nvt"])
    p.add_argument("--friction", type=float, default=1.0, help="Langevin friction, 1/ps")
    p.add_argument("--report-interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-drift", type=float, default=0.01, help="stop above this drift, eV/atom/ps")
    p.add_argument("--max-deviation", type=float, default=0.05, help="stop above this |E-E0|, eV/atom")
    p.add_argument("--trajectory-interval", type=int, default=None, help="steps between frames (default: the "
                   "report interval)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar (ase, openmm)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--platform", help="openmm: platform (Reference, CPU, CUDA, OpenCL); default CUDA with a GPU, "
                   "else Reference (the faster one for a system of students only)")
    p.add_argument("--precision", help="openmm: precision (single, mixed, double)")
    p.add_argument("--nprocs", type=int, default=None, help="lammps: MPI ranks (default 1)")
    _add_trust_flags(p)
    p.set_defaults(func=cmd_md)


def _add_trust_flags(p):
    p.add_argument("--committee", nargs="+", default=(), metavar="STUDENT",
                   help="further student files (other seeds; or a `distill --committee` run folder): their force "
                        "deviation max_devi_f is written to deviation.csv every report (ase, openmm)")
    p.add_argument("--committee-drive", default="mean", choices=["mean", "first"],
                   help="mean: the committee's mean forces drive the MD; first: --model alone (cheaper)")
    p.add_argument("--max-force-deviation", type=float, default=None, help="max_devi_f threshold, eV/A")
    p.add_argument("--deviation-action", default="stop", choices=["stop", "flag"],
                   help="above --max-force-deviation: stop the run, or save the frame to flagged.extxyz and go on")
    p.add_argument("--spot-check-teacher", default=None, help="teacher that checks the current frame's forces "
                   "(e.g. ani1x, morse); errors go to deviation.csv")
    p.add_argument("--spot-check-interval", type=int, default=None, help="steps between spot checks (a multiple "
                   "of --report-interval; default every report)")


def committee_files(entries) -> tuple:
    """Student files of --committee: files, or committee run folders (their members)."""
    from pathlib import Path

    from .distill.committee import committee_students

    out = []
    for e in entries:
        out += committee_students(e) if Path(e).is_dir() else [e]
    return tuple(out)


#: CLI flags that belong to one engine only: flag -> (engine, option name)
_ENGINE_FLAGS = {"platform": ("openmm", "platform"), "precision": ("openmm", "precision"),
                 "nprocs": ("lammps", "nprocs")}


def md_engine_options(a) -> dict:
    """The chosen engine's options from the CLI flags; a flag of another engine is an error, not ignored."""
    from .errors import ConfigError

    opts = {}
    for flag, (engine, name) in _ENGINE_FLAGS.items():
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


def cmd_md(a):
    from .engines import MDOptions, run_md
    from .sample import starting_structure

    options = MDOptions(steps=a.steps, timestep_fs=a.timestep, temperature_K=a.temperature, ensemble=a.ensemble,
                        friction_per_ps=a.friction, report_interval=a.report_interval,
                        trajectory_interval=a.trajectory_interval, seed=a.seed, max_drift=a.max_drift,
                        max_deviation=a.max_deviation, progress=a.progress, committee=committee_files(a.committee),
                        committee_drive=a.committee_drive, max_force_deviation=a.max_force_deviation,
                        deviation_action=a.deviation_action, spot_check_teacher=a.spot_check_teacher,
                        spot_check_interval=a.spot_check_interval)
    result = run_md(a.engine, a.model, starting_structure(a.structure), a.out, options, **md_engine_options(a))
    print(json.dumps(result.to_dict(), indent=2))
    if result.stopped:
        print(result.reason, file=sys.stderr)
        raise SystemExit(3)


def _add_refine(sub):
    p = sub.add_parser("refine", help="active learning: committee MD, label frames whose force deviation passes a "
                                      "threshold with the teacher, continue training; repeat until a run stays below")
    p.add_argument("labels", help="label store the committee was trained on")
    p.add_argument("--committee-dir", required=True, help="run folder of `hessdistill distill --committee K`")
    p.add_argument("--teacher", required=True, help="teacher that labels harvested frames (e.g. ani1x)")
    p.add_argument("--structure", required=True, help="starting structure of the MD (file, g2 name, bulk:Si[:n])")
    p.add_argument("--out", default="refine_run")
    p.add_argument("--threshold", type=float, required=True, help="max_devi_f above which a frame is harvested, eV/A")
    p.add_argument("--upper", type=float, default=None, help="frames above this deviation are not labelled, eV/A")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames-per-round", type=int, default=10)
    p.add_argument("--rows", default="full", help="Hessian rows labelled per frame: full or a number")
    p.add_argument("--refine-epochs", type=int, default=50, help="training epochs per round per member")
    p.add_argument("--test", default=None, help="held-out label store: force MAE per round in refine.csv")
    p.add_argument("--engine", default="ase", choices=["ase", "openmm", "lammps"])
    p.add_argument("--platform", help="openmm platform")
    p.add_argument("--steps", type=int, default=1000, help="MD steps per round")
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--temperature", type=float, default=300.0, help="K")
    p.add_argument("--ensemble", default="nvt", choices=["nve", "nvt"])
    p.add_argument("--report-interval", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="seed of the MD and of the frame choice")
    p.set_defaults(func=cmd_refine)


def cmd_refine(a):
    from .engines import MDOptions
    from .refine import RefineSettings, refine
    from .sample import starting_structure

    md = MDOptions(timestep_fs=a.timestep, temperature_K=a.temperature, ensemble=a.ensemble,
                   report_interval=a.report_interval, seed=a.seed, max_drift=None, max_deviation=None)
    settings = RefineSettings(teacher=a.teacher, threshold=a.threshold, steps=a.steps, rounds=a.rounds,
                              frames_per_round=a.frames_per_round, upper=a.upper,
                              rows=a.rows if a.rows == "full" else int(a.rows), epochs=a.refine_epochs,
                              engine=a.engine, md=md, seed=a.seed,
                              engine_options={"platform": a.platform} if a.platform else {})
    rows = refine(a.labels, a.out, a.committee_dir, starting_structure(a.structure), settings, test=a.test)
    for row in rows:
        print(json.dumps(row))


def _add_example(sub):
    p = sub.add_parser("example", help="the whole pipeline on the built-in example (ANI-1x ethanol)")
    p.add_argument("--out", default="example_run")
    p.add_argument("--quick", action="store_true", help="fewer structures and epochs (a smoke run)")
    p.set_defaults(func=lambda a: __import__("hessdistill.example", fromlist=["main"]).main(a.out, a.quick))


def _add_lammps_plugin(sub):
    p = sub.add_parser("lammps-plugin", help="build the LAMMPS pair_style hessdistill plugin; prints its path")
    p.add_argument("--build-dir", default=None)
    p.set_defaults(func=lambda a: print(__import__("hessdistill.engines.lammps", fromlist=["x"]).build_plugin(a.build_dir)))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="hessdistill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"hessdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: fastest for small students on few cores)")
    parser.add_argument("--no-heap-tuning", action="store_true",
                        help="leave glibc's malloc thresholds as they are (by default this command keeps freed "
                             "memory for reuse: hessdistill.heap.keep_freed_memory)")
    parser.add_argument("--heap-large-blocks", action="store_true",
                        help="keep blocks over 32 MB for reuse too (no mmap): flat cost per atom-step for OpenMM "
                             "and ASE MD of tens of thousands of atoms, at the price of memory held by the process")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_sample, _add_label, _add_merge, _add_distill, _add_report, _add_export, _add_md, _add_refine, _add_example,
                _add_lammps_plugin):
        add(sub)
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    if not args.no_heap_tuning:
        from .heap import keep_freed_memory

        keep_freed_memory(large_blocks=args.heap_large_blocks)
    try:
        args.func(args)
    except HessdistillError as exc:
        if args.debug:
            raise
        print(f"hessdistill: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
