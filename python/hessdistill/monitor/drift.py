"""The drift formula of the energy monitor: a least-squares slope kept from running sums, O(1) per sample.

This is the one definition of drift in hessdistill, mirrored operation for operation by the LAMMPS
``fix hessdistill/monitor`` (``lammps_plugin/fix_hessdistill_monitor.cpp``, which must change with it):

- every sample is shifted by the first one, ``t = time - t0`` and ``e = E/atom - e0`` (the shift keeps the sums
  small, so the variance below does not cancel; it does not change the slope);
- the sums ``n, S_t, S_e, S_tt, S_te`` are kept;
- ``drift = (S_te/n - (S_t/n)(S_e/n)) / (S_tt/n - (S_t/n)^2)``, and 0 with fewer than two samples or no spread
  in time;
- the deviation is ``|e|`` (that is |E/atom - e0|) and a sample is non-finite when E or a force is not finite.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class RunningSlope:
    """Least-squares slope of y against x from running sums, with O(1) work and memory per sample.

    ``window`` (in units of x; None: every sample so far) keeps only samples with x >= x_last - window: they are
    held in a deque (memory O(samples in the window)) and subtracted from the sums when they leave it. The sums
    are rebuilt from the deque, shifted by its oldest sample, each time as many samples have left as it holds:
    O(1) amortised, and the subtractions cannot pile up round-off over a long run.

    Example
    -------
    >>> s = RunningSlope()
    >>> for x in range(5):
    ...     s.add(x, 2.0 * x + 1.0)
    >>> s.slope
    2.0
    """

    def __init__(self, window: float | None = None):
        self.window = window
        self._samples: deque | None = deque() if window is not None else None
        self._left = 0
        self.x0 = self.y0 = None
        self._reset_sums()

    def _reset_sums(self) -> None:
        self.n, self.s_x, self.s_y, self.s_xx, self.s_xy = 0, 0.0, 0.0, 0.0, 0.0

    def _accumulate(self, dx: float, dy: float, sign: float = 1.0) -> None:
        self.n += 1 if sign > 0 else -1
        self.s_x += sign * dx
        self.s_y += sign * dy
        self.s_xx += sign * (dx * dx)
        self.s_xy += sign * (dx * dy)

    def add(self, x: float, y: float) -> None:
        """Add one sample (finite x and y)."""
        if self.x0 is None:
            self.x0, self.y0 = float(x), float(y)
        if self._samples is None:
            self._accumulate(x - self.x0, y - self.y0)
            return
        self._samples.append((float(x), float(y)))
        self._accumulate(x - self.x0, y - self.y0)
        while self._samples[0][0] < x - self.window:
            old = self._samples.popleft()
            self._accumulate(old[0] - self.x0, old[1] - self.y0, sign=-1.0)
            self._left += 1
        if self._left >= len(self._samples):
            self._rebase()

    def _rebase(self) -> None:
        self.x0, self.y0 = self._samples[0]
        self._reset_sums()
        for x, y in self._samples:
            self._accumulate(x - self.x0, y - self.y0)
        self._left = 0

    @property
    def slope(self) -> float:
        """The least-squares slope (the formula of the module docstring)."""
        if self.n < 2:
            return 0.0
        mean_x, mean_y = self.s_x / self.n, self.s_y / self.n
        var_x = self.s_xx / self.n - mean_x * mean_x
        if not var_x > 0:
            return 0.0
        return (self.s_xy / self.n - mean_x * mean_y) / var_x


def drift_slope(times_ps, energies_per_atom, discard_fraction: float = 0.0) -> float:
    """Least-squares slope of energy per atom against time (eV/atom/ps), after dropping the first fraction.

    Non-finite samples are skipped (the monitor records them but never fits them).
    """
    t = np.asarray(times_ps, dtype=float)
    e = np.asarray(energies_per_atom, dtype=float)
    start = int(len(t) * discard_fraction)
    fit = RunningSlope()
    for ti, ei in zip(t[start:].tolist(), e[start:].tolist()):
        if math.isfinite(ti) and math.isfinite(ei):
            fit.add(ti, ei)
    return fit.slope
