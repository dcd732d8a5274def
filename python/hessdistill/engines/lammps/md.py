"""MD with the LAMMPS pair style: the input a run needs, the in-LAMMPS energy checks, and ``run_md``."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...errors import ConfigError, InputError
from .build import build_plugin
from ...errors import LammpsError
from .log import UNIT_STYLES, log_to_monitor, read_log  # noqa: F401
from .run import run_lammps

#: fix halt IDs written by monitor_commands, and what their values are
HALT_REASONS = {
    "hd_halt_dev": "|E - E0| = {value} eV/atom at step {step} exceeds max_deviation {max_deviation:g}",
    "hd_halt_drift": "energy drift {value} eV/atom/ps at step {step} exceeds max_drift {max_drift:g}",
}


def monitor_commands(every: int, max_drift: float | None = 0.01, max_deviation: float | None = 0.05,
                     min_points: int = 20) -> str:
    """LAMMPS commands that stop a run (``fix halt``) when E_total per atom stops being conserved (units metal).

    Put them after a ``run 0`` (which defines E0) and before the production ``run``; they add the deviation and
    drift to the thermo output. The drift is the least-squares slope of E/atom against time over every sample so
    far (as ``EnergyMonitor`` computes it), from running means kept by ``fix ave/time``; it is checked once
    ``min_points`` samples exist. Non-finite energies or forces are caught by the pair style itself, which stops
    the run with an error.
    """
    lines = [
        "# energy-conservation monitor (hessdistill): E0 from the run 0 above",
        "variable hd_e0 equal $(etotal/atoms)",
        "variable hd_t0 equal $(time)",
        "variable hd_step0 equal $(step)",
        "variable hd_de equal etotal/atoms-v_hd_e0",
        "variable hd_dev equal abs(v_hd_de)",
        "variable hd_t equal time-v_hd_t0",
        "variable hd_tde equal v_hd_t*v_hd_de",
        "variable hd_tt equal v_hd_t*v_hd_t",
        f"fix hd_mean all ave/time {every} 1 {every} v_hd_t v_hd_de v_hd_tde v_hd_tt ave running",
        f"variable hd_n equal (step-v_hd_step0)/{every}+1",
        "variable hd_drift equal (f_hd_mean[3]-f_hd_mean[1]*f_hd_mean[2])/"
        "(f_hd_mean[4]-f_hd_mean[1]^2+(v_hd_n<2))",
        f"variable hd_drift_checked equal (v_hd_n>={min_points})*abs(v_hd_drift)",
        "thermo_style custom step time atoms pe ke etotal temp press v_hd_dev v_hd_drift",
        "thermo_modify norm no flush yes format float %.15g",
    ]
    if max_deviation is not None:
        lines.append(f"fix hd_halt_dev all halt {every} v_hd_dev > {max_deviation:g} error soft message yes")
    if max_drift is not None:
        lines.append(f"fix hd_halt_drift all halt {every} v_hd_drift_checked > {max_drift:g} error soft message yes")
    return "\n".join(lines) + "\n"


def md_input(*, data, model, plugin, elements, steps, timestep_fs, temperature_K, ensemble, friction_per_ps,
             report_interval, seed, max_drift, max_deviation, device=None, threads=1, skin=1.0,
             velocities_given=False, dump=None, boundary="p p p") -> str:
    """The LAMMPS input that run_md runs (units metal)."""
    dt_ps = timestep_fs / 1000.0
    lseed = seed % 900_000_000 + 1  # LAMMPS seeds are positive
    device_keyword = f"device {device} " if device else ""
    text = f"""# hessdistill run_md: {ensemble} MD with pair_style hessdistill
units           metal
atom_style      atomic
boundary        {boundary}
read_data       {data}
plugin          load {plugin}
pair_style      hessdistill {device_keyword}threads {threads} memory cache
pair_coeff      * * {model} {' '.join(elements)}
neighbor        {skin:g} bin
neigh_modify    every 1 delay 0 check yes
timestep        {dt_ps:.10g}
"""
    if not velocities_given and temperature_K > 0:
        text += f"velocity        all create {temperature_K:g} {lseed} dist gaussian mom yes rot no loop geom\n"
    text += "fix             hd_integrate all nve\n"
    if ensemble == "nvt":
        text += f"fix             hd_thermostat all langevin {temperature_K:g} {temperature_K:g} " \
                f"{1.0 / friction_per_ps:.10g} {lseed + 1} zero yes\n"
    text += f"""thermo_style    custom step time atoms pe ke etotal temp press
thermo_modify   norm no flush yes format float %.15g
thermo          {report_interval}
run             0
{monitor_commands(report_interval, max_drift, max_deviation)}"""
    if dump:
        text += f"dump            hd_dump all custom {report_interval} {dump} id element x y z\n" \
                f"dump_modify     hd_dump element {' '.join(elements)} sort id\n"
    text += f"run             {steps}\n"
    return text


def run_md(
    model_path, atoms, *, out_dir, steps: int = 1000, timestep_fs: float = 0.5, temperature_K: float = 300.0,
    ensemble: str = "nve", friction_per_ps: float = 1.0, report_interval: int = 10, seed: int = 0,
    max_drift: float | None = 0.01, max_deviation: float | None = 0.05, nprocs: int = 1,
    device: str | None = None, threads: int = 1, skin: float = 1.0, plugin=None, **_ignored,
) -> dict:
    """Run MD of ``atoms`` with the student in LAMMPS (units metal); stop when energy is not conserved.

    Writes ``system.data``, ``in.md``, ``log.lammps``, ``md.lammpstrj``, ``energy.csv`` and ``energy.png`` into
    ``out_dir``; returns the ``EnergyMonitor`` summary plus those paths, ``stopped`` and ``reason``. The checks
    (``max_drift`` eV/atom/ps, ``max_deviation`` eV/atom; None disables one) run inside LAMMPS every
    ``report_interval`` steps; a non-finite energy or force stops the run through an error of the pair style.
    Errors before the first step (bad input) raise ``LammpsError``. ``ensemble``: ``nve`` or ``nvt`` (Langevin, ``friction_per_ps``).
    ``nprocs`` > 1 runs ``mpiexec -n nprocs lmp``; ``threads`` is torch's thread count per rank; ``device``
    ``cpu`` or ``cuda`` (None: cuda when torch sees a GPU).
    """
    from ase.io import write

    from ...formats.torchscript import StudentFile
    from ...structures import check_structure

    if ensemble not in ("nve", "nvt"):
        raise ConfigError(f"ensemble must be nve or nvt, got {ensemble!r}")
    if ensemble == "nvt" and (temperature_K <= 0 or friction_per_ps <= 0):
        raise ConfigError("nvt needs temperature_K > 0 and friction_per_ps > 0")
    if steps < 0 or report_interval < 1 or nprocs < 1 or not timestep_fs > 0:
        raise ConfigError("steps must be >= 0, timestep_fs > 0, report_interval >= 1 and nprocs >= 1")
    check_structure(atoms)
    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError("run_md with LAMMPS needs a cell periodic in all three directions, or none (a molecule)")
    boundary = "p p p"
    if not atoms.pbc.any():
        # A molecule: a box with vacuum for the data file, shrink-wrapped so no atom is ever lost or imaged.
        atoms = atoms.copy()
        atoms.center(vacuum=10.0)
        boundary = "s s s"
    student = StudentFile(model_path, device="cpu")
    student.species(atoms.get_chemical_symbols())  # raises UnsupportedElementError for uncovered elements
    elements = [s for s in student.type_names if s in set(atoms.get_chemical_symbols())]

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / v for k, v in dict(data="system.data", input="in.md", log="log.lammps", csv="energy.csv",
                                         png="energy.png", trajectory="md.lammpstrj").items()}
    velocities_given = bool(np.any(atoms.get_momenta()))
    write(paths["data"], atoms, format="lammps-data", specorder=elements, masses=True, units="metal",
          atom_style="atomic", velocities=velocities_given)
    plugin = Path(plugin) if plugin else build_plugin()
    paths["input"].write_text(md_input(
        data=paths["data"], model=Path(model_path).resolve(), plugin=plugin.resolve(), elements=elements,
        steps=steps, timestep_fs=timestep_fs, temperature_K=temperature_K, ensemble=ensemble,
        friction_per_ps=friction_per_ps, report_interval=report_interval, seed=seed, max_drift=max_drift,
        max_deviation=max_deviation, device=device, threads=threads, skin=skin, velocities_given=velocities_given,
        dump=paths["trajectory"], boundary=boundary))

    start = time.perf_counter()
    error = run_lammps(paths["input"], paths["log"], nprocs)
    wall = time.perf_counter() - start
    if error and (not paths["log"].exists() or not len(read_log(paths["log"]).get("Step", []))):
        raise LammpsError(f"LAMMPS failed before the first step (input {paths['input']}):\n{error}")
    summary = log_to_monitor(paths["log"], paths["csv"], paths["png"], n_atoms=len(atoms))
    stop = summary.pop("halt")
    reason = ""
    if stop:
        reason = "MD stopped: " + HALT_REASONS.get(stop["fix"], "fix {fix} halted the run at step {step}").format(
            **stop, max_drift=max_drift or 0.0, max_deviation=max_deviation or 0.0)
    elif error:
        reason = f"MD stopped: LAMMPS error: {error}"
    if reason:
        reason += f"; rows so far are in {paths['csv']}"
    return {**summary, **{k: str(v) for k, v in paths.items()}, "stopped": bool(reason), "reason": reason,
            "engine": "lammps", "nprocs": nprocs, "wall_time_s": wall}

