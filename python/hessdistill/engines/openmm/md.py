"""OpenMM MD with a student: an energy-conservation reporter and ``run_md`` (the engine contract, DCD trajectory).

:class:`EnergyMonitorReporter` is an OpenMM reporter (use it next to StateDataReporter/DCDReporter) around the
one energy monitor of the package (``hessdistill.monitor.EnergyMonitor``): it converts kJ/mol to eV, computes the
temperature from the kinetic energy and the degrees of freedom, checks forces are finite, writes the monitor CSV
and raises ``EnergyConservationError`` - after flushing the CSV - out of ``simulation.step`` when the run stops
conserving energy. :class:`TrustReporter` does the same for a committee's force deviation and teacher spot checks
(``ModelDeviationError``); ``run_md`` drives a committee by the mean of its members (:func:`committee_mean_force`,
a ``CustomCVForce``) or by the first member.

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
import time
from pathlib import Path

import numpy as np
from ase import units as ase_units

from ..contract import (
    MDOptions, MDResult, OpenMMOptions, dof_without_centre_of_mass, monitor_fields, ns_per_day, run_with_contract,
    written_files,
)
from ...errors import EnergyConservationError, InputError, ModelDeviationError
from ...monitor.energy import EnergyMonitor, plot_monitor
from ...units import ANGSTROM_TO_NM, EV_TO_KJ_PER_MOL
from .backend import backend_for, import_openmm
from .force import STUDENT_FORCE_PREFIX, create_system, student_force
from .platform import select_platform

log = logging.getLogger("hessdistill.engines.openmm")


def system_dof(system) -> int:
    """The degrees of freedom of an OpenMM ``System``: 3 per massive particle, minus constraints, minus 3 when a CMMotionRemover is present (as OpenMM counts)."""
    openmm = import_openmm()
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
    dof: degrees of freedom of the temperature (None: from ``system``).
    """

    def __init__(self, file, reportInterval: int, system, max_drift: float | None = 0.01,
                 max_deviation: float | None = 0.05, window_ps: float | None = None, min_points: int = 20,
                 dof: int | None = None):
        if int(reportInterval) <= 0:
            raise InputError(f"reportInterval must be a positive number of steps, got {reportInterval}")
        self._interval = int(reportInterval)
        if isinstance(system, (int, np.integer)):
            n_atoms, self.dof = int(system), 3 * int(system)
        else:
            n_atoms, self.dof = system.getNumParticles(), system_dof(system)
        if dof is not None:
            self.dof = int(dof)
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
        # kB in eV/K as ASE has it (the package's units), so every engine reports the same temperature
        temperature = 2.0 * kinetic / (self.dof * ase_units.kB) if self.dof > 0 else float("nan")
        forces = state.getForces(asNumpy=True)._value
        volume = float("nan")
        if simulation.system.usesPeriodicBoundaryConditions():
            volume = state.getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3) * 1000.0  # A^3
        self.monitor.record(simulation.currentStep, state.getTime().value_in_unit(unit.picosecond), potential,
                            kinetic, temperature, forces_finite=bool(np.all(np.isfinite(forces))), volume=volume)

    def record_initial(self, simulation) -> None:
        """Record the current state (call before the first step so E0 is the starting energy)."""
        self.report(simulation, simulation.context.getState(getEnergy=True, getForces=True))

    def summary(self) -> dict:
        return self.monitor.summary()

    def close(self) -> None:
        self.monitor.close()


class TrustReporter:
    """OpenMM reporter of the committee's force deviation and teacher spot checks every ``reportInterval`` steps
    (a :class:`~hessdistill.engines.trust.TrustWatch`: ``deviation.csv``, threshold stop or flag).

    ``atoms``: an ASE Atoms of the simulated system (elements, cell; OpenMM's cell orientation) whose positions
    are replaced by the simulation's at each report; the committee is evaluated on that frame and the driving
    forces (the System's, converted to eV/A) are checked against the teacher.

    Example
    -------
    >>> watch = TrustWatch(["s0.pt", "s1.pt", "s2.pt"], "deviation.csv", threshold=0.3, action="flag",
    ...                    flagged_path="flagged.extxyz")
    >>> sim.reporters.append(TrustReporter(watch, 10, atoms))
    """

    def __init__(self, watch, reportInterval: int, atoms):
        if int(reportInterval) <= 0:
            raise InputError(f"reportInterval must be a positive number of steps, got {reportInterval}")
        self.watch, self._interval = watch, int(reportInterval)
        self.atoms = atoms.copy()
        self.atoms.calc = None
        self._last_step = None

    def describeNextReport(self, simulation):
        steps = self._interval - simulation.currentStep % self._interval
        return {"steps": steps, "periodic": False, "include": ["positions", "forces"]}

    def report(self, simulation, state):
        from openmm import unit

        if self._last_step == simulation.currentStep:
            return
        self._last_step = simulation.currentStep
        self.atoms.positions = state.getPositions(asNumpy=True).value_in_unit(unit.angstrom)
        forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.angstrom)
        self.watch.check(simulation.currentStep, state.getTime().value_in_unit(unit.picosecond), self.atoms,
                         np.asarray(forces) / EV_TO_KJ_PER_MOL)

    def record_initial(self, simulation) -> None:
        """Record the current state (call before the first step)."""
        self.report(simulation, simulation.context.getState(getPositions=True, getForces=True))


def committee_mean_force(topology, model_paths, **kwargs):
    """One OpenMM force whose energy is the mean of the students' energies: a ``CustomCVForce`` with one student
    force (:func:`~.force.student_force`, ``kwargs``) per member as collective variable."""
    openmm = import_openmm()
    names = [f"s{k}" for k in range(len(model_paths))]
    mean = openmm.CustomCVForce(f"({' + '.join(names)}) / {len(names)}")
    for name, path in zip(names, model_paths):
        mean.addCollectiveVariable(name, student_force(path, topology, **kwargs))
    mean.setName(f"{STUDENT_FORCE_PREFIX} committee mean of {len(names)}")
    return mean


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
    is rotated to OpenMM's reduced triclinic form (a along x, b in the xy plane), atoms and velocities with it; a
    partly periodic cell is an error (OpenMM is periodic in all three directions or none).
    """
    from openmm import Vec3, app
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from ...monitor.analysis import guess_bonds

    atoms = atoms.copy()
    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError(f"OpenMM needs a cell periodic in all three directions or none; got pbc={atoms.pbc.tolist()}")
    periodic = bool(atoms.pbc.all())
    if periodic:
        from openmm.app.internal.unitcell import reducePeriodicBoxVectors

        cell, _ = atoms.cell.standard_form()
        velocities = atoms.get_velocities() @ np.linalg.solve(atoms.cell.array, cell)  # rotated with the atoms
        atoms.set_cell(cell, scale_atoms=True)
        atoms.set_velocities(velocities)
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


def run_md(model_path, atoms, out_dir, options: MDOptions | None = None, **engine_options) -> MDResult:
    """Run OpenMM MD of ``atoms`` with the student and monitor energy conservation.

    NVE uses VerletIntegrator (started half a step back, so its leapfrog velocities give the velocity-Verlet
    trajectory of the given state), NVT LangevinMiddleIntegrator, NPT that and a MonteCarloBarostat (isotropic
    volume moves every ``barostat_interval`` steps; the student takes the box vectors of every step). Engine options: :class:`OpenMMOptions`
    (platform, precision, backend, outputs_forces, device, analyze, title). Writes ``trajectory.dcd`` with
    ``topology.pdb`` (and ``analysis.png`` with mdtraj) besides the contract's files; ``extra`` holds
    ``platform``, ``backend`` and, with mdtraj, ``max_bond_deviation_A`` and ``unstable``.
    See :mod:`hessdistill.engines.contract`.
    """
    return run_with_contract("openmm", _run, model_path, atoms, out_dir, options, engine_options)


def _run(model_path, atoms, files, o: MDOptions, eo: OpenMMOptions) -> MDResult:
    openmm = import_openmm()
    from openmm import app, unit

    topology, positions, atoms = topology_from_atoms(atoms)
    from ..trust import TrustWatch

    backend = backend_for(model_path, eo.backend)  # a .pt2 runs through PythonForce, TorchScript through TorchForce
    system = create_system(topology, model_path, masses=atoms.get_masses(), backend=backend,
                           outputs_forces=eo.outputs_forces, device=eo.device)
    if o.committee and o.committee_drive == "mean":  # the student force is replaced by the committee's mean
        system.removeForce(system.getNumForces() - 1)
        # each member's own file picks its back end (a committee may mix TorchScript and .pt2 students)
        system.addForce(committee_mean_force(topology, [model_path, *o.committee], backend=eo.backend,
                                             outputs_forces=eo.outputs_forces, device=eo.device))
    watch = TrustWatch.from_options(model_path, o, files, device=eo.device)
    if watch is not None:
        watch.check_structure(atoms)
    dt = o.timestep_fs * 1e-3 * unit.picoseconds
    if o.ensemble == "nve":
        integrator = openmm.VerletIntegrator(dt)
    else:
        integrator = openmm.LangevinMiddleIntegrator(o.temperature_K * unit.kelvin, o.friction_per_ps / unit.picosecond,
                                                     dt)
        integrator.setRandomNumberSeed(int(o.seed))
    if o.ensemble == "npt":
        barostat = openmm.MonteCarloBarostat(o.pressure_bar * unit.bar, o.temperature_K * unit.kelvin,
                                             o.barostat_interval)
        barostat.setRandomNumberSeed(int(o.seed))
        system.addForce(barostat)
    plat, props = select_platform(eo.platform, eo.precision, system)
    simulation = app.Simulation(topology, system, integrator, plat, props)
    simulation.context.setPositions(positions)
    velocities = atoms.get_velocities() * (1000.0 * ase_units.fs) * ANGSTROM_TO_NM  # A/(ASE time) -> nm/ps
    if o.ensemble == "nve":  # VerletIntegrator keeps v(t - dt/2): step back half a step from v(0)
        forces = simulation.context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(
            unit.kilojoule_per_mole / unit.nanometer)
        velocities = velocities - 0.5 * o.timestep_fs * 1e-3 * forces / atoms.get_masses()[:, None]
    simulation.context.setVelocities(velocities)
    files = {**files, "topology": files["trajectory"].with_name("topology.pdb")}
    with open(files["topology"], "w") as fh:
        app.PDBFile.writeFile(topology, positions * 10.0 * unit.angstrom, fh, keepIds=False)
    max_drift, max_deviation = o.energy_thresholds
    monitor = EnergyMonitorReporter(files["monitor_csv"], o.report_interval, system, max_drift=max_drift,
                                    max_deviation=max_deviation, dof=dof_without_centre_of_mass(len(atoms)))
    dcd = _DCDWriter(files["trajectory"], o.frame_interval, simulation)
    trust = TrustReporter(watch, o.report_interval, atoms) if watch is not None else None
    simulation.reporters += [dcd, monitor] + ([trust] if trust is not None else [])
    stopped, reason = False, ""
    start = time.perf_counter()
    try:
        dcd.report(simulation, simulation.context.getState(getPositions=True))
        monitor.record_initial(simulation)
        if trust is not None:
            trust.record_initial(simulation)
        _step(simulation, o)
    except (EnergyConservationError, ModelDeviationError) as err:
        stopped, reason = True, str(err)
        log.warning("%s", err)
    finally:
        wall = time.perf_counter() - start
        dcd.close()
        monitor.close()
        if watch is not None:
            watch.close()
        simulation.reporters.clear()
    steps_done = int(simulation.currentStep)
    plot_monitor(files["monitor_csv"], files["monitor_png"], title=eo.title)
    extra = {"platform": plat.getName(), "backend": backend}
    if eo.analyze:
        extra.update(_analyze(files, topology, o.frame_interval, o.timestep_fs, eo.title))
    return MDResult(engine="openmm", steps_requested=o.steps, steps_done=steps_done, stopped=stopped, reason=reason,
                    wall_s=wall, ns_per_day=ns_per_day(steps_done, o.timestep_fs, wall),
                    **monitor_fields(monitor.summary()), files=written_files(files), extra=extra,
                    trust=watch.summary() if watch is not None else {})


def _step(simulation, o: MDOptions) -> None:
    """``simulation.step(o.steps)``, in chunks of the report interval when a progress bar is shown."""
    if not o.progress:
        simulation.step(o.steps)
        return
    from ...progress import progress_bar

    with progress_bar(o.steps, f"MD openmm {o.ensemble}", unit="step") as bar:
        done = 0
        while done < o.steps:
            n = min(o.report_interval, o.steps - done)
            simulation.step(n)
            done += n
            bar.update(n)


def _analyze(files: dict, topology, interval: int, timestep_fs: float, title: str) -> dict:
    """Bond-deviation verdict of the trajectory (mdtraj); adds ``files['analysis_png']``. Empty without mdtraj."""
    try:
        from ...monitor.analysis import analyze, load_trajectory

        traj = load_trajectory(files["trajectory"], topology, timestep_ps=interval * timestep_fs * 1e-3)
    except ImportError as exc:
        log.info("skipping trajectory analysis: %s", exc)
        return {}
    png = Path(files["monitor_png"]).with_name("analysis.png")
    report = analyze(traj, monitor_csv=files["monitor_csv"], png=png, title=title)
    if report["png"]:
        files["analysis_png"] = Path(report["png"])
    return {"max_bond_deviation_A": report["max_bond_deviation_A"], "unstable": report["unstable"]}
