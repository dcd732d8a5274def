"""MD of an exported student with ASE (VelocityVerlet NVE, Langevin NVT, LangevinBAOAB NPT), watched by the energy
monitor.

Keeps the engine contract (:mod:`hessdistill.engines.contract`); the trajectory is ``trajectory.traj``. With a
committee (``MDOptions.committee``) the student is a :class:`~.calculator.CommitteeCalculator` and its force
deviation is recorded at every report (``deviation.csv``), with teacher spot checks when asked.
"""

from __future__ import annotations

import time

import numpy as np
from ase import units
from ase.io import Trajectory
from ase.md.langevin import Langevin
from ase.md.langevinbaoab import LangevinBAOAB
from ase.md.verlet import VelocityVerlet

from ..contract import (
    ASEOptions, MDOptions, MDResult, kinetic_temperature, monitor_fields, ns_per_day, run_with_contract,
    written_files,
)
from ...errors import EnergyConservationError, ModelDeviationError, StructureError
from ...monitor.energy import EnergyMonitor, plot_monitor


def run_md(model_path, atoms, out_dir, options: MDOptions | None = None, **engine_options) -> MDResult:
    """Run MD of ``atoms`` with the student in ASE. Engine options: :class:`ASEOptions` (``calculator`` replaces
    the student, e.g. to run a teacher; ``device``). See :mod:`hessdistill.engines.contract`."""
    return run_with_contract("ase", _run, model_path, atoms, out_dir, options, engine_options)


def _run(model_path, atoms, files, o: MDOptions, eo: ASEOptions) -> MDResult:
    from ...progress import progress_bar
    from ..trust import TrustWatch
    from .calculator import CommitteeCalculator, StudentCalculator

    if eo.calculator is not None:
        atoms.calc = eo.calculator
    elif o.committee:
        atoms.calc = CommitteeCalculator([model_path, *o.committee], device=eo.device, drive=o.committee_drive)
    else:
        atoms.calc = StudentCalculator(model_path, device=eo.device)
    watch = TrustWatch.from_options(model_path, o, files, device=eo.device)
    if watch is not None:
        watch.check_structure(atoms)
    dt = o.timestep_fs * units.fs
    if o.ensemble == "nve":
        dyn = VelocityVerlet(atoms, dt)
    elif o.ensemble == "nvt":
        dyn = Langevin(atoms, dt, temperature_K=o.temperature_K, friction=o.friction_per_ps / (1000 * units.fs),
                       rng=np.random.default_rng(o.seed), fixcm=False)  # as OpenMM's and LAMMPS' Langevin
    else:
        dyn = npt_dynamics(atoms, o)
    periodic = bool(atoms.pbc.all())
    max_drift, max_deviation = o.energy_thresholds
    monitor = EnergyMonitor(len(atoms), files["monitor_csv"], max_drift=max_drift, max_deviation=max_deviation)
    traj = Trajectory(str(files["trajectory"]), "w", atoms)
    bar = progress_bar(o.steps, f"MD ase {o.ensemble}", unit="step", enabled=o.progress)

    def report():
        forces = atoms.get_forces()
        kinetic = atoms.get_kinetic_energy()
        bar.update(dyn.nsteps - bar.n)
        monitor.record(dyn.nsteps, dyn.nsteps * o.timestep_fs / 1000.0, atoms.get_potential_energy(), kinetic,
                       kinetic_temperature(kinetic, len(atoms)), forces_finite=bool(np.all(np.isfinite(forces))),
                       volume=atoms.get_volume() if periodic else float("nan"))
        if watch is not None:
            deviation = None
            if isinstance(atoms.calc, CommitteeCalculator):  # the deviation of the calculator's own members
                deviation = {k: atoms.calc.get_property(k, atoms)
                             for k in ("max_devi_f", "min_devi_f", "mean_devi_f", "devi_f")}
            deviation = watch.check(dyn.nsteps, dyn.nsteps * o.timestep_fs / 1000.0, atoms, forces, deviation)
            if deviation:
                bar.set_postfix(max_devi_f=f"{deviation['max_devi_f']:.3g}")

    dyn.attach(traj.write, interval=o.frame_interval)
    dyn.attach(report, interval=o.report_interval)
    stopped, reason = False, ""
    start = time.perf_counter()
    try:
        dyn.run(o.steps)
    except (EnergyConservationError, ModelDeviationError) as exc:
        stopped, reason = True, str(exc)
    except StructureError as exc:  # the student's forces drove atoms into each other (the start was checked)
        stopped, reason = True, f"MD stopped after step {dyn.nsteps}: {exc}"
    finally:
        wall = time.perf_counter() - start
        bar.close()
        traj.close()
        monitor.close()
        if watch is not None:
            watch.close()
    plot_monitor(files["monitor_csv"], files["monitor_png"])
    steps_done = int(dyn.nsteps)
    return MDResult(engine="ase", steps_requested=o.steps, steps_done=steps_done, stopped=stopped, reason=reason,
                    wall_s=wall, ns_per_day=ns_per_day(steps_done, o.timestep_fs, wall),
                    **monitor_fields(monitor.summary()), files=written_files(files),
                    extra={"calculator": type(atoms.calc).__name__}, trust=watch.summary() if watch is not None else {})


def npt_dynamics(atoms, o: MDOptions) -> LangevinBAOAB:
    """NPT dynamics of ``atoms`` (its calculator must give stress): Langevin on the atoms (friction
    ``o.friction_per_ps``, as in NVT) and a hydrostatic Langevin-Hoover barostat on the cell (the shape is kept, the
    volume samples the isothermal-isobaric ensemble; Quigley and Probert, J. Chem. Phys. 120, 11432 (2004)).
    Used for teachers too (``ASEOptions.calculator``), so a teacher's and a student's density come from one
    integrator."""
    return LangevinBAOAB(atoms, o.timestep_fs * units.fs, temperature_K=o.temperature_K,
                         externalstress=-o.pressure_bar * units.bar,  # a stress is minus the pressure
                         hydrostatic=True, T_tau=1000 * units.fs / o.friction_per_ps,
                         P_tau=o.barostat_time_ps * 1000 * units.fs, rng=np.random.default_rng(o.seed))
