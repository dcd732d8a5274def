"""``hessdistill label``: label structures with the teacher (:func:`hessdistill.label.label_file`)."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    from ..label.probes import PROBE_KINDS
    from .options import rows

    p = sub.add_parser("label", help="label structures with the teacher: energy, forces, Hessian rows (resumable)")
    p.add_argument("structures", help="structure file from `hessdistill sample` (or any ase.io file)")
    p.add_argument("--teacher", default="ani1x")
    p.add_argument("-o", "--output", required=True, help="label store (HDF5); parts go to OUTPUT.parts/")
    p.add_argument("--rows", type=rows, default="full", help="Hessian rows (or probes) stored per structure: full "
                   "(3N) or a number")
    p.add_argument("--hessian-probes", choices=PROBE_KINDS, default="rows",
                   help="rows: Cartesian Hessian rows; random: Hessian-vector products along random unit probes "
                   "(net translation removed); modes: the softest normal modes of the teacher at --minimum")
    p.add_argument("--minimum", help="with --hessian-probes modes: a structure (file or g2 name) of the same atoms, "
                   "relaxed by the teacher; its normal modes, rotated onto each structure, are the probes")
    p.add_argument("--shard", default="0/1", help="label only structures k with k %% n == i (i/n)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--relabel", action="store_true", help="delete finished parts first (they are refused when "
                   "another teacher or structure set made them)")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..label import label_file

    print(json.dumps(label_file(a.structures, a.teacher, a.output, rows=a.rows, shard=a.shard, seed=a.seed,
                                relabel=a.relabel, probes=a.hessian_probes,
                                minimum=a.minimum)))
