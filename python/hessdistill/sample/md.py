"""Snapshots of teacher Langevin MD (ASE).
"""

from __future__ import annotations

import numpy as np
from ase import Atoms, units

from ..structures import check_structure


def teacher_md(
    atoms: Atoms, calculator, n: int, temperature: float, interval: int = 10, timestep_fs: float = 0.5,
    friction: float = 0.02, equilibration: int = 100, seed: int = 0, progress: bool = True,
) -> list[Atoms]:
    """``n`` snapshots every ``interval`` steps of Langevin MD at ``temperature`` K driven by the teacher."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ..progress import progress_bar

    atoms = atoms.copy()
    atoms.calc = calculator
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature, rng=rng)
    # fixcm=False: ASE's fixed-centre-of-mass Langevin does not sample NVT exactly (and is deprecated)
    dyn = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature, friction=friction, rng=rng, fixcm=False)
    snaps: list[Atoms] = []
    bar = progress_bar(equilibration + n * interval, "teacher MD", unit="step", enabled=progress)
    dyn.attach(lambda: bar.update(dyn.nsteps - bar.n), interval=1)  # observers also run before step 1
    dyn.run(equilibration)
    for _ in range(n):
        dyn.run(interval)
        snap = Atoms(atoms.numbers, atoms.positions.copy(), cell=atoms.cell.copy(), pbc=atoms.pbc.copy())
        check_structure(snap)  # an exploding teacher run should stop here, not poison the data set
        snaps.append(snap)
    bar.close()
    return snaps
