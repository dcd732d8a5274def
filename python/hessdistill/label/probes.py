"""Which Hessian information a label stores: Cartesian rows, or products H v along random probe directions.

A Cartesian row k of the Hessian is H e_k, the product along the unit vector of one coordinate. Random probes
spread the same number of products over all coordinates at once: each is a Gaussian vector with its net
translation removed (a translation is a zero mode of any isolated structure's energy, so that part of a probe
carries no information) and normalised to unit length. Probes are drawn from (seed, structure index), so a
resumed or sharded label run draws the same ones. Mode probes are the softest normal modes of the teacher at a
given minimum (Cartesian displacements, unit length), rotated into each structure's frame by the rotation that
best aligns the minimum onto it: near the minimum (normal-mode samples, MD of a molecule that stays in its
basin) they point along the soft directions, which random probes and Cartesian rows mostly miss.

Example
-------
>>> v = choose_probes(9, 4, index=0, seed=0)  # (4, 9, 3) unit vectors, each summing to zero over atoms
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: ``rows``: Cartesian Hessian rows (unit probes); ``random``: random unit probes and their products H v;
#: ``modes``: the softest normal modes of the teacher at a minimum, and their products.
PROBE_KINDS = ("rows", "random", "modes")


def check_probe_kind(kind: str) -> str:
    if kind not in PROBE_KINDS:
        raise InputError(f"Hessian probes must be one of {', '.join(PROBE_KINDS)}, got {kind!r}")
    return kind


def choose_probes(n_atoms: int, count: int, index: int, seed: int = 0) -> np.ndarray:
    """``count`` random unit probe directions (count, n_atoms, 3) of structure ``index``, without net
    translation (a single atom has no such direction: it keeps its translation)."""
    rng = np.random.default_rng([seed, index, 1])  # a stream of its own: not the rows' choice of the same seed
    v = rng.standard_normal((count, n_atoms, 3))
    if n_atoms > 1:
        v -= v.mean(axis=1, keepdims=True)
    return v / np.linalg.norm(v.reshape(count, -1), axis=1).reshape(count, 1, 1)


def minimum_modes(minimum, teacher) -> np.ndarray:
    """The vibrational modes of ``teacher`` at ``minimum`` (a relaxed structure), softest first, as unit Cartesian
    directions (M, N, 3)."""
    from ..sample.modes import normal_modes

    modes = normal_modes(minimum, teacher.hessian(minimum))
    disp = modes.displacements()[np.argsort(modes.eigenvalues)]
    return disp / np.linalg.norm(disp.reshape(len(disp), -1), axis=1).reshape(-1, 1, 1)


def mode_probes(modes: np.ndarray, minimum, atoms, count: int, index: int = 0) -> np.ndarray:
    """The ``count`` softest of ``modes`` (``minimum_modes``) rotated into the frame of ``atoms`` (the same atoms
    as ``minimum``, in the same order; periodic structures are not rotated), (count, N, 3)."""
    if not np.array_equal(np.asarray(atoms.numbers), np.asarray(minimum.numbers)):
        raise InputError(f"mode probes: structure #{index} ({atoms.get_chemical_formula()}) does not hold the "
                         f"minimum's atoms in its order ({minimum.get_chemical_formula()})")
    if count > len(modes):
        raise InputError(f"mode probes: {count} asked per structure, the minimum has {len(modes)} vibrational modes")
    if atoms.pbc.any():
        return modes[:count].copy()
    return modes[:count] @ _rotation(minimum.positions, atoms.positions)


def _rotation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The proper rotation R (3, 3) for which (p - mean p) @ R best matches (q - mean q) (Kabsch)."""
    u, _, vt = np.linalg.svd((p - p.mean(axis=0)).T @ (q - q.mean(axis=0)))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt
