"""MD of an exported student with ASE (VelocityVerlet NVE or Langevin NVT), watched by the energy monitor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import units
from ase.io import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from .calculator import StudentCalculator
from ...errors import ConfigError, EnergyConservationError
from ...monitor.energy import EnergyMonitor, plot_monitor


def run_md(
    model_path, atoms, *, out_dir, steps: int = 1000, timestep_fs: float = 0.5, temperature_K: float = 300.0,
    ensemble: str = "nve", friction_per_ps: float = 1.0, report_interval: int = 10, seed: int = 0,
    max_drift: float | None = 0.01, max_deviation: float | None = 0.05, progress: bool = True, calculator=None,
    **_ignored,
) -> dict:
    """Run MD; write ``md.traj``, ``energy.csv`` and ``energy.png`` into ``out_dir``; return the monitor summary
    plus the paths, ``stopped`` and ``reason``. ``calculator`` replaces the student (used to run teachers)."""
    from tqdm import tqdm

    if ensemble not in ("nve", "nvt"):
        raise ConfigError(f"ensemble must be nve or nvt, got {ensemble!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atoms = atoms.copy()
    atoms.calc = calculator if calculator is not None else StudentCalculator(model_path)
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K, rng=rng)
    Stationary(atoms)
    dt = timestep_fs * units.fs
    if ensemble == "nve":
        dyn = VelocityVerlet(atoms, dt)
    else:
        dyn = Langevin(atoms, dt, temperature_K=temperature_K, friction=friction_per_ps / (1000 * units.fs), rng=rng)
    csv_path, png_path, traj_path = out / "energy.csv", out / "energy.png", out / "md.traj"
    monitor = EnergyMonitor(len(atoms), csv_path, max_drift=max_drift, max_deviation=max_deviation)
    traj = Trajectory(str(traj_path), "w", atoms)

    def report():
        forces = atoms.get_forces()
        monitor.record(
            dyn.nsteps, dyn.nsteps * timestep_fs / 1000.0, atoms.get_potential_energy(), atoms.get_kinetic_energy(),
            atoms.get_temperature(), forces_finite=bool(np.all(np.isfinite(forces))),
        )
        traj.write()

    dyn.attach(report, interval=report_interval)
    bar = tqdm(total=steps, desc=f"MD ase {ensemble}", disable=not progress, unit="step")
    dyn.attach(lambda: bar.update(1) if dyn.nsteps else None, interval=1)
    stopped, reason = False, ""
    try:
        dyn.run(steps)
    except EnergyConservationError as exc:
        stopped, reason = True, str(exc)
    finally:
        bar.close()
        traj.close()
        monitor.close()
    plot_monitor(csv_path, png_path)
    return {**monitor.summary(), "csv": str(csv_path), "png": str(png_path), "trajectory": str(traj_path),
            "stopped": stopped, "reason": reason, "engine": "ase"}
