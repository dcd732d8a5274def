"""Stability analysis of an MD trajectory with mdtraj, for any engine (OpenMM DCD, ASE or LAMMPS frames).

* Bond-length deviation: for every covalent bond (from the topology, or from the reference geometry where two
  atoms are closer than ``scale`` x the sum of their covalent radii), the largest |d(t) - d_ref| over the run.
  A run whose largest deviation passes 0.5 A is flagged unstable (the criterion of Fu et al. 2023, "Forces are
  not enough", TMLR).
* Radial distribution functions per element pair (``mdtraj.compute_rdf``) for periodic trajectories.
* A PNG with the energy drift (from an energy-monitor CSV, see ``monitor``), the bond deviation and the RDFs.

Example
-------
>>> from hessdistill.monitor.analysis import load_trajectory, analyze
>>> traj = load_trajectory("run/trajectory.dcd", "run/topology.pdb")
>>> report = analyze(traj, monitor_csv="run/monitor.csv", png="run/analysis.png")
>>> report["unstable"], report["max_bond_deviation_A"]
"""

from __future__ import annotations

import itertools
import logging
from typing import Iterable, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..units import ANGSTROM_TO_NM, NM_TO_ANGSTROM

log = logging.getLogger("hessdistill.monitor.analysis")

#: Largest bond-length deviation (A) a stable run may show (Fu et al. 2023).
BOND_DEVIATION_THRESHOLD = 0.5


def _mdtraj():
    try:
        import mdtraj
    except ImportError as exc:
        raise ImportError(f"trajectory analysis needs mdtraj ({exc}); pip install mdtraj") from exc
    return mdtraj


def guess_bonds(symbols: Sequence[str], positions, cell=None, pbc=False, scale: float = 1.2) -> np.ndarray:
    """Pairs (i < j) closer than ``scale`` x (sum of covalent radii), minimum image when periodic; (B, 2) int.

    ``positions`` and ``cell`` in Angstrom.
    """
    from ase import Atoms

    from ..structures import covalent_bonds

    atoms = Atoms(symbols=list(symbols), positions=np.asarray(positions, dtype=float),
                  cell=cell if cell is not None else np.zeros((3, 3)), pbc=pbc)
    i, j, _ = covalent_bonds(atoms, scale)
    keep = i < j
    return np.unique(np.stack([i[keep], j[keep]], axis=1), axis=0).astype(np.int64).reshape(-1, 2)


def load_trajectory(path, topology, timestep_ps: Optional[float] = None):
    """An mdtraj Trajectory from a trajectory file (DCD, XTC, ...) and a topology (PDB path, mdtraj or OpenMM
    Topology). ``timestep_ps`` (time between frames) sets ``traj.time``; DCD frames otherwise count 0, 1, ..."""
    md = _mdtraj()
    if hasattr(topology, "atoms") and callable(topology.atoms) and not isinstance(topology, md.Topology):
        topology = md.Topology.from_openmm(topology)
    traj = md.load(str(path), top=topology if not isinstance(topology, (str, bytes)) else str(topology))
    if timestep_ps is not None:
        traj.time = np.arange(traj.n_frames) * float(timestep_ps)
    return traj


def trajectory_from_frames(symbols: Sequence[str], positions_A, cells_A=None, times_ps=None):
    """An mdtraj Trajectory from frames in Angstrom (e.g. an ASE run): positions (F, N, 3), cells (F, 3, 3)."""
    md = _mdtraj()
    top = md.Topology()
    residue = top.add_residue("MOL", top.add_chain())
    for k, s in enumerate(symbols):
        top.add_atom(f"{s}{k}", md.element.get_by_symbol(s), residue)
    xyz = np.asarray(positions_A, dtype=np.float32) * ANGSTROM_TO_NM
    traj = md.Trajectory(xyz, top, time=None if times_ps is None else np.asarray(times_ps, dtype=float))
    if cells_A is not None:
        traj.unitcell_vectors = np.asarray(cells_A, dtype=np.float32) * ANGSTROM_TO_NM
    return traj


def _symbols(traj) -> list[str]:
    return [a.element.symbol for a in traj.topology.atoms]


def bond_deviation(traj, bonds: Optional[Iterable] = None, reference=None, threshold: float = BOND_DEVIATION_THRESHOLD,
                   scale: float = 1.2) -> dict:
    """Largest bond-length deviation from the reference geometry, per frame and overall (Angstrom).

    ``bonds``: (B, 2) atom pairs; default the topology's bonds, else guessed from the reference geometry.
    ``reference``: an mdtraj Trajectory whose first frame is the reference (default: the first frame of ``traj``).
    Returns ``per_frame_A`` (F,), ``max_bond_deviation_A``, ``worst_bond`` (i, j), ``worst_frame``,
    ``n_bonds``, ``unstable`` (max > threshold) and ``threshold_A``.
    """
    md = _mdtraj()
    ref = traj[0] if reference is None else reference[0]
    periodic = traj.unitcell_vectors is not None
    if bonds is None:
        bonds = [(b[0].index, b[1].index) for b in traj.topology.bonds]
        if not bonds:
            cell = ref.unitcell_vectors[0] * NM_TO_ANGSTROM if periodic else None
            bonds = guess_bonds(_symbols(traj), ref.xyz[0] * NM_TO_ANGSTROM, cell, periodic, scale)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    result = {"n_bonds": int(len(bonds)), "threshold_A": float(threshold)}
    if len(bonds) == 0:
        log.warning("no bonds found: bond-length deviation is not defined for this system")
        return {**result, "per_frame_A": np.zeros(traj.n_frames), "max_bond_deviation_A": 0.0,
                "worst_bond": None, "worst_frame": None, "unstable": False}
    d0 = md.compute_distances(ref, bonds, periodic=periodic)[0]
    d = md.compute_distances(traj, bonds, periodic=periodic)
    dev = np.abs(d - d0) * NM_TO_ANGSTROM
    dev = np.where(np.isfinite(dev), dev, np.inf)  # NaN coordinates (a blown-up run) count as infinitely far
    per_frame = dev.max(axis=1)
    frame, bond = np.unravel_index(np.argmax(dev), dev.shape)
    worst = float(dev[frame, bond])
    return {**result, "per_frame_A": per_frame, "max_bond_deviation_A": worst,
            "worst_bond": (int(bonds[bond, 0]), int(bonds[bond, 1])), "worst_frame": int(frame),
            "unstable": bool(worst > threshold)}


def radial_distributions(traj, element_pairs: Optional[Sequence[tuple]] = None, r_max_A: Optional[float] = None,
                         bin_width_A: float = 0.05) -> dict:
    """RDFs {"A-B": (r in A, g(r))} for a periodic trajectory, per element pair (default all pairs present).
    ``r_max_A`` defaults to half the shortest box length (at most 10 A)."""
    md = _mdtraj()
    if traj.unitcell_vectors is None:
        raise InputError("radial distribution functions need a periodic trajectory (no unit cell in this one)")
    symbols = np.array(_symbols(traj))
    if element_pairs is None:
        element_pairs = list(itertools.combinations_with_replacement(sorted(set(symbols)), 2))
    if r_max_A is None:
        r_max_A = min(0.5 * float(traj.unitcell_lengths.min()) * NM_TO_ANGSTROM, 10.0)
    out = {}
    for a, b in element_pairs:
        ia, ib = np.nonzero(symbols == a)[0], np.nonzero(symbols == b)[0]
        pairs = traj.topology.select_pairs(ia, ib)
        if len(pairs) == 0:
            continue
        r, g = md.compute_rdf(traj, pairs, r_range=(0.0, r_max_A * ANGSTROM_TO_NM),
                              bin_width=bin_width_A * ANGSTROM_TO_NM)
        out[f"{a}-{b}"] = (r * NM_TO_ANGSTROM, g)
    return out


def analyze(traj, monitor_csv=None, png=None, threshold: float = BOND_DEVIATION_THRESHOLD, rdf: bool = True,
            title: str = "") -> dict:
    """Bond deviation, RDFs (periodic only) and an optional PNG with energy drift, bond deviation and RDFs.

    Returns the numbers of :func:`bond_deviation` (without the per-frame array) plus ``rdf_pairs`` and ``png``.
    """
    bonds = bond_deviation(traj, threshold=threshold)
    rdfs = radial_distributions(traj) if rdf and traj.unitcell_vectors is not None else {}
    report = {k: v for k, v in bonds.items() if k != "per_frame_A"}
    report["rdf_pairs"] = sorted(rdfs)
    report["png"] = None
    if png is not None:
        plot_analysis(traj, bonds, rdfs, monitor_csv, png, title=title)
        report["png"] = str(png)
    return report


def plot_analysis(traj, bonds: dict, rdfs: dict, monitor_csv, png, title: str = "") -> None:
    """PNG panels: total energy - E0 per atom with its drift slope (monitor CSV), largest bond deviation per frame
    against the threshold, RDFs."""
    from matplotlib.figure import Figure  # no pyplot: the process's backend stays the caller's

    from .energy import drift_slope, read_monitor_csv

    panels = (["energy"] if monitor_csv is not None else []) + ["bonds"] + (["rdf"] if rdfs else [])
    fig = Figure(figsize=(6, 2.6 * len(panels)))
    axes = fig.subplots(len(panels), 1, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        if panel == "energy":
            data = read_monitor_csv(monitor_csv)
            t, e = data["time_ps"], data["total_per_atom_eV"]
            ok = np.isfinite(e)
            ax.plot(t[ok], (e[ok] - e[ok][0]) * 1000 if ok.any() else [], lw=1)
            ax.set_title(f"energy drift {drift_slope(t[ok], e[ok]):.3g} eV/atom/ps")
            ax.set_xlabel("time (ps)")
            ax.set_ylabel("E - E0 (meV/atom)")
        elif panel == "bonds":
            x = traj.time if traj.n_frames > 1 and np.ptp(traj.time) > 0 else np.arange(traj.n_frames)
            y = np.minimum(bonds["per_frame_A"], 10 * bonds["threshold_A"])  # keep blown-up frames on the plot
            ax.plot(x, y, lw=1, color="C2")
            ax.axhline(bonds["threshold_A"], color="C3", ls="--", lw=1, label=f"{bonds['threshold_A']} A")
            state = "UNSTABLE" if bonds["unstable"] else "stable"
            ax.set_title(f"max bond deviation {bonds['max_bond_deviation_A']:.3g} A ({state})")
            ax.set_xlabel("time (ps)" if x is traj.time else "frame")
            ax.set_ylabel(f"max |d - d0| (A, clipped at {10 * bonds['threshold_A']:g})")
            ax.legend(loc="upper left", fontsize=8)
        else:
            for name, (r, g) in rdfs.items():
                ax.plot(r, g, lw=1, label=name)
            ax.set_xlabel("r (A)")
            ax.set_ylabel("g(r)")
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
