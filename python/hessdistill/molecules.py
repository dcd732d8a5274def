"""The intermolecular part of the forces: each molecule's net force and net torque (reported by the fidelity
report, and terms of the distillation loss).

Intramolecular forces cancel in both sums (Newton's third law for pair terms, and for any many-body term whose
energy is invariant to translating or rotating the molecule alone), so a molecule's net force and its net torque
about its centre of mass are carried by the forces between molecules alone. They are what liquids' structure,
density and diffusion and complexes' binding geometries depend on, and a small part of each atom's force, so a
student's total force error can hide them (Magdau et al., npj Comput. Mater. 9, 146 (2023), report them
separately for the same reason).

Molecules are the connected components of the covalent bond graph (:func:`hessdistill.structures.covalent_bonds`);
in a periodic cell each molecule is unwrapped along its bonds before its centre of mass and torques are taken.

Example
-------
>>> groups, positions = molecules(atoms)
>>> net_force, net_torque = net_force_torque(atoms.get_masses(), positions, forces, groups)
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .structures import covalent_bonds


def molecules(atoms: Atoms) -> tuple[list[np.ndarray], np.ndarray]:
    """The molecules of ``atoms`` (arrays of atom indices, in order of their first atom) and positions in which
    each molecule is whole: every atom placed at its bonded neighbour's position plus the minimum-image bond vector,
    starting from the molecule's first atom. A bond graph that closes on itself through the periodic boundary
    (a polymer or a framework spanning the cell) has no unwrapped form; such atoms are left where they were."""
    n = len(atoms)
    i, j, d = covalent_bonds(atoms)
    order = np.argsort(i, kind="stable")
    i, j, d = i[order], j[order], d[order]
    starts = np.searchsorted(i, np.arange(n + 1))
    positions = atoms.positions.copy()
    label = np.full(n, -1)
    groups = []
    for root in range(n):
        if label[root] >= 0:
            continue
        label[root] = len(groups)
        members, stack = [root], [root]
        while stack:
            a = stack.pop()
            for k in range(starts[a], starts[a + 1]):
                b = j[k]
                if label[b] < 0:
                    label[b] = label[root]
                    positions[b] = positions[a] + d[k]
                    members.append(b)
                    stack.append(b)
        groups.append(np.sort(np.array(members)))
    return groups, positions


def fitted_molecules(atoms: Atoms, groups: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """(M,) bool: the molecules whose net force and torque are intermolecular quantities worth a loss term. Not a
    molecule alone in its structure (its sums are zero for any conservative, invariant energy), not a single atom
    (its net force is its force, already fitted; its torque is zero), not one closed on itself through the
    periodic boundary (a framework or a polymer spanning the cell: no centre of mass to take torques about)."""
    mask = np.array([len(g) > 1 for g in groups]) & (len(groups) > 1)
    i, j, d = covalent_bonds(atoms)
    broken = np.linalg.norm(positions[j] - positions[i] - d, axis=1) > 1e-6
    if broken.any():
        label = np.empty(len(atoms), dtype=np.int64)
        for m, g in enumerate(groups):
            label[g] = m
        mask[np.unique(label[i[broken]])] = False
    return mask


def lever_arms(masses: np.ndarray, positions: np.ndarray, groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each atom's molecule index (N,) and its position relative to its molecule's centre of mass (N, 3), from
    whole-molecule ``positions``: a molecule's net torque is the sum over its atoms of lever x force."""
    molecule = np.empty(len(positions), dtype=np.int64)
    lever = np.empty_like(positions)
    for m, g in enumerate(groups):
        molecule[g] = m
        lever[g] = positions[g] - np.average(positions[g], axis=0, weights=masses[g])
    return molecule, lever


def net_force_torque(masses: np.ndarray, positions: np.ndarray, forces: np.ndarray,
                     groups: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each molecule's net force (M, 3) and net torque about its centre of mass (M, 3), from whole-molecule
    ``positions`` (see :func:`molecules`)."""
    molecule, lever = lever_arms(masses, positions, groups)
    force = np.zeros((len(groups), 3))
    torque = np.zeros((len(groups), 3))
    np.add.at(force, molecule, forces)
    np.add.at(torque, molecule, np.cross(lever, forces))
    return force, torque
