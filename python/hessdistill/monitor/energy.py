"""Energy-conservation monitor shared by every MD engine (ASE, OpenMM, LAMMPS log reader).

Feed it (time, potential, kinetic) in eV and ps; it writes one CSV row per record (flushed at once, so nothing
is lost if the run dies), keeps the drift as a least-squares slope of total energy per atom against time
(eV/atom/ps, over a growing window or the last ``window_ps``; ``drift.RunningSlope``, O(1) work per record), the
largest |E - E0| per atom, and stops the run by raising ``EnergyConservationError`` - after flushing the CSV -
when energies or forces stop being finite, or when drift or deviation passes its threshold. The LAMMPS engine
runs the same checks inside LAMMPS (the plugin's ``fix hessdistill/monitor``, same formulas and arithmetic).
"""

from __future__ import annotations

import math
import os

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
        forces_finite: bool = True,
    ) -> None:
        """Add one sample (energies in eV for the whole system). Raises EnergyConservationError to stop the run."""
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
        self._rows.write([step, time_ps, potential, kinetic, total, temperature, per_atom, deviation, drift])
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
        """Drift (eV/atom/ps and kJ/mol/ps for the whole system), max deviation, number of samples."""
        return {
            "n_samples": self.n_samples,
            "drift_eV_per_atom_ps": self.drift,
            "drift_kJ_per_mol_ps": self.drift * self.n_atoms * EV_TO_KJ_PER_MOL,
            "max_deviation_eV_per_atom": self.max_abs_deviation,
        }

    def close(self) -> None:
        self._rows.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
