"""OpenMM MD with a student: an energy-conservation reporter and ``run_md`` (ASE Atoms in, DCD + monitor out).

:class:`EnergyMonitorReporter` is an OpenMM reporter (use it next to StateDataReporter/DCDReporter) around the
one energy monitor of the package (``hessdistill.monitor.EnergyMonitor``): it converts kJ/mol to eV, computes the
temperature from the kinetic energy and the degrees of freedom, checks forces are finite, writes the monitor CSV
and raises ``EnergyConservationError`` - after flushing the CSV - out of ``simulation.step`` when the run stops
conserving energy.

Example
-------
>>> sim.reporters.append(EnergyMonitorReporter("monitor.csv", 10, sim.system, max_drift=0.01))
>>> try:
...     sim.step(10000)
... except EnergyConservationError as err:
...     print(err)  # the CSV holds every row up to the failure
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np

from ...errors import ConfigError, EnergyConservationError, InputError
from ...monitor.energy import EnergyMonitor, plot_monitor
from ...structures import check_structure
from ...units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL
from .force import _import_openmm, available_backend, create_system, select_platform

log = logging.getLogger("hessdistill.engines.openmm")


def degrees_of_freedom(system) -> int:
    """3 per massive particle, minus constraints, minus 3 when a CMMotionRemover is present (as OpenMM counts)."""
    openmm = _import_openmm()
    dof = sum(3 for i in range(system.getNumParticles()) if system.getParticleMass(i)._value > 0)
    dof -= system.getNumConstraints()
    if any(isinstance(system.getForce(k), openmm.CMMotionRemover) for k in range(system.getNumForces())):
        dof -= 3
    return dof


class EnergyMonitorReporter:
    """OpenMM reporter feeding ``EnergyMonitor`` every ``reportInterval`` steps.

    Parameters
    ----------
    file: CSV path (None: keep in memory).
    reportInterval: steps between samples.
    system: an openmm System (temperature from its degrees of freedom) or the number of atoms (3N DOF).
    max_drift, max_deviation, window_ps, min_points: passed to EnergyMonitor (eV/atom/ps, eV/atom).
    """

    def __init__(self, file, reportInterval: int, system, max_drift: float | None = 0.01,
                 max_deviation: float | None = 0.05, window_ps: float | None = None, min_points: int = 20):
        if int(reportInterval) <= 0:
            raise InputError(f"reportInterval must be a positive number of steps, got {reportInterval}")
        self._interval = int(reportInterval)
        if isinstance(system, (int, np.integer)):
            n_atoms, self.dof = int(system), 3 * int(system)
        else:
            n_atoms, self.dof = system.getNumParticles(), degrees_of_freedom(system)
        self.monitor = EnergyMonitor(n_atoms, file, max_drift=max_drift, max_deviation=max_deviation,
                                     window_ps=window_ps, min_points=min_points)
        self._last_step = None

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": None, "include": ["energy", "forces"]}

    def report(self, simulation, state):
        from openmm import unit

        if self._last_step == simulation.currentStep:
            return
        self._last_step = simulation.currentStep
        kj = unit.kilojoule_per_mole
        potential = state.getPotentialEnergy().value_in_unit(kj) / EV_TO_KJ_PER_MOL
        kinetic = state.getKineticEnergy().value_in_unit(kj) / EV_TO_KJ_PER_MOL
        r_kj = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(kj / unit.kelvin)
        temperature = 2.0 * kinetic * EV_TO_KJ_PER_MOL / (self.dof * r_kj) if self.dof > 0 else float("nan")
        forces = state.getForces(asNumpy=True)._value
        self.monitor.record(simulation.currentStep, state.getTime().value_in_unit(unit.picosecond), potential,
                            kinetic, temperature, forces_finite=bool(np.all(np.isfinite(forces))))

    def record_initial(self, simulation) -> None:
        """Record the current state (call before the first step so E0 is the starting energy)."""
        self.report(simulation, simulation.context.getState(getEnergy=True, getForces=True))

    def summary(self) -> dict:
        return self.monitor.summary()

    def close(self) -> None:
        self.monitor.close()


class _DCDWriter:
    """Minimal DCD reporter that owns its file, so ``run_md`` closes it deterministically (unwrapped positions)."""

    def __init__(self, path, interval: int, simulation):
        from openmm.app import DCDFile

        self._interval = interval
        self._file = open(path, "wb")
        dt = simulation.integrator.getStepSize()
        self._dcd = DCDFile(self._file, simulation.topology, dt, simulation.currentStep, interval)

    def describeNextReport(self, simulation):
        return {"steps": self._interval - simulation.currentStep % self._interval, "periodic": False,
                "include": ["positions"]}

    def report(self, simulation, state):
        self._dcd.writeModel(state.getPositions(), periodicBoxVectors=state.getPeriodicBoxVectors())

    def close(self):
        self._file.close()


def topology_from_atoms(atoms, bonds=None):
    """(OpenMM Topology, positions in nm, atoms in OpenMM's cell orientation) for an ASE Atoms.

    One residue per bonded molecule (bonds guessed from covalent radii unless given), split where the molecule's
    atoms are not contiguous (OpenMM >= 8.6 requires contiguous residues; the atom order is kept). A periodic cell
    is rotated to OpenMM's reduced triclinic form (a along x, b in the xy plane), atoms with it; a partly periodic
    cell is an error (OpenMM is periodic in all three directions or none).
    """
    from openmm import Vec3, app
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ...analysis import guess_bonds

    atoms = atoms.copy()
    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError(f"OpenMM needs a cell periodic in all three directions or none; got pbc={atoms.pbc.tolist()}")
    periodic = bool(atoms.pbc.all())
    if periodic:
        from openmm.app.internal.unitcell import reducePeriodicBoxVectors

        cell, _ = atoms.cell.standard_form()
        atoms.set_cell(cell, scale_atoms=True)
        reduced = reducePeriodicBoxVectors([Vec3(*v) for v in np.asarray(cell)])
        atoms.set_cell(np.array([[c.x, c.y, c.z] for c in reduced]), scale_atoms=False)
    symbols = atoms.get_chemical_symbols()
    if bonds is None:
        bonds = guess_bonds(symbols, atoms.positions, atoms.cell.array, periodic)
    bonds = np.asarray(bonds, dtype=np.int64).reshape(-1, 2)
    n = len(atoms)
    graph = coo_matrix((np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    top = app.Topology()
    chain = top.addChain()
    counts: dict = {}
    omm_atoms = []
    residue = None
    for k, s in enumerate(symbols):
        if k == 0 or labels[k] != labels[k - 1]:
            residue = top.addResidue("MOL", chain)
        counts[s] = counts.get(s, 0) + 1
        name = f"{s}{counts[s]}" if len(f"{s}{counts[s]}") <= 4 else s  # PDB atom names have 4 columns
        omm_atoms.append(top.addAtom(name, app.Element.getBySymbol(s), residue))
    for i, j in bonds:
        top.addBond(omm_atoms[i], omm_atoms[j])
    if periodic:
        top.setPeriodicBoxVectors([Vec3(*(v * ANGSTROM_TO_NM)) for v in atoms.cell.array])
    return top, atoms.positions * ANGSTROM_TO_NM, atoms


_RUN_OPTIONS = {"backend": "auto", "outputs_forces": False, "dcd_interval": None, "window_ps": None,
                "min_points": 20, "analyze": True, "title": "", "device": None, "nprocs": 1, "threads": None}


def run_md(model_path, atoms, *, out_dir, steps: int, timestep_fs: float = 0.5, temperature_K: float = 300.0,
           ensemble: str = "nve", friction_per_ps: float = 1.0, report_interval: int = 10, seed: int = 0,
           max_drift: float | None = 0.01, max_deviation: float | None = 0.05, platform: str | None = None,
           precision: str | None = None, **kw) -> dict:
    """Run OpenMM MD of ``atoms`` with the student and monitor energy conservation.

    NVE uses VerletIntegrator, NVT LangevinMiddleIntegrator (``friction_per_ps``). Velocities come from the
    atoms' momenta when set, else from a Maxwell-Boltzmann draw at ``temperature_K`` (``seed``). Writes
    ``traj.dcd``, ``topology.pdb``, ``monitor.csv``, ``monitor.png`` (and ``analysis.png``) in ``out_dir``.
    Extra options: backend, outputs_forces, dcd_interval, window_ps, min_points, analyze, title, device (model
    placement for the PythonForce fallback), threads (torch intra-op threads for the run; on a loaded 2-core machine
    1 thread was 20x faster than 2 for a 9-atom student) and nprocs (accepted for CLI symmetry; one process).

    Returns the monitor summary plus ``csv``, ``png``, ``dcd``, ``pdb``, ``stopped``, ``reason``, ``steps_done``,
    ``platform``, ``backend``, ``wall_s``, ``ns_per_day`` and, with mdtraj, the bond-deviation verdict.
    """
    unknown = sorted(set(kw) - set(_RUN_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown run_md option(s) {', '.join(unknown)}; known: {', '.join(_RUN_OPTIONS)}")
    opts = {**_RUN_OPTIONS, **kw}
    if ensemble not in ("nve", "nvt"):
        raise ConfigError(f"ensemble must be 'nve' or 'nvt', got {ensemble!r}")
    if steps < 0 or report_interval <= 0 or not timestep_fs > 0:
        raise ConfigError("steps must be >= 0, report_interval > 0 and timestep_fs > 0")
    openmm = _import_openmm()
    from openmm import app, unit

    check_structure(atoms)
    if opts["threads"] is not None:
        import torch

        torch.set_num_threads(int(opts["threads"]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    topology, positions, atoms = topology_from_atoms(atoms)
    backend = available_backend(opts["backend"])
    system = create_system(topology, model_path, masses=atoms.get_masses(), backend=backend,
                           outputs_forces=opts["outputs_forces"], device=opts["device"])
    dt = timestep_fs * 1e-3 * unit.picoseconds
    if ensemble == "nve":
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(temperature_K * unit.kelvin, friction_per_ps / unit.picosecond, dt)
        integrator.setRandomNumberSeed(int(seed))
    plat, props = select_platform(platform, precision, system)
    simulation = app.Simulation(topology, system, integrator, plat, props)
    simulation.context.setPositions(positions)
    momenta = atoms.get_momenta()
    if np.any(momenta != 0):
        from ase import units as ase_units

        v_nm_per_ps = atoms.get_velocities() * (1000.0 * ase_units.fs) * ANGSTROM_TO_NM
        simulation.context.setVelocities(v_nm_per_ps)
    elif temperature_K > 0:
        simulation.context.setVelocitiesToTemperature(temperature_K * unit.kelvin, int(seed))
    paths = {"csv": out / "monitor.csv", "png": out / "monitor.png", "dcd": out / "traj.dcd",
             "pdb": out / "topology.pdb"}
    with open(paths["pdb"], "w") as fh:
        app.PDBFile.writeFile(topology, positions * 10.0 * unit.angstrom, fh, keepIds=False)
    monitor = EnergyMonitorReporter(paths["csv"], report_interval, system, max_drift=max_drift,
                                    max_deviation=max_deviation, window_ps=opts["window_ps"],
                                    min_points=opts["min_points"])
    dcd = _DCDWriter(paths["dcd"], opts["dcd_interval"] or report_interval, simulation)
    simulation.reporters += [dcd, monitor]
    stopped, reason = False, ""
    start = time.perf_counter()
    try:
        dcd.report(simulation, simulation.context.getState(getPositions=True))
        monitor.record_initial(simulation)
        simulation.step(int(steps))
    except EnergyConservationError as err:
        stopped, reason = True, str(err)
        log.warning("%s", err)
    finally:
        wall = time.perf_counter() - start
        dcd.close()
        monitor.close()
        simulation.reporters.clear()
    steps_done = simulation.currentStep
    plot_monitor(paths["csv"], paths["png"], title=opts["title"])
    result = {**monitor.summary(), **{k: str(v) for k, v in paths.items()}, "stopped": stopped, "reason": reason,
              "steps_done": int(steps_done), "platform": plat.getName(), "backend": backend, "wall_s": wall,
              "ns_per_day": steps_done * timestep_fs * 1e-6 / wall * 86400 if wall > 0 else math.nan}
    if opts["analyze"]:
        result.update(_analyze(paths, topology, report_interval if not opts["dcd_interval"] else opts["dcd_interval"],
                               timestep_fs, opts["title"]))
    return result


def _analyze(paths: dict, topology, interval: int, timestep_fs: float, title: str) -> dict:
    try:
        from ...analysis import analyze, load_trajectory

        traj = load_trajectory(paths["dcd"], topology, timestep_ps=interval * timestep_fs * 1e-3)
    except ImportError as exc:
        log.info("skipping trajectory analysis: %s", exc)
        return {}
    png = Path(paths["png"]).with_name("analysis.png")
    report = analyze(traj, monitor_csv=paths["csv"], png=png, title=title)
    return {"max_bond_deviation_A": report["max_bond_deviation_A"], "unstable": report["unstable"],
            "analysis_png": report["png"]}
