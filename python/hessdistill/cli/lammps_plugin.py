"""``hessdistill lammps-plugin``: build the LAMMPS plugin (:func:`hessdistill.engines.lammps.build_plugin`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("lammps-plugin", help="build the LAMMPS pair_style hessdistill plugin; prints its path")
    p.add_argument("--build-dir", default=None)
    p.set_defaults(func=run)


def run(a) -> None:
    from ..engines.lammps import build_plugin

    print(build_plugin(a.build_dir))
