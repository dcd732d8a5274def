"""The fidelity report of a student: how closely it follows its teacher, in numbers and in plots.

``fidelity_report(student, labels, out_dir)`` (``hessdistill report STUDENT LABELS``; ``hessdistill distill``
writes one into its run folder) has two parts, and a third on request.

1. **Held-out labels** (the ``test`` split): energy per atom, force and Hessian-row errors, absolute and relative to
   the teacher's own scale (mean absolute force component, mean absolute Hessian entry), and the stress error where
   the labels store the teacher's stress; parity plots.
2. **Physics against the teacher** (the teacher named in the store is loaded; skipped, with the reason, where it
   cannot be): for a molecule, the teacher's minimum near the lowest-energy labelled structure, the student's
   minimum reached from there (RMSD after optimal superposition) and the harmonic frequencies of both at the
   teacher's minimum; for a periodic cell, the energy-volume curve and the pressure over volumetric strains of
   +-``strain`` around the teacher's relaxed cell (lattice constant and bulk modulus from ASE's Birch-Murnaghan
   fit) and the Gamma-point frequencies of the cell.
3. **MD** (with ``md_ps``; periodic structures only): NVT Langevin runs of the student and of the teacher from
   the lowest-energy labelled structure with the same seed, and their radial distribution functions compared
   per element pair (:mod:`.md`); drawn into ``rdf.png``.

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

from ..errors import HessdistillError, InputError
from ..paths import atomic_path, atomic_write_text
from ..label.store import load_labels, store_teacher
from .labels import label_errors
from .md import check_md, md_comparison, plot_rdfs
from .physics import crystal_physics, molecule_physics
from .plots import plot_report

log = logging.getLogger("hessdistill.report")


def fidelity_report(student, labels, out_dir, teacher=None, split: str = "test", physics: bool = True,
                    strain: float = 0.02, progress: bool = True, md_ps: Optional[float] = None,
                    md_temperature_K: float = 300.0, md_timestep_fs: float = 0.5) -> dict:
    """Write ``report.json`` and ``report.png`` (and with ``md_ps``, ``rdf.png``) into ``out_dir``; returns the
    report (see module docstring).

    ``teacher``: a teacher object or name; default the one named in the label store. ``physics=False`` skips the
    physics checks against the teacher. ``md_ps``: picoseconds of the MD comparison (None: none), from the
    lowest-energy structure of the store, which must be periodic in all three directions (InputError otherwise,
    before any work).
    """
    from ..engines.ase import StudentCalculator
    from ..teachers import load_teacher

    if isinstance(teacher, str):  # a bad name is the user's error, not a reason to skip the physics part
        teacher = load_teacher(teacher)
    items = load_labels(labels)
    chosen = [it for it in items if it.split == split]
    if not chosen:
        raise InputError(f"label store {labels} has no '{split}' structures to report on")
    # the physics checks and the MD comparison start from the lowest-energy labelled structure
    start = min(items, key=lambda it: it.energy / len(it.numbers)).atoms()
    if md_ps is not None:
        check_md(start, md_ps)
    calculator = StudentCalculator(student)
    errors, values = label_errors(chosen, calculator, progress=progress)
    report: dict = {"student": str(student), "labels": str(labels), "split": split, "label_errors": errors}
    mismatch = _teacher_mismatch(student, labels)
    if mismatch:
        log.warning("fidelity report: %s", mismatch)
        report["warnings"] = [mismatch]
    t, missing = None, ""
    if physics or md_ps is not None:
        try:
            t = _load_teacher(teacher, labels)
        except HessdistillError as exc:  # the label part stands on its own; say why the teacher's parts are missing
            missing = f"{type(exc).__name__}: {exc}"
    if physics:
        report["physics"] = _skipped("physics part", missing) if t is None else _physics(start, t, calculator, strain)
    curves = None
    if md_ps is not None:
        try:
            if t is None:
                raise InputError(missing)
            report["md"], curves = md_comparison(start, t, calculator, md_ps, temperature_K=md_temperature_K,
                                                 timestep_fs=md_timestep_fs, progress=progress)
        except HessdistillError as exc:
            report["md"] = _skipped("MD comparison", str(exc) if t is None else f"{type(exc).__name__}: {exc}")
    out = Path(out_dir)
    atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    with atomic_path(out / "report.png") as tmp:
        plot_report(report, values, tmp)
    if curves is not None:
        with atomic_path(out / "rdf.png") as tmp:
            plot_rdfs(report["md"], curves, tmp)
    return report


def _load_teacher(teacher, labels):
    """``teacher`` (an object), or the teacher named in the label store."""
    from ..teachers import load_teacher

    name = teacher if teacher is not None else store_teacher(labels)
    if not name:
        raise InputError("the label store names no teacher; pass one")
    return load_teacher(name) if isinstance(name, str) else name


def _physics(start, teacher, calculator, strain: float) -> dict:
    """The physics checks of a molecule or a crystal (skipped, with the reason, where they cannot run)."""
    try:
        if start.pbc.all():
            return crystal_physics(start, teacher, calculator, strain=strain)
        if not start.pbc.any():
            return molecule_physics(start, teacher, calculator)
        return {"skipped": "partly periodic structures: neither molecule nor crystal"}
    except HessdistillError as exc:
        return _skipped("physics part", f"{type(exc).__name__}: {exc}")


def _skipped(part: str, why: str) -> dict:
    log.warning("fidelity report: %s skipped: %s", part, why)
    return {"skipped": why}


def _teacher_mismatch(student, labels) -> str:
    """A warning when the student file names another teacher than the label store ('' when they agree or either
    names none)."""
    from ..formats import read_metadata

    try:
        trained_on = str(read_metadata(student).get("teacher", ""))
    except Exception:  # the metadata is informative only; the student was already loaded above
        return ""
    stored = store_teacher(labels)
    if trained_on and stored and trained_on != stored:
        return f"the student was distilled from teacher {trained_on}, the label store was labelled by {stored}"
    return ""


def _percent(x, digits: int) -> str:
    """A fraction as a percentage; 'n/a' where it is undefined (no forces to compare with: a single atom)."""
    return f"{100 * x:.{digits}f}%" if x is not None and x == x and abs(x) != float("inf") else "n/a"


def summary_lines(report: dict) -> list[str]:
    """A few lines a person reads first."""
    e = report["label_errors"]
    lines = [f"held-out {report['split']} ({e['structures']} structures): force MAE {1e3 * e['force_mae']:.2f} meV/A "
             f"= {_percent(e['force_mae_relative'], 2)} of the teacher's mean |F| component; energy MAE "
             f"{1e3 * e['energy_mae_per_atom']:.2f} meV/atom after removing the mean offset "
             f"({1e3 * e['energy_offset_per_atom']:+.2f} meV/atom)"]
    if "hessian_mae" in e:
        lines.append(f"Hessian MAE {e['hessian_mae']:.4f} eV/A^2 = {100 * e['hessian_mae_relative']:.1f}% of the "
                     "teacher's mean |H| entry")
    if "net_force_mae" in e:
        lines.append(f"intermolecular ({e['most_molecules']} molecules): net force per molecule MAE "
                     f"{1e3 * e['net_force_mae']:.2f} meV/A = {100 * e['net_force_mae_relative']:.1f}%, net torque "
                     f"MAE {1e3 * e['net_torque_mae']:.2f} meV = {100 * e['net_torque_mae_relative']:.1f}% of the "
                     "teacher's mean |component|")
    if "stress_mae" in e:
        lines.append(f"stress MAE {1e3 * e['stress_mae']:.3f} meV/A^3 = {_percent(e['stress_mae_relative'], 1)}")
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
    md: Optional[dict] = report.get("md")
    if md and "skipped" in md:
        lines.append(f"MD comparison skipped: {md['skipped']}")
    elif md:
        lines.append(f"NVT MD {md['ps']:g} ps at {md['temperature_K']:g} K, same start and seed: RDF difference "
                     f"(integral of |g_student - g_teacher| / integral of g_teacher) max {md['max_rdf_difference']:.3f}"
                     + (f" ({md['worst_pair']})" if md["worst_pair"] else ""))
        for pair, d in md["pairs"].items():
            lines.append(f"  {pair}: difference {d['rdf_difference']:.3f}; first peak student "
                         f"{d['student_first_peak_A']:.2f} A (g {d['student_first_peak_height']:.2f}), teacher "
                         f"{d['teacher_first_peak_A']:.2f} A (g {d['teacher_first_peak_height']:.2f})")
        for who, run in md["runs"].items():
            if run["stopped"]:
                lines.append(f"  the {who}'s run stopped at step {run['steps_done']} of {md['steps']}: {run['reason']}")
    return lines
