"""The one way the benchmarks time things: interleaved rounds, ratios within a round, medians over rounds.

Every timing figure compares callables measured side by side. After ``warmup`` untimed calls of each, every round
calls each callable ``calls`` times in turn (A A B B C C, A A B B C C, ...), so load from other processes and the
drift of a shared VM's speed over seconds hit all sides of a round alike. A ratio is taken within each round, then
the median over rounds is reported with the smallest and largest per-round ratio as its spread; absolute times are
per-name medians over rounds (context only: the machine may be shared).

Clock: CPU seconds of this process (``time.process_time``, all of its threads), so time other jobs take from the
cores does not count. Every timed callable runs in this process. A callable may instead return ``Seconds`` it
measured itself with ``clock`` (``speed.engine_step_time``: the difference of a 2N-step and an N-step MD run, so
start-up cancels); that value then replaces the clock's reading of the call.

    t = interleaved({"teacher": teacher_step, "student": student_step}, rounds=5)
    t.ratio("teacher", "student")  # {"median": ..., "min": ..., "max": ...}: the speed-up
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

CLOCK = "process_time"  # recorded with every Timings
clock = time.process_time


def spread(values) -> dict:
    """{"median", "min", "max"} of ``values`` (per-round ratios, per-round times)."""
    v = np.asarray(values, float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max())}


def lammps_steps(lmp, n: int) -> "Seconds":
    """CPU seconds per step of ``run n`` in a LAMMPS instance of this process."""
    t0 = clock()
    lmp.command(f"run {n} pre no post no")
    return Seconds((clock() - t0) / n)


class Seconds(float):
    """A time a timed callable measured itself with ``clock``, per call; it replaces the clock's reading."""


@dataclass
class Timings:
    """Seconds per unit of work (per call, or per MD step with ``units``) of each name, one value per round."""

    seconds: dict[str, list[float]]

    def median(self, name: str) -> float:
        return float(np.median(self.seconds[name]))

    def ratio(self, name: str, reference: str) -> dict:
        """``name``'s time over ``reference``'s, within each round: median, min and max over rounds."""
        return spread(np.asarray(self.seconds[name]) / np.asarray(self.seconds[reference]))

    def fastest(self, names) -> str:
        return min(names, key=self.median)

    def summary(self) -> dict:
        """For the results JSON: the clock and every per-round value, so any ratio can be recomputed."""
        return {"clock": CLOCK, "rounds": len(next(iter(self.seconds.values()))), "seconds": self.seconds}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, calls: int = 1, warmup: int = 1,
                units: dict[str, float] | None = None, desc: str = "timing") -> Timings:
    """Time ``fns`` in ``rounds`` interleaved rounds of ``calls`` calls each, after ``warmup`` calls each.

    ``units``: units of work per call by name (e.g. MD steps a call runs); times are then per unit.
    """
    from hessdistill.progress import progress_bar

    units = units or {}
    for fn in fns.values():
        for _ in range(warmup):  # first-call allocations, TorchScript's profiling runs
            fn()
    seconds: dict[str, list[float]] = {k: [] for k in fns}
    with progress_bar(rounds * len(fns), desc, unit="call", nested=True) as bar:
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = clock()
                measured = [fn() for _ in range(calls)]
                elapsed = clock() - t0
                if all(isinstance(m, Seconds) for m in measured):
                    elapsed = sum(measured)
                seconds[name].append(elapsed / calls / units.get(name, 1))
                bar.update(1)
    return Timings(seconds)
