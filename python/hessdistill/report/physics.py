"""Physics against the teacher: minima and harmonic frequencies of a molecule; equation of state, pressure and
Gamma-point frequencies of a crystal.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms

from .labels import student_hessian


#: cm^-1 below which a mode is soft (kT / hc is 208 cm^-1 at 300 K): torsions, librations and other modes that MD
#: drives far beyond the harmonic region, whose small curvatures make their relative errors large (a methyl torsion
#: at 52 cm^-1 off by 16 cm^-1 is 31%); the report gives their errors in cm^-1 and the stiff modes' as relative
SOFT_MODE_CM = 200.0


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of two conformations (N, 3) after the optimal rotation and translation (Kabsch)."""
    p, q = a - a.mean(axis=0), b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((p @ rot - q) ** 2).sum(axis=1).mean()))


def molecule_physics(start: Atoms, teacher, calculator, fmax: float = 1e-3) -> dict:
    """Teacher's minimum near ``start``, the student's minimum from there (RMSD), frequencies at the teacher's
    minimum."""
    from ..sample.modes import normal_modes, relax

    teacher_min = relax(start, teacher.as_calculator(), fmax=fmax)
    student_min = relax(teacher_min, calculator, fmax=fmax)
    t_freq = normal_modes(teacher_min, teacher.hessian(teacher_min)).frequencies_cm
    s_freq = normal_modes(teacher_min, student_hessian(teacher_min, calculator)).frequencies_cm
    return {"kind": "molecule", "minimum_rmsd": kabsch_rmsd(student_min.positions, teacher_min.positions),
            **frequency_errors(t_freq, s_freq)}


def frequency_errors(teacher_cm: np.ndarray, student_cm: np.ndarray, floor_cm: float = 50.0,
                     soft_cm: float = SOFT_MODE_CM) -> dict:
    """Frequency errors over the teacher's modes above ``floor_cm`` (relative errors of near-zero modes are
    meaningless), and separately over the stiff modes (at or above ``soft_cm``, as relative errors) and the soft
    ones (between the two, in cm^-1)."""
    teacher_cm, student_cm = np.asarray(teacher_cm, float), np.asarray(student_cm, float)
    use = teacher_cm > floor_cm
    error = student_cm[use] - teacher_cm[use]
    rel = error / teacher_cm[use]
    stiff = teacher_cm[use] >= soft_cm
    soft_errors = np.abs(error[~stiff])
    return {"teacher_frequencies_cm": teacher_cm.tolist(), "student_frequencies_cm": student_cm.tolist(),
            "frequency_mae_cm": float(np.mean(np.abs(error))),
            "frequency_rms_relative": float(np.sqrt(np.mean(rel**2))), "frequency_floor_cm": floor_cm,
            "stiff_frequency_rms_relative": float(np.sqrt(np.mean(rel[stiff]**2))) if stiff.any() else None,
            "soft_modes": int(soft_errors.size), "soft_frequency_mae_cm": float(np.mean(soft_errors))
            if soft_errors.size else None, "soft_mode_cm": soft_cm}


def crystal_physics(start: Atoms, teacher, calculator, strain: float = 0.02, points: int = 9,
                    fmax: float = 1e-3) -> dict:
    """Energy and pressure over volumetric strains of +-``strain`` (isotropic scaling of the teacher-relaxed
    cell), Birch-Murnaghan fits of both, and Gamma-point frequencies at the teacher's relaxed positions."""
    from ase.eos import EquationOfState
    from ase.units import GPa

    from ..sample.modes import normal_modes, relax

    teacher_min = relax(start, teacher.as_calculator(), fmax=fmax)
    strains = np.linspace(-strain, strain, points)

    def scaled(eps: float) -> Atoms:
        cell = teacher_min.copy()
        cell.set_cell(teacher_min.cell * (1.0 + eps) ** (1.0 / 3.0), scale_atoms=True)
        return cell

    volumes, e_t, e_s, p_t, p_s = [], [], [], [], []
    for eps in strains:
        cell = scaled(eps)
        volumes.append(cell.get_volume())
        e_t.append(teacher.energy_forces(cell)[0])
        # the teacher's pressure as -dE/dV under the same affine scaling (central differences; every teacher has
        # energies), the student's from its own autograd stress: two independent routes
        h = 1e-4
        plus, minus = scaled(eps + h), scaled(eps - h)
        dv = plus.get_volume() - minus.get_volume()
        p_t.append(-(teacher.energy_forces(plus)[0] - teacher.energy_forces(minus)[0]) / dv / GPa)
        cell.calc = calculator
        e_s.append(cell.get_potential_energy())
        p_s.append(-np.mean(cell.get_stress(voigt=True)[:3]) / GPa)
    volumes = np.array(volumes)
    fits = {}
    for name, energies in (("teacher", e_t), ("student", e_s)):
        v0, e0, b = EquationOfState(volumes, np.array(energies), eos="birchmurnaghan").fit()
        fits[name] = {"volume": float(v0), "bulk_modulus_GPa": float(b / GPa),
                      "lattice_scale": float((v0 / teacher_min.get_volume()) ** (1.0 / 3.0))}
    p_t, p_s = np.array(p_t), np.array(p_s)
    t_freq = normal_modes(teacher_min, teacher.hessian(teacher_min)).frequencies_cm
    s_freq = normal_modes(teacher_min, student_hessian(teacher_min, calculator)).frequencies_cm
    return {"kind": "crystal", "strains": strains.tolist(), "volumes": volumes.tolist(),
            "teacher_energies": list(map(float, e_t)), "student_energies": list(map(float, e_s)),
            "teacher_pressure_GPa": p_t.tolist(), "student_pressure_GPa": p_s.tolist(),
            "pressure_max_error_GPa": float(np.max(np.abs(p_s - p_t))),
            "pressure_error_relative": float(np.max(np.abs(p_s - p_t)) / max(np.max(np.abs(p_t)), 1e-12)),
            "eos": fits, "lattice_constant_error_relative": fits["student"]["lattice_scale"]
            / fits["teacher"]["lattice_scale"] - 1.0,
            "bulk_modulus_error_relative": fits["student"]["bulk_modulus_GPa"] / fits["teacher"]["bulk_modulus_GPa"]
            - 1.0, **frequency_errors(t_freq, s_freq)}
