"""The student's errors on labelled (held-out) structures: energy per atom, forces, Hessian rows (or products
H v along the stored probes), stress.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms


#: stored Hessian rows (or probes) of each structure compared (each costs two student force calls)
HESSIAN_ROWS = 6
#: central-difference step of the student's Hessian, A
FD_STEP = 1e-3


def student_hessian(atoms: Atoms, calculator, rows=None, step: float = FD_STEP) -> np.ndarray:
    """Rows (all when None) of the Hessian of ``calculator``'s energy at ``atoms``, by central differences of the
    forces: row k = -(F(x + h e_k) - F(x - h e_k)) / 2h."""
    n3 = 3 * len(atoms)
    rows = np.arange(n3) if rows is None else np.asarray(rows, dtype=int)
    return student_products(atoms, calculator, np.eye(n3)[rows], step)


def student_products(atoms: Atoms, calculator, vectors: np.ndarray, step: float = FD_STEP) -> np.ndarray:
    """H v of ``calculator``'s energy at ``atoms`` for each row v of ``vectors`` (k, 3N), by central differences
    of the forces along v: -(F(x + h v) - F(x - h v)) / 2h, (k, 3N)."""
    probe = atoms.copy()
    probe.calc = calculator
    x0 = atoms.positions.reshape(-1)
    out = np.empty((len(vectors), x0.size))
    for r, v in enumerate(vectors):
        forces = []
        for sign in (1.0, -1.0):
            probe.positions = (x0 + sign * step * v).reshape(-1, 3)
            forces.append(probe.get_forces().reshape(-1))
        out[r] = -(forces[0] - forces[1]) / (2.0 * step)
    return out


def label_errors(items, calculator, hessian_rows: int = HESSIAN_ROWS, progress: bool = True) -> tuple[dict, dict]:
    """Errors of the student on labelled structures, and the paired values for parity plots."""
    from ..progress import progress_bar
    from ..molecules import molecules, net_force_torque

    pairs = {"energy_per_atom": ([], []), "forces": ([], []), "hessian": ([], []), "stress": ([], []),
             "net_force": ([], []), "net_torque": ([], [])}
    most_molecules = 1
    bar = progress_bar(len(items), "report: held-out labels", unit="structure", enabled=progress)
    for item in items:
        bar.update(1)
        atoms = item.atoms()
        atoms.calc = calculator
        n = len(atoms)
        pairs["energy_per_atom"][0].append(item.energy / n)
        pairs["energy_per_atom"][1].append(atoms.get_potential_energy() / n)
        student_forces = atoms.get_forces()
        pairs["forces"][0].append(item.forces.reshape(-1))
        pairs["forces"][1].append(student_forces.reshape(-1))
        groups, whole = molecules(atoms)
        if len(groups) > 1:  # the intermolecular part: each molecule's net force and torque
            most_molecules = max(most_molecules, len(groups))
            masses = atoms.get_masses()
            for side, f in enumerate((item.forces, student_forces)):
                force, torque = net_force_torque(masses, whole, f, groups)
                pairs["net_force"][side].append(force.reshape(-1))
                pairs["net_torque"][side].append(torque.reshape(-1))
        teacher_stress = getattr(item, "stress", None)
        if teacher_stress is not None and atoms.pbc.all():
            pairs["stress"][0].append(np.asarray(teacher_stress).reshape(-1))
            pairs["stress"][1].append(atoms.get_stress(voigt=True))
        probes, products = item.probe_pairs()
        k = min(hessian_rows, len(probes))
        if k:
            pairs["hessian"][0].append(products[:k].reshape(-1))
            pairs["hessian"][1].append(student_products(atoms, calculator, probes[:k]).reshape(-1))
    bar.close()
    values = {key: tuple(np.concatenate([np.atleast_1d(x) for x in side]) if side else np.zeros(0) for side in v)
              for key, v in pairs.items()}
    e_t, e_s = values["energy_per_atom"]
    # energies up to a constant: the student's zero is its own; compare after removing the mean offset
    offset = float(np.mean(e_s - e_t))
    errors = {"structures": len(items), "energy_offset_per_atom": offset,
              "energy_mae_per_atom": float(np.mean(np.abs(e_s - e_t - offset))),
              "energy_mae_per_atom_raw": float(np.mean(np.abs(e_s - e_t))), "most_molecules": most_molecules}
    for key, scale_name in (("forces", "force"), ("hessian", "hessian"), ("stress", "stress"),
                            ("net_force", "net_force"), ("net_torque", "net_torque")):
        t, s = values[key]
        if not len(t):
            continue
        scale = float(np.mean(np.abs(t)))
        mae = float(np.mean(np.abs(s - t)))
        errors[f"{scale_name}_mae"] = mae
        errors[f"{scale_name}_rmse"] = float(np.sqrt(np.mean((s - t) ** 2)))
        errors[f"teacher_mean_abs_{scale_name}"] = scale
        errors[f"{scale_name}_mae_relative"] = mae / scale if scale > 0 else float("nan")
    values["energy_per_atom"] = (e_t, e_s - offset)
    return errors, values
