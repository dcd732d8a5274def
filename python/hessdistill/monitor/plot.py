"""Read a monitor CSV back, and plot it."""

from __future__ import annotations

import csv

import numpy as np

from .drift import drift_slope

COLUMNS = (
    "step",
    "time_ps",
    "potential_eV",
    "kinetic_eV",
    "total_eV",
    "temperature_K",
    "total_per_atom_eV",
    "deviation_per_atom_eV",
    "drift_eV_per_atom_ps",
    "volume_A3",
)
#: columns a monitor CSV may lack (the LAMMPS fix writes none; run_md adds it from the thermo output): read as NaN
OPTIONAL_COLUMNS = ("volume_A3",)


def read_monitor_csv(path) -> dict[str, np.ndarray]:
    """Columns of a monitor CSV as float arrays (an empty or absent ``volume_A3``, a cell that is not periodic: NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {c: np.array([float(r.get(c) or "nan") if c in OPTIONAL_COLUMNS else float(r[c]) for r in rows])
            for c in COLUMNS}


def plot_monitor(csv_path, png_path, title: str = "") -> None:
    """Two panels: total energy per atom relative to E0, and temperature, against time."""
    from matplotlib.figure import Figure  # not pyplot: no backend switch or global figure state for the caller

    data = read_monitor_csv(csv_path)
    t = data["time_ps"]
    fig = Figure(figsize=(6, 5))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    e = data["total_per_atom_eV"]
    ax1.plot(t, (e - e[0]) * 1000, lw=1)
    slope = drift_slope(t, e)
    ax1.set_ylabel("E_total - E0 (meV/atom)")
    ax1.set_title(title or f"drift {slope:.3g} eV/atom/ps")
    ax2.plot(t, data["temperature_K"], lw=1, color="C1")
    ax2.set_ylabel("T (K)")
    ax2.set_xlabel("time (ps)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
