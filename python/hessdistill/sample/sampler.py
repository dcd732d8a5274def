"""The whole sampling stage in one call: what ``hessdistill sample`` runs.

Example
-------
>>> structures = sample_structures("CH3CH2OH", teacher="ani1x", md=200, normal_modes=100, temperatures=(300, 600))
>>> write_structures(structures, "structures.extxyz")
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
from ase import Atoms

from ..errors import InputError
from .io import read_structures, starting_structure
from .md import teacher_md
from .perturb import rattled, strained
from .splitting import share_out, split


def sample_structures(
    start: Union[str, Atoms, None] = None, *, teacher="ani1x", md: int = 0, normal_modes: int = 0, rattle: int = 0,
    temperatures: Sequence[float] = (500.0,), interval: int = 10, timestep_fs: float = 0.5,
    relax_fmax: float = 1e-3, rattle_stdev: float = 0.05, strain: float = 0.0,
    fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0, from_file=None,
) -> list[Atoms]:
    """The specialized structure set, split into train/val/test (``atoms.info["split"]``).

    ``start`` (a structure, or a file / ase g2 name / ``bulk:Si[:n]``) is sampled by ``md`` snapshots of teacher
    Langevin MD, ``normal_modes`` displacements along the teacher's normal modes at its minimum near ``start``
    (:mod:`hessdistill.sample.modes`) and ``rattle`` rattled copies; MD and normal-mode samples are shared out over
    ``temperatures`` (K). ``strain`` > 0 strains every periodic sample. ``teacher`` is a name or a teacher object.
    ``from_file`` takes the structures of a file instead (split only where the file has no split).
    """
    if from_file is not None:
        structures = read_structures(from_file)
        if not all("split" in s.info for s in structures):
            structures = split(structures, fractions, seed)
        return structures
    if start is None:
        raise InputError("give a starting structure (--start STRUCTURE) or a file of structures (--from-file FILE)")
    if md <= 0 and rattle <= 0 and normal_modes <= 0:
        raise InputError("nothing to sample: give --md N, --rattle N and/or --normal-modes N")
    temperatures = [float(t) for t in temperatures]
    if not temperatures or not all(t > 0 for t in temperatures):
        raise InputError(f"temperatures must be > 0 K, got {temperatures}")
    # identical snapshots (interval 0) would land in train, val and test alike
    if md > 0 and (int(interval) < 1 or not timestep_fs > 0):
        raise InputError(f"MD needs interval >= 1 step and timestep > 0 fs, got {interval} and {timestep_fs}")
    if rattle > 0 and not rattle_stdev > 0:
        raise InputError(f"rattle_stdev must be > 0 A, got {rattle_stdev}")
    atoms = starting_structure(start) if isinstance(start, str) else start
    structures: list[Atoms] = []
    if md > 0 or normal_modes > 0:
        if isinstance(teacher, str):
            from ..teachers import load_teacher

            teacher = load_teacher(teacher)
        teacher.check(atoms)
    for k, (t, n) in enumerate(zip(temperatures, share_out(md, len(temperatures)))):
        if n > 0:
            structures += teacher_md(atoms, teacher.as_calculator(), n, t, interval, timestep_fs, seed=seed + k)
    if normal_modes > 0:
        from .modes import normal_mode_samples, normal_modes as modes_of, relax

        minimum = relax(atoms, teacher.as_calculator(), fmax=relax_fmax)
        modes = modes_of(minimum, teacher.hessian(minimum))
        rng = np.random.default_rng(seed)
        for t, n in zip(temperatures, share_out(normal_modes, len(temperatures))):
            structures += normal_mode_samples(minimum, modes, n, t, rng=rng,
                                              energy=lambda x: teacher.energy_forces(x)[0])
    if rattle > 0:
        structures += rattled(atoms, rattle, rattle_stdev, seed)
    if strain:
        structures = strained(structures, strain, seed)
    return split(structures, fractions, seed)
