"""``hessdistill label``: label structures with the teacher (:func:`hessdistill.label.label_file`)."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("label", help="label structures with the teacher: energy, forces, Hessian rows (resumable)")
    p.add_argument("structures", help="structure file from `hessdistill sample` (or any ase.io file)")
    p.add_argument("--teacher", default="ani1x")
    p.add_argument("-o", "--output", required=True, help="label store (HDF5); parts go to OUTPUT.parts/")
    p.add_argument("--rows", default="full", help="Hessian rows stored per structure: full or a number")
    p.add_argument("--shard", default="0/1", help="label only structures k with k %% n == i (i/n)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(a) -> None:
    from ..label import label_file

    rows = a.rows if a.rows == "full" else int(a.rows)
    print(json.dumps(label_file(a.structures, a.teacher, a.output, rows=rows, shard=a.shard, seed=a.seed)))
