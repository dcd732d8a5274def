"""Read LAMMPS logs: thermo columns, the ``fix halt`` or ``fix hessdistill/monitor`` stop, and (for logs of inputs
without the monitor fix) the monitor CSV/PNG of the other engines from thermo output."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import EnergyConservationError, InputError
from ...monitor.energy import EnergyMonitor, plot_monitor
from ...units import EV_TO_KCAL_PER_MOL

#: the stop message of fix hessdistill/monitor: an ERROR line (error hard, with LAMMPS' "(source:line)") or a
#: plain line (error soft)
MONITOR_STOP = re.compile(r"(?:ERROR: )?hessdistill/monitor: (.*?)(?: \([^()\s]+:\d+\))?\s*$")
#: energy and time of a LAMMPS unit style in eV and ps
UNIT_STYLES = {"metal": (1.0, 1.0), "real": (1.0 / EV_TO_KCAL_PER_MOL, 1e-3)}


def read_log(log_path) -> dict:
    """Thermo output of a LAMMPS log as float arrays by column name (runs joined, repeated steps dropped).

    Also returns ``units`` (from the echoed ``units`` command, default lj as LAMMPS), ``timestep`` (echoed value
    or None), ``natoms`` (from "Loop time ... with N atoms" or None), ``halt`` (the first ``fix halt`` that
    fired: dict of fix, step, value; or None) and ``monitor_stop`` (why ``fix hessdistill/monitor`` stopped the run,
    in the words of ``EnergyMonitor``, e.g. "energy drift 0.012 eV/atom/ps at step 400 exceeds max_drift 0.01;
    rows so far are in monitor.csv"; or None).
    """
    header: list[str] | None = None
    columns: dict[str, list[float]] = {}
    info = {"units": "lj", "timestep": None, "natoms": None, "halt": None, "monitor_stop": None}
    last_step = -np.inf
    for line in Path(log_path).read_text(errors="replace").splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Step" and len(words) > 1:
            header = words
            for w in words:
                columns.setdefault(w, [])
            continue
        if header is not None and len(words) == len(header):
            try:
                values = [float(w) for w in words]
            except ValueError:
                values = None
            if values is not None:
                if values[0] > last_step:
                    last_step = values[0]
                    n = len(columns["Step"])
                    for name, v in zip(header, values):
                        columns[name] += [np.nan] * (n - len(columns[name])) + [v]
                continue
        if words[0] in ("Loop", "ERROR:", "ERROR"):
            header = None
        if words[0] == "units" and len(words) > 1:
            info["units"] = words[1]
        elif words[0] == "timestep" and len(words) > 1:
            info["timestep"] = float(words[1]) if _is_float(words[1]) else info["timestep"]
        elif line.startswith("Loop time") and (m := re.search(r"with (\d+) atoms", line)):
            info["natoms"] = int(m.group(1))
        elif info["halt"] is None and (m := re.search(r"Fix halt condition for fix-id (\S+) met on step (\d+) "
                                                     r"with value (\S+)", line)):
            info["halt"] = {"fix": m.group(1), "step": int(m.group(2)), "value": float(m.group(3))}
        elif info["monitor_stop"] is None and (m := MONITOR_STOP.match(line)):
            info["monitor_stop"] = m.group(1)
    n = len(columns.get("Step", []))
    out = {name: np.array(v + [np.nan] * (n - len(v))) for name, v in columns.items()}
    return {**out, **info}


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def log_to_monitor(log_path, csv_path, png_path=None, n_atoms: int | None = None, title: str = "") -> dict:
    """Write the monitor CSV (and PNG) of the runs in a LAMMPS log; return ``EnergyMonitor.summary()`` plus
    ``halt`` (see ``read_log``) and ``steps`` (last step).

    Needs thermo columns Step and PotEng plus KinEng (or TotEng); Time, Temp and Atoms are used when present.
    Units metal or real (converted to eV and ps).
    """
    log = read_log(log_path)
    if log["units"] not in UNIT_STYLES:
        raise InputError(f"{log_path}: units {log['units']}; the monitor reads units metal or real")
    energy, to_ps = UNIT_STYLES[log["units"]]
    steps = log.get("Step", np.array([]))
    if not len(steps):
        raise InputError(f"{log_path}: no thermo output (the run stopped before its first step?)")
    if "PotEng" not in log:
        raise InputError(f"{log_path}: thermo output lacks PotEng (use thermo_style custom step time pe ke temp)")
    if n_atoms is None:
        n_atoms = int(log["Atoms"][0]) if "Atoms" in log else log["natoms"]
    if not n_atoms:
        raise InputError(f"{log_path}: number of atoms unknown (add 'atoms' to thermo_style or pass n_atoms)")
    if "Time" in log:
        times = log["Time"] * to_ps
    elif log["timestep"] is not None:
        times = steps * log["timestep"] * to_ps
    else:
        raise InputError(f"{log_path}: no Time column and no timestep command in the log")
    pot = log["PotEng"] * energy
    if "KinEng" in log:
        kin = log["KinEng"] * energy
    else:
        kin = log["TotEng"] * energy - pot if "TotEng" in log else np.zeros(len(steps))
    temp = log.get("Temp", np.full(len(steps), np.nan))
    monitor = EnergyMonitor(n_atoms, csv_path, max_drift=None, max_deviation=None)
    try:
        for k in range(len(steps)):
            monitor.record(int(steps[k]), float(times[k]), float(pot[k]), float(kin[k]), float(temp[k]))
    except EnergyConservationError:  # non-finite energies: the row is written, the run had stopped there
        pass
    finally:
        monitor.close()
    if png_path is not None and monitor.n_samples:
        plot_monitor(csv_path, png_path, title=title)
    return {**monitor.summary(), "halt": log["halt"], "steps": int(steps[-1])}
