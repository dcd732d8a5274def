"""Energy-conservation monitor shared by every MD engine (ASE, OpenMM, LAMMPS log reader).

Feed it (time, potential, kinetic) in eV and ps; it writes one CSV row per record (flushed at once, so nothing
is lost if the run dies), keeps the drift as a least-squares slope of total energy per atom against time
(eV/atom/ps, over a growing window or the last ``window_ps``), the largest |E - E0| per atom, and stops the run
by raising ``EnergyConservationError`` - after flushing the CSV - when energies or forces stop being finite, or
when drift or deviation passes its threshold.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import EnergyConservationError
from ..units import EV_TO_KJ_PER_MOL

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
)


def drift_slope(times_ps, energies_per_atom, discard_fraction: float = 0.0) -> float:
    """Least-squares slope of energy per atom against time (eV/atom/ps), after dropping the first fraction."""
    t = np.asarray(times_ps, dtype=float)
    e = np.asarray(energies_per_atom, dtype=float)
    start = int(len(t) * discard_fraction)
    t, e = t[start:], e[start:]
    if len(t) < 2 or np.ptp(t) == 0:
        return 0.0
    return float(np.polyfit(t, e, 1)[0])


@dataclass
class EnergyMonitor:
    """Online energy-conservation monitor.

    Parameters
    ----------
    n_atoms: atoms in the system (energies are reported per atom).
    csv_path: where rows are written (None: keep in memory only).
    max_drift: |drift| threshold in eV/atom/ps (None: report only). Checked once ``min_points`` rows exist.
    max_deviation: threshold on |E - E0| per atom, eV (None: report only); catches sudden jumps.
    window_ps: drift over the last ``window_ps`` only (None: growing window from the start).
    """

    n_atoms: int
    csv_path: str | os.PathLike | None = None
    max_drift: float | None = 0.01
    max_deviation: float | None = 0.05
    window_ps: float | None = None
    min_points: int = 20
    times: list = field(default_factory=list)
    totals: list = field(default_factory=list)
    max_abs_deviation: float = 0.0

    def __post_init__(self):
        if self.n_atoms <= 0:
            raise ValueError("n_atoms must be positive")
        self._file = None
        if self.csv_path is not None:
            self._file = open(self.csv_path, "w", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(COLUMNS)
            self._file.flush()

    @property
    def drift(self) -> float:
        """Current drift estimate, eV/atom/ps."""
        t = np.asarray(self.times)
        e = np.asarray(self.totals)
        if self.window_ps is not None and len(t):
            keep = t >= t[-1] - self.window_ps
            t, e = t[keep], e[keep]
        return drift_slope(t, e)

    def record(
        self, step: int, time_ps: float, potential: float, kinetic: float, temperature: float = float("nan"),
        forces_finite: bool = True,
    ) -> None:
        """Add one sample (energies in eV for the whole system). Raises EnergyConservationError to stop the run."""
        total = potential + kinetic
        per_atom = total / self.n_atoms
        finite = math.isfinite(total) and forces_finite
        if finite:
            self.times.append(float(time_ps))
            self.totals.append(per_atom)
            deviation = abs(per_atom - self.totals[0])
            self.max_abs_deviation = max(self.max_abs_deviation, deviation)
        else:
            deviation = float("nan")
        drift = self.drift if finite else float("nan")
        if self._file is not None:
            self._writer.writerow([step, time_ps, potential, kinetic, total, temperature, per_atom, deviation, drift])
            self._file.flush()
        if not finite:
            what = "energy" if not math.isfinite(total) else "forces"
            self._stop(f"non-finite {what} at step {step} (t = {time_ps:.4f} ps)")
        if self.max_deviation is not None and deviation > self.max_deviation:
            self._stop(
                f"|E - E0| = {deviation:.4g} eV/atom at step {step} exceeds max_deviation {self.max_deviation:g}"
            )
        if self.max_drift is not None and len(self.times) >= self.min_points and abs(drift) > self.max_drift:
            self._stop(f"energy drift {drift:.4g} eV/atom/ps at step {step} exceeds max_drift {self.max_drift:g}")

    def _stop(self, reason: str) -> None:
        self.close()
        where = f"; rows so far are in {self.csv_path}" if self.csv_path else ""
        raise EnergyConservationError(f"MD stopped: {reason}{where}")

    def summary(self) -> dict:
        """Drift (eV/atom/ps and kJ/mol/ps for the whole system), max deviation, number of samples."""
        return {
            "n_samples": len(self.times),
            "drift_eV_per_atom_ps": self.drift,
            "drift_kJ_per_mol_ps": self.drift * self.n_atoms * EV_TO_KJ_PER_MOL,
            "max_deviation_eV_per_atom": self.max_abs_deviation,
        }

    def close(self) -> None:
        if self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_monitor_csv(path) -> dict[str, np.ndarray]:
    """Columns of a monitor CSV as float arrays."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {c: np.array([float(r[c]) for r in rows]) for c in COLUMNS}


def plot_monitor(csv_path, png_path, title: str = "") -> None:
    """Two panels: total energy per atom relative to E0, and temperature, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_monitor_csv(csv_path)
    t = data["time_ps"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
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
    plt.close(fig)
