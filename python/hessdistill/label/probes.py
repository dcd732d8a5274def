"""Which Hessian information a label stores: Cartesian rows, or products H v along random probe directions.

A Cartesian row k of the Hessian is H e_k, the product along the unit vector of one coordinate. Random probes
spread the same number of products over all coordinates at once: each is a Gaussian vector with its net
translation removed (a translation is a zero mode of any isolated structure's energy, so that part of a probe
carries no information) and normalised to unit length. Probes are drawn from (seed, structure index), so a
resumed or sharded label run draws the same ones.

Example
-------
>>> v = choose_probes(9, 4, index=0, seed=0)  # (4, 9, 3) unit vectors, each summing to zero over atoms
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError

#: ``rows``: Cartesian Hessian rows (unit probes); ``random``: random unit probes and their products H v.
PROBE_KINDS = ("rows", "random")


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
