"""Harmonic analysis from a Hessian: relaxation to a minimum, normal modes, and normal-mode sampling.

The Hessian (eV/A^2) is mass-weighted and its rigid-body motions are projected out explicitly (three translations,
plus three rotations for a molecule, two for a linear one), so the vibrational modes are exactly the 3N - 6
(3N - 3 for a periodic cell) others. ``ase.vibrations.VibrationsData`` diagonalises without that projection: its
near-zero rigid-body frequencies would be sampled with huge amplitudes.

Normal-mode sampling (as for the ANI data sets) draws each vibrational mode's coordinate from its classical
Boltzmann distribution at temperature T: ``q_k ~ N(0, kT / w_k^2)`` in mass-weighted coordinates, so every sampled
mode carries kT / 2 of harmonic energy on average.

A mode is a straight line in Cartesian space, while soft modes (methyl and other torsions, intermolecular modes)
are rotations: at their thermal amplitude the straight line stretches bonds. Measured on acetic acid with ANI-1x
at 600 K: the 60 cm^-1 methyl torsion moves hydrogens by ~2 A, and a third of the samples lay 5-16 eV above the
minimum, where teacher MD at the same temperature stays within 0.4 eV. Given the teacher's ``energy``, each
harmonic proposal x is therefore accepted with probability ``min(1, exp(-(E(x) - E0 - E_harm(x)) / kT))``: rejection
sampling from the harmonic distribution towards the teacher's own Boltzmann distribution (exact where the teacher
is stiffer than harmonic, which is where the broken structures lie; where it is softer the harmonic weight is kept).

Example
-------
>>> minimum = relax(atoms, teacher.as_calculator())
>>> modes = normal_modes(minimum, teacher.hessian(minimum))
>>> modes.frequencies_cm            # vibrational frequencies, cm^-1 (negative: imaginary)
>>> frames = normal_mode_samples(minimum, modes, n=100, temperature=300.0, seed=0)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from ase import Atoms, units

from ..errors import InputError

log = logging.getLogger("hessdistill.sample.modes")

#: eV of hbar * omega for a mass-weighted eigenvalue of 1 eV/A^2/amu (as ase.vibrations)
_HBAR_OMEGA_EV = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


@dataclass
class NormalModes:
    """Vibrational modes of a structure: ``eigenvalues`` (eV/A^2/amu, mass-weighted), ``vectors`` (3N, M),
    orthonormal mass-weighted eigenvectors as columns, and the masses (amu) they refer to."""

    eigenvalues: np.ndarray
    vectors: np.ndarray
    masses: np.ndarray

    @property
    def frequencies_cm(self) -> np.ndarray:
        """Frequencies in cm^-1; an imaginary frequency (negative eigenvalue) is given as a negative number."""
        w = _HBAR_OMEGA_EV * np.sqrt(np.abs(self.eigenvalues)) / units.invcm
        return np.where(self.eigenvalues < 0, -w, w)

    def displacements(self) -> np.ndarray:
        """Cartesian displacement of each mode for a unit mass-weighted amplitude: (M, N, 3), A / sqrt(amu)."""
        inv_sqrt_m = np.repeat(1.0 / np.sqrt(self.masses), 3)
        return (self.vectors * inv_sqrt_m[:, None]).T.reshape(self.vectors.shape[1], -1, 3)


def rigid_body_basis(atoms: Atoms) -> np.ndarray:
    """Orthonormal mass-weighted translations (and rotations for a non-periodic structure), columns of (3N, k)."""
    m = atoms.get_masses()
    sqrt_m = np.sqrt(m)
    n = len(atoms)
    vectors = []
    for d in range(3):
        t = np.zeros((n, 3))
        t[:, d] = sqrt_m
        vectors.append(t.reshape(-1))
    if not atoms.pbc.any():
        r = atoms.positions - atoms.get_center_of_mass()
        for d in range(3):
            axis = np.zeros(3)
            axis[d] = 1.0
            vectors.append((np.cross(axis, r) * sqrt_m[:, None]).reshape(-1))
    basis = np.array(vectors).T
    # orthonormalise, dropping a rotation about a linear molecule's axis (zero vector)
    u, s, _ = np.linalg.svd(basis, full_matrices=False)
    return u[:, s > 1e-8 * s.max()]


def normal_modes(atoms: Atoms, hessian: np.ndarray) -> NormalModes:
    """The vibrational modes of ``atoms`` from its (3N, 3N) Hessian in eV/A^2 (rigid-body motions removed)."""
    n3 = 3 * len(atoms)
    h = np.asarray(hessian, dtype=float)
    if h.shape != (n3, n3):
        raise InputError(f"normal modes need the full Hessian, shape ({n3}, {n3}) for {len(atoms)} atoms; "
                         f"got {h.shape}")
    if not np.all(np.isfinite(h)):
        raise InputError("the Hessian has non-finite entries")
    masses = atoms.get_masses()
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    d = 0.5 * (h + h.T) * np.outer(inv_sqrt_m, inv_sqrt_m)
    rigid = rigid_body_basis(atoms)
    project = np.eye(n3) - rigid @ rigid.T
    eigenvalues, vectors = np.linalg.eigh(project @ d @ project)
    # the rigid-body subspace gives zero eigenvalues; keep the eigenvectors orthogonal to it
    vibrational = np.sum((rigid.T @ vectors) ** 2, axis=0) < 0.5
    if vibrational.sum() != n3 - rigid.shape[1]:
        raise InputError(f"could not separate {rigid.shape[1]} rigid-body modes from the vibrations "
                         f"({int(vibrational.sum())} of {n3} modes left)")
    return NormalModes(eigenvalues[vibrational], vectors[:, vibrational], masses)


def relax(atoms: Atoms, calculator, fmax: float = 1e-3, steps: int = 1000) -> Atoms:
    """A copy of ``atoms`` relaxed at fixed cell (ASE's BFGS) until the largest force is below ``fmax`` eV/A."""
    from ase.optimize import BFGS

    relaxed = atoms.copy()
    relaxed.calc = calculator
    opt = BFGS(relaxed, logfile=None)
    converged = opt.run(fmax=fmax, steps=steps)
    fmax_found = float(np.linalg.norm(relaxed.get_forces(), axis=1).max())
    if not converged:
        log.warning("relaxation stopped after %d steps with max force %.3g eV/A (asked %.3g)", steps, fmax_found,
                    fmax)
    out = Atoms(relaxed.numbers, relaxed.positions, cell=relaxed.cell, pbc=relaxed.pbc)
    out.info["relax_fmax"] = fmax_found
    return out


def normal_mode_samples(atoms: Atoms, modes: NormalModes, n: int, temperature: float, seed: int = 0,
                        min_frequency_cm: float = 50.0, rng: Optional[np.random.Generator] = None,
                        energy: Optional[Callable[[Atoms], float]] = None, max_tries: int = 100) -> list[Atoms]:
    """``n`` structures displaced along the vibrational modes with classical Boltzmann amplitudes at
    ``temperature`` K (seeded).

    Modes below ``min_frequency_cm`` (soft torsions, whose harmonic amplitude is far outside the harmonic
    region) and imaginary modes (the structure is not a minimum) are left undisplaced, with a warning that counts
    them.

    ``energy``: the teacher's energy (eV) of a structure; with it each proposal is accepted with the probability
    of the module docstring, so structures that the straight-line modes tore apart are not returned. At most
    ``max_tries`` proposals per structure are made; fewer accepted structures raise InputError (lower the
    temperature).
    """
    if n < 0 or temperature <= 0:
        raise InputError(f"normal-mode sampling needs n >= 0 and a temperature > 0 K, got n={n}, "
                         f"T={temperature}")
    freq = modes.frequencies_cm
    use = freq >= min_frequency_cm
    if (~use).any():
        log.warning("normal-mode sampling leaves %d of %d modes undisplaced (%d imaginary, %d below %g cm^-1)",
                    int((~use).sum()), len(freq), int((freq < 0).sum()), int(((freq >= 0) & ~use).sum()),
                    min_frequency_cm)
    rng = rng if rng is not None else np.random.default_rng(seed)
    kt = units.kB * temperature
    eigenvalues = modes.eigenvalues[use]
    sigma = np.sqrt(kt / eigenvalues)  # mass-weighted amplitude, A sqrt(amu)
    shapes = modes.displacements()[use]  # (M, N, 3)
    e0 = energy(atoms) if energy is not None and n > 0 else 0.0
    out, tries = [], 0
    while len(out) < n and tries < max_tries * n:
        tries += 1
        q = rng.normal(size=sigma.shape) * sigma
        frame = Atoms(atoms.numbers, atoms.positions + np.tensordot(q, shapes, axes=1), cell=atoms.cell,
                      pbc=atoms.pbc)
        if energy is not None:
            excess = energy(frame) - e0 - 0.5 * float(np.sum(eigenvalues * q**2))  # over the harmonic energy
            if excess > 0 and rng.random() >= np.exp(-excess / kt):
                continue
        out.append(frame)
    if energy is not None and n > 0:
        log.info("normal-mode sampling at %g K: %d of %d proposals accepted", temperature, len(out), tries)
    if len(out) < n:
        raise InputError(f"normal-mode sampling at {temperature:g} K accepted only {len(out)} of {tries} proposals "
                         f"(the teacher's energy is far above harmonic there); lower the temperature or use MD")
    return out
