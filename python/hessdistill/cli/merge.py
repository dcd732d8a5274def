"""``hessdistill merge``: merge the parts of sharded labelling (:func:`hessdistill.label.merge`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("merge", help="merge the parts of sharded labelling into the store file")
    p.add_argument("store")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..label import merge

    print(merge(a.store))
