"""MD with the LAMMPS pair style: the input a run needs, the in-LAMMPS energy checks, and ``run_md``."""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..contract import LAMMPSOptions, MDOptions, MDResult, monitor_fields, ns_per_day, run_with_contract
from ...errors import InputError, LammpsError
from .build import build_plugin
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

    Put them after a ``run 0`` (which defines t0 and E0) and before the production ``run``; they add the
    deviation and drift to the thermo output. This is the LAMMPS mirror of ``monitor.drift`` (change both
    together): the samples every ``every`` steps are shifted by the first one (t - t0, E/atom - e0);
    ``fix ave/time ... ave running`` keeps the sums of t, e, t*e, t*t divided by n, and the drift is
    (<te> - <t><e>) / (<tt> - <t>^2), 0 for one sample; it is checked once ``min_points`` samples exist. The
    deviation is |E/atom - e0|, evaluated for the thermo output of every sample: a non-finite E/atom stops the
    run there with LAMMPS' own error "Non-numeric variable value" (LAMMPS variables refuse inf and nan), and the
    pair style stops a run whose forces are not finite with an error.
    """
    lines = [
        "# energy-conservation monitor (hessdistill; formulas of hessdistill.monitor.drift): t0, E0 from run 0",
        "variable hd_e0 equal $(etotal/atoms:%.17g)",
        "variable hd_t0 equal $(time:%.17g)",
        "variable hd_step0 equal $(step)",
        "variable hd_de equal etotal/atoms-v_hd_e0",
        "variable hd_dev equal abs(v_hd_de)",
        "variable hd_t equal time-v_hd_t0",
        "variable hd_tde equal v_hd_t*v_hd_de",
        "variable hd_tt equal v_hd_t*v_hd_t",
        f"fix hd_mean all ave/time {every} 1 {every} v_hd_t v_hd_de v_hd_tde v_hd_tt ave running",
        f"variable hd_n equal (step-v_hd_step0)/{every}+1",
        "variable hd_drift equal (f_hd_mean[3]-f_hd_mean[1]*f_hd_mean[2])/"
        "(f_hd_mean[4]-f_hd_mean[1]*f_hd_mean[1]+(v_hd_n<2))",
        f"variable hd_drift_checked equal (v_hd_n>={min_points})*abs(v_hd_drift)",
        "thermo_style custom step time atoms pe ke etotal temp press v_hd_dev v_hd_drift",
        "thermo_modify norm no flush yes format float %.15g",
    ]
    if max_deviation is not None:
        lines.append(f"fix hd_halt_dev all halt {every} v_hd_dev > {max_deviation:g} error soft message yes")
    if max_drift is not None:
        lines.append(f"fix hd_halt_drift all halt {every} v_hd_drift_checked > {max_drift:g} error soft message yes")
    return "\n".join(lines) + "\n"


def md_input(*, data, model, plugin, elements, options: MDOptions, device=None, threads=None, memory=None,
             skin=1.0, dump=None, boundary="p p p") -> str:
    """The LAMMPS input that run_md runs (units metal). Velocities come from the data file (the contract's
    velocity rule); ``device``, ``threads``, ``memory`` are written as pair_style keywords only when given."""
    o = options
    keywords = "".join(f" {k} {v}" for k, v in (("device", device), ("threads", threads), ("memory", memory))
                       if v is not None)
    text = f"""# hessdistill run_md: {o.ensemble} MD with pair_style hessdistill
units           metal
atom_style      atomic
boundary        {boundary}
read_data       {data}
plugin          load {plugin}
pair_style      hessdistill{keywords}
pair_coeff      * * {model} {' '.join(elements)}
neighbor        {skin:g} bin
neigh_modify    every 1 delay 0 check yes
timestep        {o.timestep_fs / 1000.0:.10g}
fix             hd_integrate all nve
"""
    if o.ensemble == "nvt":
        lseed = o.seed % 900_000_000 + 1  # LAMMPS seeds are positive
        text += f"fix             hd_thermostat all langevin {o.temperature_K:g} {o.temperature_K:g} " \
                f"{1.0 / o.friction_per_ps:.10g} {lseed} zero yes\n"
    text += f"""thermo_style    custom step time atoms pe ke etotal temp press
thermo_modify   norm no flush yes format float %.15g
thermo          {o.report_interval}
run             0
{monitor_commands(o.report_interval, o.max_drift, o.max_deviation)}"""
    if dump:  # full precision: the frames are the state (as in ASE's .traj), forces included
        text += f"dump            hd_dump all custom {o.frame_interval} {dump} id element x y z vx vy vz fx fy fz\n" \
                f"dump_modify     hd_dump element {' '.join(elements)} sort id format float %.17g\n"
    text += f"run             {o.steps}\n"
    return text


def run_md(model_path, atoms, out_dir, options: MDOptions | None = None, **engine_options) -> MDResult:
    """Run MD of ``atoms`` with the student in LAMMPS (units metal); stop when energy is not conserved.

    Engine options: :class:`LAMMPSOptions` (nprocs, device, threads, memory, skin, plugin). Besides the contract's
    files, writes ``system.data`` (positions, velocities), ``in.md`` and ``log.lammps``; the trajectory
    ``trajectory.lammpstrj`` holds positions, velocities and forces in LAMMPS' frame. A molecule (no periodic
    direction) runs in a shrink-wrapped box. The checks run inside LAMMPS (``monitor_commands``); a non-finite
    energy or force stops the run through an error of the pair style. Errors before the first step (bad input)
    raise ``LammpsError``. See :mod:`hessdistill.engines.contract`.
    """
    return run_with_contract("lammps", _run, model_path, atoms, out_dir, options, engine_options)


def _run(model_path, atoms, files, o: MDOptions, eo: LAMMPSOptions) -> MDResult:
    from ase.io import write

    from ...formats import read_metadata
    from ...structures import check_elements

    if atoms.pbc.any() and not atoms.pbc.all():
        raise InputError("run_md with LAMMPS needs a cell periodic in all three directions, or none (a molecule)")
    boundary = "p p p"
    if not atoms.pbc.any():
        # A molecule: a box with vacuum for the data file, shrink-wrapped so no atom is ever lost or imaged.
        atoms.center(vacuum=10.0)
        boundary = "s s s"
    type_names = read_metadata(model_path)["type_names"].split()  # TorchScript or .pt2 (the plugin takes both)
    check_elements(atoms, type_names, f"student {Path(model_path).name}")
    elements = [s for s in type_names if s in set(atoms.get_chemical_symbols())]

    out = files["summary"].parent
    files = {**files, **dict(data=out / "system.data", input=out / "in.md", log=out / "log.lammps")}
    write(files["data"], atoms, format="lammps-data", specorder=elements, masses=True, units="metal",
          atom_style="atomic", velocities=True)
    plugin = Path(eo.plugin) if eo.plugin else build_plugin()
    files["input"].write_text(md_input(
        data=files["data"], model=Path(model_path).resolve(), plugin=plugin.resolve(), elements=elements, options=o,
        device=eo.device, threads=eo.threads, memory=eo.memory, skin=eo.skin, dump=files["trajectory"],
        boundary=boundary))

    start = time.perf_counter()
    error = run_lammps(files["input"], files["log"], eo.nprocs)
    wall = time.perf_counter() - start
    if error and (not files["log"].exists() or not len(read_log(files["log"]).get("Step", []))):
        raise LammpsError(f"LAMMPS failed before the first step (input {files['input']}):\n{error}")
    summary = log_to_monitor(files["log"], files["monitor_csv"], files["monitor_png"], n_atoms=len(atoms))
    stop = summary.pop("halt")
    reason = ""
    if stop:
        reason = "MD stopped: " + HALT_REASONS.get(stop["fix"], "fix {fix} halted the run at step {step}").format(
            **stop, max_drift=o.max_drift or 0.0, max_deviation=o.max_deviation or 0.0)
    elif error:
        reason = f"MD stopped: LAMMPS error: {error}"
    if reason:
        reason += f"; rows so far are in {files['monitor_csv']}"
    loops = re.findall(r"Loop time of (\S+) on \d+ procs for (\d+) steps", files["log"].read_text(errors="replace"))
    if len(loops) >= 2:  # the production run's own timing (the first is the run 0 that sets E0)
        wall = float(loops[-1][0])
    steps_done = summary["steps"]
    return MDResult(engine="lammps", steps_requested=o.steps, steps_done=steps_done, stopped=bool(reason),
                    reason=reason, wall_s=wall, ns_per_day=ns_per_day(steps_done, o.timestep_fs, wall),
                    **monitor_fields(summary), files=files, extra={"nprocs": eo.nprocs})
