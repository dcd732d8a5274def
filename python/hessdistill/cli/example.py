"""``hessdistill example``: the whole pipeline on the built-in example (:func:`hessdistill.workflows.example.main`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("example", help="the whole pipeline on the built-in example (ANI-1x ethanol)")
    p.add_argument("--out", default="example_run")
    p.add_argument("--quick", action="store_true", help="fewer structures and epochs (a smoke run)")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..workflows.example import main

    main(a.out, a.quick)
