"""``hessdistill sample``: build the specialized structure set (:func:`hessdistill.sample.sample_structures`)."""

from __future__ import annotations


def add_parser(sub) -> None:
    from .options import fractions, nonnegative_float, nonnegative_int, positive_float, positive_int, temperatures

    p = sub.add_parser("sample", help="build the specialized structure set (teacher MD, rattling, or a file)")
    p.add_argument("--start", help="starting structure: file, ase g2 molecule name (ethanol), or bulk:Si[:repeat]")
    p.add_argument("--from-file", help="use the structures of this file (any ase.io format) instead of sampling")
    p.add_argument("--teacher", default="ani1x", help="teacher for MD (default ani1x)")
    p.add_argument("--md", type=nonnegative_int, default=0, help="snapshots from teacher Langevin MD")
    p.add_argument("--temperature", type=temperatures, default=[500.0], help="temperature, K, of MD and "
                   "normal-mode sampling; a comma list (300,600,900) shares the snapshots out over those temperatures")
    p.add_argument("--normal-modes", type=nonnegative_int, default=0, help="structures displaced along the teacher's normal "
                   "modes (classical Boltzmann amplitudes) around the teacher's minimum near --start; a proposal "
                   "whose teacher energy lies above harmonic is kept with probability exp(-excess / kT), so soft "
                   "modes do not tear the structure apart")
    p.add_argument("--relax-fmax", type=positive_float, default=1e-3, help="force threshold of the relaxation to the "
                   "teacher's minimum before normal-mode sampling, eV/A")
    p.add_argument("--interval", type=positive_int, default=10, help="MD steps between snapshots")
    p.add_argument("--timestep", type=positive_float, default=0.5, help="MD timestep, fs")
    p.add_argument("--rattle", type=nonnegative_int, default=0, help="rattled copies of the starting structure")
    p.add_argument("--rattle-stdev", type=positive_float, default=0.05, help="rattle displacement, A")
    p.add_argument("--strain", type=nonnegative_float, default=0.0,
                   help="strain every sampled periodic structure: isotropic linear strain uniform in +-STRAIN plus "
                        "a shear of a quarter of that (0.01: about +-3%% in volume); teaches the equation of state")
    p.add_argument("--split", type=fractions, default=(0.8, 0.1, 0.1), help="train,val,test fractions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="output extxyz file")
    p.set_defaults(func=run)


def run(a) -> None:
    from ..paths import check_output
    from ..sample import sample_structures, write_structures

    check_output(a.output, inputs=[a.from_file, a.start], what="output file")
    structures = sample_structures(
        a.start, teacher=a.teacher, md=a.md, normal_modes=a.normal_modes, rattle=a.rattle, temperatures=a.temperature,
        interval=a.interval, timestep_fs=a.timestep, relax_fmax=a.relax_fmax, rattle_stdev=a.rattle_stdev,
        strain=a.strain, fractions=a.split, seed=a.seed, from_file=a.from_file)
    write_structures(structures, a.output)
    print(f"wrote {len(structures)} structures to {a.output}")
