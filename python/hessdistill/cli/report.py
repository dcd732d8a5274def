"""``hessdistill report``: the fidelity report of an exported student (:func:`hessdistill.report.fidelity_report`)."""

from __future__ import annotations

from pathlib import Path

#: what a report folder receives
REPORT_FILES = ("report.json", "report.png")
#: and with --md
MD_FILE = "rdf.png"


def add_parser(sub) -> None:
    from .options import positive_float

    p = sub.add_parser("report", help="fidelity report of a student: held-out errors, parity plots, minima, "
                       "frequencies, pressure against the teacher")
    p.add_argument("student", help="exported student file (.pt, .pt2, metatomic)")
    p.add_argument("labels", help="label store; its test split is reported on")
    p.add_argument("-o", "--out", default="report", help="output folder (report.json, report.png)")
    p.add_argument("--teacher", help="teacher for the physics checks and --md (default: the one named in the store)")
    p.add_argument("--no-physics", action="store_true",
                   help="skip the physics checks against the teacher (no teacher calls unless --md)")
    p.add_argument("--md", type=positive_float, metavar="PS",
                   help="also run NVT MD of the student and of the teacher for PS picoseconds from the same "
                   "structure and seed and compare their radial distribution functions (rdf.png); periodic "
                   "structures only")
    p.add_argument("--md-temperature", type=positive_float, default=300.0, metavar="K",
                   help="temperature of the --md runs, K (default 300)")
    p.add_argument("--md-timestep", type=positive_float, default=0.5, metavar="FS",
                   help="timestep of the --md runs, fs (default 0.5)")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..paths import check_input_file, check_output

    check_input_file(a.student, "student file")
    check_input_file(a.labels, "label store")
    writes = REPORT_FILES + ((MD_FILE,) if a.md is not None else ())
    check_output(a.out, inputs=[a.student, a.labels], kind="dir", writes=writes, what="report folder")
    print_report(a.student, a.labels, Path(a.out), teacher=a.teacher, physics=not a.no_physics, md_ps=a.md,
                 md_temperature_K=a.md_temperature, md_timestep_fs=a.md_timestep)


def print_report(student, labels, out: Path, teacher=None, physics: bool = True, **md) -> None:
    """Write the report into ``out`` and print its summary lines; ``md``: the MD comparison's keywords of
    :func:`~hessdistill.report.fidelity_report` (``md_ps``, ...)."""
    from ..report import fidelity_report, summary_lines

    report = fidelity_report(student, labels, out, teacher=teacher, physics=physics, **md)
    for line in summary_lines(report):
        print("  " + line)
    written = REPORT_FILES + ((MD_FILE,) if "pairs" in report.get("md", {}) else ())  # a skipped MD draws nothing
    print(f"  fidelity report: {', '.join(str(out / name) for name in written)}")
