"""The fidelity report of a student: how closely it follows its teacher, in numbers and in plots.

``fidelity_report(student, labels, out_dir)`` (``hessdistill report STUDENT LABELS``; ``hessdistill distill``
writes one into its run folder) has two parts.

1. **Held-out labels** (the ``test`` split): energy per atom, force and Hessian-row errors, absolute and relative to
   the teacher's own scale (mean absolute force component, mean absolute Hessian entry), and the stress error where
   the labels store the teacher's stress; parity plots.
2. **Physics against the teacher** (the teacher named in the store is loaded; skipped, with the reason, where it
   cannot be): for a molecule, the teacher's minimum near the lowest-energy labelled structure, the student's
   minimum reached from there (RMSD after optimal superposition) and the harmonic frequencies of both at the
   teacher's minimum; for a periodic cell, the energy-volume curve and the pressure over volumetric strains of
   +-``strain`` around the teacher's relaxed cell (lattice constant and bulk modulus from ASE's Birch-Murnaghan
   fit) and the Gamma-point frequencies of the cell.

The student is evaluated through its exported file (:class:`~hessdistill.engines.ase.StudentCalculator`), so a
TorchScript, ``.pt2`` or metatomic file are checked alike: its Hessian is taken by central differences of its
forces (a ``.pt2`` package has no autograd), the teacher's by its own autograd.

Example
-------
>>> report = fidelity_report("run/student.pt", "labels.h5", "run/report")
>>> report["labels"]["force_mae_relative"], report["physics"]["frequency_rms_relative"]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms

from .errors import InputError
from .label.store import load_labels, store_teacher

log = logging.getLogger("hessdistill.fidelity")

#: coordinates of each structure's stored Hessian rows compared (each costs two student force calls)
HESSIAN_ROWS = 6
#: central-difference step of the student's Hessian, A
FD_STEP = 1e-3
#: cm^-1 below which a mode is soft (kT / hc is 208 cm^-1 at 300 K): torsions, librations and other modes that MD
#: drives far beyond the harmonic region, whose small curvatures make their relative errors large (a methyl torsion
#: at 52 cm^-1 off by 16 cm^-1 is 31%); the report gives their errors in cm^-1 and the stiff modes' as relative
SOFT_MODE_CM = 200.0


def student_hessian(atoms: Atoms, calculator, rows=None, step: float = FD_STEP) -> np.ndarray:
    """Rows (all when None) of the Hessian of ``calculator``'s energy at ``atoms``, by central differences of the
    forces: row k = -(F(x + h e_k) - F(x - h e_k)) / 2h."""
    n3 = 3 * len(atoms)
    rows = np.arange(n3) if rows is None else np.asarray(rows, dtype=int)
    probe = atoms.copy()
    probe.calc = calculator
    x0 = atoms.positions.reshape(-1)
    out = np.empty((len(rows), n3))
    for r, k in enumerate(rows):
        forces = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[k] += sign * step
            probe.positions = x.reshape(-1, 3)
            forces.append(probe.get_forces().reshape(-1))
        out[r] = -(forces[0] - forces[1]) / (2.0 * step)
    return out


def kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """RMSD of two conformations (N, 3) after the optimal rotation and translation (Kabsch)."""
    p, q = a - a.mean(axis=0), b - b.mean(axis=0)
    u, _, vt = np.linalg.svd(p.T @ q)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1.0, 1.0, d]) @ vt
    return float(np.sqrt(((p @ rot - q) ** 2).sum(axis=1).mean()))


def label_errors(items, calculator, hessian_rows: int = HESSIAN_ROWS, progress: bool = True) -> tuple[dict, dict]:
    """Errors of the student on labelled structures, and the paired values for parity plots."""
    from .progress import progress_bar

    pairs = {"energy_per_atom": ([], []), "forces": ([], []), "hessian": ([], []), "stress": ([], [])}
    bar = progress_bar(len(items), "report: held-out labels", unit="structure", enabled=progress)
    for item in items:
        bar.update(1)
        atoms = item.atoms()
        atoms.calc = calculator
        n = len(atoms)
        pairs["energy_per_atom"][0].append(item.energy / n)
        pairs["energy_per_atom"][1].append(atoms.get_potential_energy() / n)
        pairs["forces"][0].append(item.forces.reshape(-1))
        pairs["forces"][1].append(atoms.get_forces().reshape(-1))
        teacher_stress = getattr(item, "stress", None)
        if teacher_stress is not None and atoms.pbc.all():
            pairs["stress"][0].append(np.asarray(teacher_stress).reshape(-1))
            pairs["stress"][1].append(atoms.get_stress(voigt=True))
        k = min(hessian_rows, len(item.hessian_rows))
        if k:
            pairs["hessian"][0].append(item.hessian[:k].reshape(-1))
            pairs["hessian"][1].append(student_hessian(atoms, calculator, item.hessian_rows[:k]).reshape(-1))
    bar.close()
    values = {key: tuple(np.concatenate([np.atleast_1d(x) for x in side]) if side else np.zeros(0) for side in v)
              for key, v in pairs.items()}
    e_t, e_s = values["energy_per_atom"]
    # energies up to a constant: the student's zero is its own; compare after removing the mean offset
    offset = float(np.mean(e_s - e_t))
    errors = {"structures": len(items), "energy_offset_per_atom": offset,
              "energy_mae_per_atom": float(np.mean(np.abs(e_s - e_t - offset))),
              "energy_mae_per_atom_raw": float(np.mean(np.abs(e_s - e_t)))}
    for key, scale_name in (("forces", "force"), ("hessian", "hessian"), ("stress", "stress")):
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


def molecule_physics(start: Atoms, teacher, calculator, fmax: float = 1e-3) -> dict:
    """Teacher's minimum near ``start``, the student's minimum from there (RMSD), frequencies at the teacher's
    minimum."""
    from .modes import normal_modes, relax

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

    from .modes import normal_modes, relax

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


def fidelity_report(student, labels, out_dir, teacher=None, split: str = "test", physics: bool = True,
                    strain: float = 0.02, progress: bool = True) -> dict:
    """Write ``report.json`` and ``report.png`` into ``out_dir``; returns the report (see module docstring).

    ``teacher``: a teacher object or name; default the one named in the label store. ``physics=False`` skips the
    part that calls the teacher.
    """
    from .engines.ase import StudentCalculator
    from .teachers import load_teacher

    items = load_labels(labels)
    chosen = [it for it in items if it.split == split]
    if not chosen:
        raise InputError(f"label store {labels} has no '{split}' structures to report on")
    calculator = StudentCalculator(student)
    errors, values = label_errors(chosen, calculator, progress=progress)
    report: dict = {"student": str(student), "labels": str(labels), "split": split, "label_errors": errors}
    if physics:
        name = teacher if teacher is not None else store_teacher(labels)
        try:
            if not name:
                raise InputError("the label store names no teacher; pass one")
            t = load_teacher(name) if isinstance(name, str) else name
            start = min(items, key=lambda it: it.energy / len(it.numbers)).atoms()
            if start.pbc.all():
                report["physics"] = crystal_physics(start, t, calculator, strain=strain)
            elif not start.pbc.any():
                report["physics"] = molecule_physics(start, t, calculator)
            else:
                report["physics"] = {"skipped": "partly periodic structures: neither molecule nor crystal"}
        except Exception as exc:  # the label part stands on its own; say why the physics part is missing
            log.warning("fidelity report: physics part skipped: %s", exc)
            report["physics"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot_report(report, values, out / "report.png")
    return report


def summary_lines(report: dict) -> list[str]:
    """A few lines a person reads first."""
    e = report["label_errors"]
    lines = [f"held-out {report['split']} ({e['structures']} structures): force MAE {1e3 * e['force_mae']:.2f} meV/A "
             f"= {100 * e['force_mae_relative']:.2f}% of the teacher's mean |F| component; energy MAE "
             f"{1e3 * e['energy_mae_per_atom']:.2f} meV/atom after removing the mean offset "
             f"({1e3 * e['energy_offset_per_atom']:+.2f} meV/atom)"]
    if "hessian_mae" in e:
        lines.append(f"Hessian MAE {e['hessian_mae']:.4f} eV/A^2 = {100 * e['hessian_mae_relative']:.1f}% of the "
                     "teacher's mean |H| entry")
    if "stress_mae" in e:
        lines.append(f"stress MAE {1e3 * e['stress_mae']:.3f} meV/A^3 = {100 * e['stress_mae_relative']:.1f}%")
    p: Optional[dict] = report.get("physics")
    if p and "skipped" in p:
        lines.append(f"physics checks skipped: {p['skipped']}")
    elif p:
        line = (f"harmonic frequencies: rms relative error {100 * p['frequency_rms_relative']:.2f}%, MAE "
                f"{p['frequency_mae_cm']:.1f} cm^-1")
        if p.get("soft_modes"):  # without soft modes (or in a report older than the split) the split says nothing new
            stiff = p["stiff_frequency_rms_relative"]
            line += (f"; modes above {p['soft_mode_cm']:.0f} cm^-1: " +
                     (f"rms relative error {100 * stiff:.2f}%" if stiff is not None else "none") +
                     f"; {p['soft_modes']} softer mode(s): MAE {p['soft_frequency_mae_cm']:.1f} cm^-1")
        lines.append(line)
        if p["kind"] == "molecule":
            lines.append(f"student minimum vs teacher minimum: RMSD {p['minimum_rmsd']:.4f} A")
        else:
            lines.append(f"pressure over +-{100 * max(p['strains']):.0f}% strain: max error "
                         f"{p['pressure_max_error_GPa']:.3f} GPa = {100 * p['pressure_error_relative']:.1f}% of the "
                         f"teacher's largest; lattice constant {100 * p['lattice_constant_error_relative']:+.2f}%, "
                         f"bulk modulus {100 * p['bulk_modulus_error_relative']:+.1f}%")
    return lines


def plot_report(report: dict, values: dict, png) -> None:
    """Parity plots (energy, forces, Hessian entries, stress), frequencies and the pressure curve, one PNG."""
    from matplotlib.figure import Figure  # not pyplot: no backend switch or global figure state for the caller

    panels = [("energy_per_atom", "energy per atom (eV)"), ("forces", "force components (eV/A)"),
              ("hessian", "Hessian entries (eV/A$^2$)"), ("stress", "stress (eV/A$^3$)")]
    panels = [(k, label) for k, label in panels if len(values[k][0])]
    physics = report.get("physics") or {}
    extra = [] if "skipped" in physics or not physics else (["frequencies"] +
                                                             (["pressure"] if physics["kind"] == "crystal" else []))
    n = len(panels) + len(extra)
    fig = Figure(figsize=(4.0 * n, 4.0))
    axes = [fig.add_subplot(1, n, k + 1) for k in range(n)]
    for ax, (key, label) in zip(axes, panels):
        t, s = values[key]
        lo, hi = float(min(t.min(), s.min())), float(max(t.max(), s.max()))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
        ax.plot(t, s, ".", ms=2 if len(t) > 2000 else 4, alpha=0.6)
        ax.set_xlabel(f"teacher {label}")
        ax.set_ylabel("student")
        err = report["label_errors"]
        name = {"energy_per_atom": "energy", "forces": "force"}.get(key, key)
        mae = err.get(f"{name}_mae_per_atom" if key == "energy_per_atom" else f"{name}_mae")
        rel = err.get(f"{name}_mae_relative")
        ax.set_title(f"MAE {mae:.3g}" + (f" ({100 * rel:.1f}% of mean |teacher|)" if rel is not None else ""),
                     fontsize=9)
    rest = axes[len(panels):]
    if "frequencies" in extra:
        ax = rest[0]
        t, s = np.array(physics["teacher_frequencies_cm"]), np.array(physics["student_frequencies_cm"])
        ax.axhline(0.0, color="0.6", lw=1)
        ax.plot(t, 100 * (s - t) / np.where(np.abs(t) > 1e-9, t, np.nan), "o", ms=4)
        ax.set_xlabel("teacher frequency (cm$^{-1}$)")
        ax.set_ylabel("student - teacher (%)")
        title = f"frequencies: rms {100 * physics['frequency_rms_relative']:.2f}%"
        if physics.get("soft_modes") and physics.get("stiff_frequency_rms_relative") is not None:
            ax.axvline(physics["soft_mode_cm"], color="0.6", lw=1, ls="--")
            stiff = physics["stiff_frequency_rms_relative"]
            title += f" (above {physics['soft_mode_cm']:.0f} cm$^{{-1}}$: {100 * stiff:.2f}%)"
        ax.set_title(title, fontsize=9)
    if "pressure" in extra:
        ax = rest[1]
        strain = 100 * np.array(physics["strains"])
        ax.plot(strain, physics["teacher_pressure_GPa"], "o-", label="teacher")
        ax.plot(strain, physics["student_pressure_GPa"], "s--", label="student")
        ax.set_xlabel("volumetric strain (%)")
        ax.set_ylabel("pressure (GPa)")
        ax.legend(fontsize=8)
        ax.set_title(f"pressure: max error {100 * physics['pressure_error_relative']:.1f}%", fontsize=9)
    fig.suptitle(f"{Path(report['student']).name} vs teacher, {report['split']} split", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
