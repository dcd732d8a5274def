"""MD with the LAMMPS pair style: the input a run needs, the in-LAMMPS energy monitor (a fix of the plugin), the
committee's deviation monitor (another fix), and ``run_md``."""

from __future__ import annotations

import re
import time
from pathlib import Path

from ..contract import (
    LAMMPSOptions, MDOptions, MDResult, monitor_fields, ns_per_day, run_with_contract, written_files,
)
from ...errors import ConfigError, InputError, LammpsError, ModelDeviationError
from ...monitor import plot_monitor, read_monitor_csv
from ...monitor.deviation import DeviationMonitor, read_deviation_csv
from ...monitor.energy import summary_from_rows
from .build import build_plugin
from .log import UNIT_STYLES, log_to_monitor, read_log  # noqa: F401
from .run import run_lammps

#: ID of the monitor fix that md_input writes (thermo columns f_hdmon[1] drift, f_hdmon[2] deviation)
MONITOR_FIX = "hdmon"
#: ID of the committee deviation fix that md_input writes with a committee (f_hddev[1] max_devi_f)
DEVIATION_FIX = "hddev"


def monitor_commands(every: int, max_drift: float | None = 0.01, max_deviation: float | None = 0.05,
                     min_points: int = 20, *, file="monitor.csv", window_ps: float | None = None,
                     fix_id: str = MONITOR_FIX, error: str = "hard") -> str:
    """The ``fix hessdistill/monitor`` command (the plugin must be loaded) that runs the energy monitor inside
    LAMMPS: one sample at the start of the next run and every ``every`` steps, written to ``file`` (the columns of
    :data:`hessdistill.monitor.COLUMNS`, eV and ps), and a stop with the message of ``EnergyMonitor`` (an ERROR;
    ``error="soft"``: the run ends as with ``fix halt ... error soft``) on a non-finite energy or force,
    |E - E0| per atom > ``max_deviation`` or |drift| > ``max_drift`` once ``min_points`` samples exist. Units
    metal or real. Same formulas and arithmetic as :class:`hessdistill.monitor.EnergyMonitor`
    (``tests/test_lammps_monitor.py`` checks both on one energy series).

    Example
    -------
    >>> command = monitor_commands(10, max_drift=0.005, file="m.csv")  # in an input after "plugin load ..."
    >>> command.split()[:8]
    ['fix', 'hdmon', 'all', 'hessdistill/monitor', '10', 'file', 'm.csv', 'max_drift']
    """
    def threshold(value):
        return "none" if value is None else repr(float(value))  # shortest text of the same double

    if error not in ("hard", "soft"):
        raise ConfigError(f"error must be hard or soft, got {error!r}")
    if any(c.isspace() for c in str(file)):
        raise ConfigError(f"the monitor CSV path must not contain white space (a LAMMPS word): {file!r}")
    return (f"fix {fix_id} all hessdistill/monitor {int(every)} file {file} max_drift {threshold(max_drift)} "
            f"max_deviation {threshold(max_deviation)} min_points {int(min_points)} "
            f"window_ps {threshold(window_ps)} error {error}\n")


def deviation_commands(every: int, file="deviation.csv", max_devi_f: float | None = None, action: str = "stop",
                       flagged="flagged.extxyz", fix_id: str = DEVIATION_FIX) -> str:
    """The ``fix hessdistill/deviation`` command (needs ``pair_style hessdistill ... committee K``): the committee's
    force deviation at the start of the next run and every ``every`` steps, one row of ``file`` each (the columns
    of :data:`hessdistill.monitor.deviation.COLUMNS`, teacher columns empty), and above ``max_devi_f`` (eV/A) an
    ERROR in the words of ``DeviationMonitor`` (``action="stop"``) or the frame appended to ``flagged``
    (``"flag"``, extxyz with per-atom ``devi_f``).

    Example
    -------
    >>> deviation_commands(10, max_devi_f=0.3, action="flag").split()[:5]
    ['fix', 'hddev', 'all', 'hessdistill/deviation', '10']
    """
    if action not in ("stop", "flag"):
        raise ConfigError(f"action must be stop or flag, got {action!r}")
    for path in (file, flagged):
        if any(c.isspace() for c in str(path)):
            raise ConfigError(f"deviation file paths must not contain white space (a LAMMPS word): {path!r}")
    threshold = "none" if max_devi_f is None else repr(float(max_devi_f))
    return (f"fix {fix_id} all hessdistill/deviation {int(every)} file {file} max_devi_f {threshold} "
            f"action {action} flagged {flagged}\n")


def md_input(*, data, model, plugin, elements, options: MDOptions, device=None, threads=None, memory=None,
             skin=1.0, dump=None, boundary="p p p", monitor_csv="monitor.csv", committee=(),
             deviation_csv="deviation.csv", flagged="flagged.extxyz") -> str:
    """The LAMMPS input that run_md runs (units metal). Velocities come from the data file (the contract's
    velocity rule); ``device``, ``threads``, ``memory`` are written as pair_style keywords only when given; the
    energy monitor is ``fix hessdistill/monitor`` writing ``monitor_csv`` (:func:`monitor_commands`). With a
    ``committee`` (the other members' files) the pair style runs ``model`` and them as ``committee K drive
    options.committee_drive`` and ``fix hessdistill/deviation`` writes ``deviation_csv`` every report interval
    (:func:`deviation_commands`)."""
    o = options
    keywords = "".join(f" {k} {v}" for k, v in (("device", device), ("threads", threads), ("memory", memory))
                       if v is not None)
    models = " ".join(str(m) for m in (model, *committee))
    if committee:
        keywords += f" committee {1 + len(committee)} drive {o.committee_drive}"
    text = f"""# hessdistill run_md: {o.ensemble} MD with pair_style hessdistill
units           metal
atom_style      atomic
boundary        {boundary}
read_data       {data}
plugin          load {plugin}
pair_style      hessdistill{keywords}
pair_coeff      * * {models} {' '.join(elements)}
neighbor        {skin:g} bin
neigh_modify    every 1 delay 0 check yes
timestep        {o.timestep_fs / 1000.0:.10g}
"""
    if o.ensemble == "npt":  # Nose-Hoover thermostat and isotropic barostat (MTK); units metal: pressure in bar
        text += f"fix             hd_integrate all npt temp {o.temperature_K:g} {o.temperature_K:g} " \
                f"{1.0 / o.friction_per_ps:.10g} iso {o.pressure_bar!r} {o.pressure_bar!r} {o.barostat_time_ps:.10g}\n"
    else:
        text += "fix             hd_integrate all nve\n"
    if o.ensemble == "nvt":
        lseed = o.seed % 900_000_000 + 1  # LAMMPS seeds are positive
        text += f"fix             hd_thermostat all langevin {o.temperature_K:g} {o.temperature_K:g} " \
                f"{1.0 / o.friction_per_ps:.10g} {lseed} zero yes\n"
    text += monitor_commands(o.report_interval, *o.energy_thresholds, file=monitor_csv)
    if committee:
        text += deviation_commands(o.report_interval, deviation_csv, o.max_force_deviation, o.deviation_action,
                                   flagged)
    text += f"""thermo_style    custom step time atoms pe ke etotal temp press vol f_{MONITOR_FIX}[2] f_{MONITOR_FIX}[1]
thermo_modify   norm no flush yes format float %.15g
thermo          {o.report_interval}
"""
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
    direction) runs in a shrink-wrapped box. The energy monitor runs inside LAMMPS (``fix hessdistill/monitor``,
    :func:`monitor_commands`) and writes ``monitor.csv`` itself; its stop message is the result's ``reason``. A
    non-finite force stops the run through an error of the pair style. Errors before the first step (bad input)
    raise ``LammpsError``. With ``options.committee`` the committee runs in the pair style and ``fix
    hessdistill/deviation`` writes ``deviation.csv`` and ``flagged.extxyz`` (frames in LAMMPS' frame); its rows
    are replayed through :class:`~hessdistill.monitor.deviation.DeviationMonitor` for ``trust`` and the stop
    reason, the same as in the other engines. Teacher spot checks are refused (``ConfigError``). See
    :mod:`hessdistill.engines.contract`.
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
    for member in o.committee:  # the plugin refuses these too; this says it before LAMMPS starts
        if read_metadata(member)["type_names"].split() != type_names:
            raise InputError(f"committee member {member} covers {read_metadata(member)['type_names']}, "
                             f"{Path(model_path).name} covers {' '.join(type_names)}: members must share elements")
    elements = [s for s in type_names if s in set(atoms.get_chemical_symbols())]

    out = files["summary"].parent
    files = {**files, **dict(data=out / "system.data", input=out / "in.md", log=out / "log.lammps")}
    write(files["data"], atoms, format="lammps-data", specorder=elements, masses=True, units="metal",
          atom_style="atomic", velocities=True)
    plugin = Path(eo.plugin) if eo.plugin else build_plugin()
    if o.committee and files["flagged"].exists():
        files["flagged"].unlink()  # frames of an earlier run in this folder are not this run's
    files["input"].write_text(md_input(
        data=files["data"], model=Path(model_path).resolve(), plugin=plugin.resolve(), elements=elements, options=o,
        device=eo.device, threads=eo.threads, memory=eo.memory, skin=eo.skin, dump=files["trajectory"],
        boundary=boundary, monitor_csv=files["monitor_csv"], committee=[Path(m).resolve() for m in o.committee],
        deviation_csv=files.get("deviation_csv"), flagged=files.get("flagged")))

    start = time.perf_counter()
    error = run_lammps(files["input"], files["log"], eo.nprocs)
    wall = time.perf_counter() - start
    rows = read_monitor_csv(files["monitor_csv"]) if files["monitor_csv"].exists() else {}
    if error and not len(rows.get("step", [])):
        raise LammpsError(f"LAMMPS failed before the first step (input {files['input']}):\n{error}")
    summary = summary_from_rows(rows, len(atoms))
    log = read_log(files["log"])
    if files["monitor_csv"].exists():
        add_volume(files["monitor_csv"], log if boundary == "p p p" else {})
    if summary["n_samples"]:
        plot_monitor(files["monitor_csv"], files["monitor_png"])
    trust, deviation_stop, deviation_steps = _replay_deviation(files, o) if o.committee else ({}, "", [])
    reason = ""
    if log["monitor_stop"]:  # the fix's own message, as EnergyMonitor words it (it names the CSV)
        reason = f"MD stopped: {log['monitor_stop']}"
    elif deviation_stop:  # DeviationMonitor's message on the row where the fix stopped the run
        reason = deviation_stop
    elif error:
        reason = f"MD stopped: LAMMPS error: {error}; rows so far are in {files['monitor_csv']}"
    loops = re.findall(r"Loop time of (\S+) on \d+ procs for (\d+) steps", files["log"].read_text(errors="replace"))
    if loops:  # LAMMPS' own timing of the run loop (absent when an error ended the run)
        wall = float(loops[-1][0])
    # thermo prints the last step of a run; an ERROR in the monitor comes before that step's thermo line
    steps_done = int(max([*log.get("Step", [])[-1:], *rows.get("step", [])[-1:], *deviation_steps[-1:], 0]))
    return MDResult(engine="lammps", steps_requested=o.steps, steps_done=steps_done, stopped=bool(reason),
                    reason=reason, wall_s=wall, ns_per_day=ns_per_day(steps_done, o.timestep_fs, wall),
                    **monitor_fields(summary), files=written_files(files), extra={"nprocs": eo.nprocs}, trust=trust)


def add_volume(csv_path, log: dict) -> None:
    """Append the ``volume_A3`` column to the CSV of ``fix hessdistill/monitor`` (which writes none): the thermo
    ``Volume`` of the row's step from ``log`` (:func:`read_log`), empty where thermo printed none (a stop comes before
    that step's thermo line) and for a shrink-wrapped molecule (``log`` empty)."""
    import csv

    from ...monitor.plot import COLUMNS
    from ...paths import atomic_write_text

    volumes = dict(zip((int(s) for s in log.get("Step", [])), log.get("Volume", [])))
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [",".join(COLUMNS)]
    for row in rows:
        volume = volumes.get(int(float(row["step"])))
        row["volume_A3"] = "" if volume is None else repr(float(volume))
        lines.append(",".join(row[c] for c in COLUMNS))
    atomic_write_text(csv_path, "\n".join(lines) + "\n")


def _replay_deviation(files, o: MDOptions) -> tuple[dict, str, list]:
    """The rows fix hessdistill/deviation wrote, fed to the DeviationMonitor of the other engines (same threshold
    and action; it writes no file, the fix wrote deviation.csv and flagged.extxyz): its ``summary()``, its stop
    message where the fix stopped the run ("" otherwise) and the steps of the rows."""
    if not files["deviation_csv"].exists():
        return DeviationMonitor(None, o.max_force_deviation, o.deviation_action).summary(), "", []
    rows = read_deviation_csv(files["deviation_csv"])
    monitor = DeviationMonitor(None, o.max_force_deviation, o.deviation_action)
    stop = ""
    for k, step in enumerate(rows["step"]):
        deviation = {c: float(rows[c][k]) for c in ("max_devi_f", "min_devi_f", "mean_devi_f")}
        try:
            monitor.record(int(step), float(rows["time_ps"][k]), deviation)
        except ModelDeviationError as exc:
            stop = f"{exc}; rows so far are in {files['deviation_csv']}"
            break
    return monitor.summary(), stop, [int(s) for s in rows["step"]]
