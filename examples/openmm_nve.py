"""Run a distilled student in OpenMM from an ordinary OpenMM script: PDB in, student force added, NVE with an
energy-conservation monitor next to the usual reporters, DCD out, then a stability check with mdtraj.

    python examples/openmm_nve.py [STUDENT] [--pdb examples/ethanol.pdb] [--steps 2000] [--platform CPU]

STUDENT defaults to example_run/distilled/student.pt, written by the built-in example (`hessdistill example`).
Writes openmm_nve_run/{trajectory.dcd, monitor.csv, monitor.png, analysis.png} (the file names of run_md). Exit
status 3 when the monitor stops the run (energy not conserved), 2 when the inputs are missing.
"""

import argparse
import sys
from pathlib import Path

import openmm
import torch
from openmm import app, unit

from hessdistill.engines.openmm import EnergyMonitorReporter, create_system, select_platform
from hessdistill.errors import EnergyConservationError, HessdistillError
from hessdistill.heap import keep_freed_memory
from hessdistill.monitor import plot_monitor

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student", nargs="?", default="example_run/distilled/student.pt", help="student file (.pt)")
    p.add_argument("--pdb", default=str(HERE / "ethanol.pdb"))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--timestep", type=float, default=0.5, help="fs")
    p.add_argument("--temperature", type=float, default=300.0, help="initial temperature, K")
    p.add_argument("--platform", default=None, help="Reference, CPU, CUDA (default: CUDA if present, else CPU)")
    p.add_argument("--out", default="openmm_nve_run")
    args = p.parse_args(argv)

    if not Path(args.student).is_file():
        print(f"no student file at {args.student}: run `hessdistill example` first (it writes "
              "example_run/distilled/student.pt) or pass the path of an exported student", file=sys.stderr)
        return 2
    # process-wide speed settings, this script's to choose (the library never changes them): one torch thread, and
    # glibc keeps freed memory for the next step (small-system steps up to 2x slower otherwise)
    torch.set_num_threads(1)
    keep_freed_memory()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. An ordinary OpenMM system whose only force is the student (or: add_student_force(system, topology, path)).
    pdb = app.PDBFile(args.pdb)
    try:
        system = create_system(pdb.topology, args.student)
    except HessdistillError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"force: {system.getForce(0).getName()}")

    # 2. NVE: Verlet integrator, no thermostat, no constraints.
    platform, properties = select_platform(args.platform, system=system)
    integrator = openmm.VerletIntegrator(args.timestep * unit.femtoseconds)
    sim = app.Simulation(pdb.topology, system, integrator, platform, properties)
    sim.context.setPositions(pdb.positions)
    sim.context.setVelocitiesToTemperature(args.temperature * unit.kelvin, 1)

    # 3. Reporters: the usual ones plus the energy monitor, which stops the run when energy is not conserved.
    monitor = EnergyMonitorReporter(str(out / "monitor.csv"), 10, system, max_drift=0.01, max_deviation=0.05)
    sim.reporters += [
        app.StateDataReporter(sys.stdout, max(args.steps // 10, 1), step=True, potentialEnergy=True,
                              totalEnergy=True, temperature=True, speed=True),
        app.DCDReporter(str(out / "trajectory.dcd"), 10),
        monitor,
    ]
    monitor.record_initial(sim)
    status = 0
    try:
        sim.step(args.steps)
    except EnergyConservationError as err:
        print(err, file=sys.stderr)
        status = 3
    monitor.close()
    summary = monitor.summary()
    plot_monitor(out / "monitor.csv", out / "monitor.png")
    print(f"{platform.getName()}: drift {summary['drift_eV_per_atom_ps']:.2e} eV/atom/ps "
          f"({summary['drift_kJ_per_mol_ps']:.3g} kJ/mol/ps), max |E-E0| "
          f"{summary['max_deviation_eV_per_atom']:.2e} eV/atom over {summary['n_samples']} samples")

    # 4. Stability with mdtraj: bond-length deviation from the starting geometry (flag > 0.5 A).
    try:
        from hessdistill.monitor.analysis import analyze, load_trajectory
    except ImportError:
        return status
    del sim  # closes the DCD file
    traj = load_trajectory(out / "trajectory.dcd", args.pdb, timestep_ps=10 * args.timestep * 1e-3)
    report = analyze(traj, monitor_csv=out / "monitor.csv", png=out / "analysis.png")
    verdict = "UNSTABLE" if report["unstable"] else "stable"
    print(f"max bond deviation {report['max_bond_deviation_A']:.3f} A ({verdict}); plots in {out}/")
    return status


if __name__ == "__main__":
    sys.exit(main())
