"""Energy-conservation monitor shared by every MD engine (ASE, OpenMM, LAMMPS log reader).

Feed it (time, potential, kinetic) in eV and ps (and the cell volume, A^3, so runs at constant pressure can be
compared by density); it writes one CSV row per record (flushed at once, so nothing
is lost if the run dies), keeps the drift as a least-squares slope of total energy per atom against time
(eV/atom/ps, over a growing window or the last ``window_ps``; ``drift.RunningSlope``, O(1) work per record), the
largest |E - E0| per atom, and stops the run by raising ``EnergyConservationError`` - after flushing the CSV -
when energies or forces stop being finite, or when drift or deviation passes its threshold. The LAMMPS engine
runs the same checks inside LAMMPS (the plugin's ``fix hessdistill/monitor``, same formulas and arithmetic).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..errors import ConfigError, EnergyConservationError
from ..units import EV_TO_KJ_PER_MOL
from .drift import RunningSlope, drift_slope  # noqa: F401  (engines import these four from here)
from .plot import COLUMNS, plot_monitor, read_monitor_csv  # noqa: F401
from .rows import CsvRows


class EnergyMonitor:
    """Online energy-conservation monitor.

    Parameters
    ----------
    n_atoms: atoms in the system (energies are reported per atom).
    csv_path: where rows are written (None: keep nothing).
    max_drift: |drift| threshold in eV/atom/ps (None: report only). Checked once ``min_points`` samples exist.
    max_deviation: threshold on |E - E0| per atom, eV (None: report only); catches sudden jumps.
    window_ps: drift over the last ``window_ps`` only (None: growing window from the start); memory grows with
        the samples in the window, work per record stays O(1) amortised.
    min_points: finite samples needed before the drift is checked.

    Example
    -------
    >>> m = EnergyMonitor(3, None, max_drift=0.01)
    >>> for k in range(30):
    ...     m.record(k, 0.001 * k, -10.0, 0.5)
    >>> m.summary()["n_samples"], m.drift
    (30, 0.0)
    """

    def __init__(self, n_atoms: int, csv_path: str | os.PathLike | None = None, max_drift: float | None = 0.01,
                 max_deviation: float | None = 0.05, window_ps: float | None = None, min_points: int = 20):
        if int(n_atoms) <= 0:
            raise ConfigError(f"n_atoms must be positive, got {n_atoms}")
        if window_ps is not None and not window_ps > 0:
            raise ConfigError(f"window_ps must be positive (or None), got {window_ps}")
        self.n_atoms = int(n_atoms)
        self.csv_path = csv_path
        self.max_drift, self.max_deviation, self.window_ps, self.min_points = (
            max_drift, max_deviation, window_ps, min_points)
        self.max_abs_deviation = 0.0
        self.n_samples = 0  # finite samples
        self._e0: float | None = None
        self._fit = RunningSlope(window_ps)
        self._rows = CsvRows(csv_path, COLUMNS)

    @property
    def drift(self) -> float:
        """Current drift estimate, eV/atom/ps."""
        return self._fit.slope

    def record(
        self, step: int, time_ps: float, potential: float, kinetic: float, temperature: float = float("nan"),
        forces_finite: bool = True, volume: float = float("nan"),
    ) -> None:
        """Add one sample (energies in eV for the whole system; ``volume``: the cell's, A^3, NaN for a molecule).
        Raises EnergyConservationError to stop the run."""
        total = potential + kinetic
        per_atom = total / self.n_atoms
        finite = math.isfinite(total) and forces_finite
        if finite:
            self._fit.add(float(time_ps), per_atom)
            self.n_samples += 1
            if self._e0 is None:
                self._e0 = per_atom
            deviation = abs(per_atom - self._e0)
            self.max_abs_deviation = max(self.max_abs_deviation, deviation)
            drift = self.drift
        else:
            deviation = drift = float("nan")
        self._rows.write([step, time_ps, potential, kinetic, total, temperature, per_atom, deviation, drift,
                          volume if math.isfinite(volume) else ""])
        if not finite:
            what = "energy" if not math.isfinite(total) else "forces"
            self._stop(f"non-finite {what} at step {step} (t = {time_ps:.4f} ps)")
        if self.max_deviation is not None and deviation > self.max_deviation:
            self._stop(
                f"|E - E0| = {deviation:.4g} eV/atom at step {step} exceeds max_deviation {self.max_deviation:g}"
            )
        if self.max_drift is not None and self.n_samples >= self.min_points and abs(drift) > self.max_drift:
            self._stop(f"energy drift {drift:.4g} eV/atom/ps at step {step} exceeds max_drift {self.max_drift:g}")

    def _stop(self, reason: str) -> None:
        self.close()
        where = f"; rows so far are in {self.csv_path}" if self.csv_path else ""
        raise EnergyConservationError(f"MD stopped: {reason}{where}")

    def summary(self) -> dict:
        """The run's :func:`energy_summary` so far."""
        return energy_summary(self.n_samples, self.drift, self.max_abs_deviation, self.n_atoms)

    def close(self) -> None:
        self._rows.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def energy_summary(n_samples: int, drift: float, max_deviation: float, n_atoms: int) -> dict:
    """What every engine reports of a run's energy conservation: the number of finite samples, the drift (eV/atom/ps
    and kJ/mol/ps for the whole system) and the largest |E - E0| per atom (eV)."""
    return {
        "n_samples": int(n_samples),
        "drift_eV_per_atom_ps": float(drift),
        "drift_kJ_per_mol_ps": float(drift) * n_atoms * EV_TO_KJ_PER_MOL,
        "max_deviation_eV_per_atom": float(max_deviation),
    }


def summary_from_rows(rows: dict, n_atoms: int) -> dict:
    """:func:`energy_summary` of monitor rows (``read_monitor_csv``; written by ``EnergyMonitor`` or by the LAMMPS
    fix): the finite rows are the samples, the last one holds the drift."""
    finite = np.isfinite(rows.get("drift_eV_per_atom_ps", np.array([])))
    if not finite.any():
        return energy_summary(0, 0.0, 0.0, n_atoms)
    return energy_summary(int(finite.sum()), rows["drift_eV_per_atom_ps"][finite][-1],
                          rows["deviation_per_atom_eV"][finite].max(), n_atoms)
