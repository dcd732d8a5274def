"""A short MD comparison of a student and its teacher in a periodic cell: radial distribution functions.

``md_comparison(start, teacher, student_calculator, ps)`` runs NVT Langevin MD (the ASE engine,
:func:`hessdistill.engines.run_md`) of the student and of the teacher from the same structure with the same seed,
temperature and timestep, so both start from identical positions and velocities and feel the same noise; the only
difference between the runs is the potential. From each trajectory it takes the radial distribution function of
every element pair (:func:`hessdistill.monitor.analysis.radial_distributions`, up to half the shortest box
length), leaving out the first ``equilibration`` fraction of the frames, and compares them (:func:`rdf_difference`):

* ``rdf_difference``: the integral of |g_student(r) - g_teacher(r)| over r divided by the integral of
  g_teacher(r): 0 for identical curves, 2 for curves that do not overlap;
* the first peak of each (height and position; see :func:`first_peak`) and the shift of its position.

``max_rdf_difference`` is the largest ``rdf_difference`` over the pairs. A run the energy monitor stops
(non-finite forces) is reported with its reason, and its RDFs are taken from the frames it reached.

Example
-------
>>> md = md_comparison(atoms, load_teacher("morse", cutoff=4.0), StudentCalculator("student.pt"), ps=2.0)
>>> md["max_rdf_difference"], md["pairs"]["C-C"]["first_peak_shift_A"]
"""

from __future__ import annotations

import math
import numbers
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

#: fraction of each run's frames left out of the RDFs (the system leaves the start structure)
EQUILIBRATION = 0.2
#: trajectory frames per run (at most; fewer in runs of fewer steps)
FRAMES = 200


def first_peak(r, g) -> tuple[float, float]:
    """Position and height of the first peak of g(r): the largest value in the first run of points at or above
    half of g's maximum (a noisy rising edge makes no peak of its own). (nan, nan) where g is zero throughout."""
    r, g = np.asarray(r, dtype=float), np.asarray(g, dtype=float)
    top = float(np.max(g)) if len(g) else 0.0
    if not top > 0:
        return math.nan, math.nan
    above = g >= 0.5 * top
    start = int(np.argmax(above))
    below = np.nonzero(~above[start:])[0]
    end = start + (int(below[0]) if len(below) else len(g) - start)
    k = start + int(np.argmax(g[start:end]))
    return float(r[k]), float(g[k])


def rdf_difference(r, g_student, g_teacher) -> dict:
    """The comparison of two g(r) on one grid ``r`` (see the module docstring)."""
    r = np.asarray(r, dtype=float)
    gs, gt = np.asarray(g_student, dtype=float), np.asarray(g_teacher, dtype=float)
    norm = float(np.trapezoid(gt, r))
    diff = float(np.trapezoid(np.abs(gs - gt), r)) / norm if norm > 0 else math.nan
    rs, hs = first_peak(r, gs)
    rt, ht = first_peak(r, gt)
    return {"rdf_difference": diff, "student_first_peak_A": rs, "teacher_first_peak_A": rt,
            "first_peak_shift_A": rs - rt, "student_first_peak_height": hs, "teacher_first_peak_height": ht}


def md_comparison(start, teacher, student_calculator, ps: float, temperature_K: float = 300.0,
                  timestep_fs: float = 0.5, seed: int = 0, friction_per_ps: float = 1.0,
                  progress: bool = False) -> tuple[dict, dict]:
    """NVT MD of ``student_calculator`` (an ASE calculator) and of ``teacher`` from ``start`` for ``ps``
    picoseconds; returns the comparison (module docstring) and the RDFs {pair: (r, g_student, g_teacher)}.

    ``start`` must be periodic in all three directions and ``ps`` > 0 (InputError otherwise).
    """
    from ..engines import MDOptions, run_md
    from ..monitor.analysis import radial_distributions

    check_md(start, ps)
    steps = max(1, round(1000.0 * ps / timestep_fs))
    interval = max(1, steps // FRAMES)
    # no energy limits: NVT does not conserve the total energy; non-finite forces still stop a run
    options = MDOptions(steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K, ensemble="nvt",
                        friction_per_ps=friction_per_ps, report_interval=interval, seed=seed, max_drift=None,
                        max_deviation=None, progress=progress)
    runs, trajectories = {}, {}
    with tempfile.TemporaryDirectory(prefix="hessdistill-md-") as tmp:
        for who, calculator in (("student", student_calculator), ("teacher", teacher.as_calculator())):
            result = run_md("ase", None, start, Path(tmp) / who, options, calculator=calculator)
            runs[who] = {"steps_done": result.steps_done, "stopped": result.stopped, "reason": result.reason,
                         "wall_s": result.wall_s}
            trajectories[who] = _trajectory(result.files["trajectory"])
    # one grid for both runs: up to half the shortest box length (the cell does not change in NVT)
    r_max = min(0.5 * float(np.min(start.cell.lengths())), 10.0)
    rdfs = {who: radial_distributions(traj, r_max_A=r_max) for who, traj in trajectories.items()}
    curves = {pair: (r, rdfs["student"][pair][1], g) for pair, (r, g) in rdfs["teacher"].items()}
    pairs = {pair: rdf_difference(r, gs, gt) for pair, (r, gs, gt) in curves.items()}
    finite = [p for p in pairs if math.isfinite(pairs[p]["rdf_difference"])]  # nan: no such pair within r_max
    worst = max(finite, key=lambda p: pairs[p]["rdf_difference"]) if finite else None
    report = {"ps": float(ps), "temperature_K": float(temperature_K), "timestep_fs": float(timestep_fs),
              "seed": int(seed), "steps": steps, "frames": {who: int(t.n_frames) for who, t in trajectories.items()},
              "equilibration_fraction": EQUILIBRATION, "runs": runs, "pairs": pairs,
              "max_rdf_difference": pairs[worst]["rdf_difference"] if worst else math.nan, "worst_pair": worst}
    return report, curves


def check_md(atoms, ps: float) -> None:
    """InputError unless ``ps`` > 0 and ``atoms`` is periodic in all three directions (the RDFs need a box)."""
    if isinstance(ps, bool) or not isinstance(ps, numbers.Real) or not (ps > 0 and math.isfinite(ps)):
        raise InputError(f"the MD comparison needs a length in picoseconds > 0, got {ps!r}")
    if not atoms.pbc.all():
        raise InputError("the MD comparison needs a structure periodic in all three directions (RDFs in a box); "
                         f"found pbc={[bool(p) for p in atoms.pbc]}")


def _trajectory(path):
    """The frames of an ASE trajectory after the equilibration fraction, as an mdtraj Trajectory."""
    from ase.io import Trajectory

    from ..monitor.analysis import trajectory_from_frames

    with Trajectory(str(path)) as frames:
        atoms = [a for a in frames if np.all(np.isfinite(a.positions))]  # a stopped run may end in a blown-up frame
    if len(atoms) > 2:  # frame 0 is the start structure, the same in both runs
        atoms = atoms[max(1, int(EQUILIBRATION * len(atoms))):]
    return trajectory_from_frames(atoms[0].get_chemical_symbols(), [a.positions for a in atoms],
                                  [a.cell.array for a in atoms])


def plot_rdfs(report: dict, curves: dict, png) -> None:
    """One panel per element pair: the teacher's g(r) solid, the student's dashed."""
    from matplotlib.figure import Figure  # not pyplot: no backend switch or global figure state for the caller

    n = max(1, len(curves))
    fig = Figure(figsize=(4.0 * n, 3.6))
    for k, (pair, (r, gs, gt)) in enumerate(curves.items()):
        ax = fig.add_subplot(1, n, k + 1)
        ax.plot(r, gt, "-", lw=1.2, label="teacher")
        ax.plot(r, gs, "--", lw=1.2, label="student")
        ax.set_xlabel("r (A)")
        ax.set_ylabel("g(r)")
        ax.set_title(f"{pair}: difference {report['pairs'][pair]['rdf_difference']:.3f}", fontsize=9)
        ax.legend(fontsize=8)
    fig.suptitle(f"NVT {report['ps']:g} ps at {report['temperature_K']:g} K", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
