"""``hessdistill report``: the fidelity report of an exported student (:func:`hessdistill.report.fidelity_report`)."""

from __future__ import annotations

from pathlib import Path

#: what a report folder receives
REPORT_FILES = ("report.json", "report.png")


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="fidelity report of a student: held-out errors, parity plots, minima, "
                       "frequencies, pressure against the teacher")
    p.add_argument("student", help="exported student file (.pt, .pt2, metatomic)")
    p.add_argument("labels", help="label store; its test split is reported on")
    p.add_argument("-o", "--out", default="report", help="output folder (report.json, report.png)")
    p.add_argument("--teacher", help="teacher for the physics checks (default: the one named in the store)")
    p.add_argument("--no-physics", action="store_true", help="only the held-out label errors (no teacher calls)")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..paths import check_input_file, check_output

    check_input_file(a.student, "student file")
    check_input_file(a.labels, "label store")
    check_output(a.out, inputs=[a.student, a.labels], kind="dir", writes=REPORT_FILES, what="report folder")
    print_report(a.student, a.labels, Path(a.out), teacher=a.teacher, physics=not a.no_physics)


def print_report(student, labels, out: Path, teacher=None, physics: bool = True) -> None:
    """Write the report into ``out`` and print its summary lines."""
    from ..report import fidelity_report, summary_lines

    report = fidelity_report(student, labels, out, teacher=teacher, physics=physics)
    for line in summary_lines(report):
        print("  " + line)
    print(f"  fidelity report: {out / 'report.json'}, {out / 'report.png'}")
