"""Trust during MD: committee force deviation (DeePMD's ``max_devi_f``) and teacher spot checks, one definition.

The per-atom force deviation of a committee of K students with forces F_k,i is

    devi_f,i = sqrt( mean_k | F_k,i - mean_k F_k,i |^2 )

(the population standard deviation of the force vector, as DeePMD-kit's ``model_devi``), and a frame is
summarised by ``max_devi_f`` (max over atoms: a single badly described atom is what breaks a run), ``min_devi_f``
and ``mean_devi_f``. :func:`force_deviation` is the only place this arithmetic lives in Python: the ASE calculator,
the OpenMM reporter and ``hessdistill refine`` all call it. The LAMMPS plugin's ``committee.cpp`` (behind
``compute``/``fix hessdistill/deviation``) mirrors it operation for operation (same sums in the same order, no fused
multiply-add); change both together (``tests/test_lammps_committee.py`` compares them to 1e-10).

:class:`DeviationMonitor` records one row per report (``deviation.csv``: step, time, max/min/mean devi_f and,
when the teacher checked the frame, the driving force's error against it), applies the threshold
(``action="stop"`` raises :class:`~hessdistill.errors.ModelDeviationError` after flushing the CSV; ``"flag"``
saves the frame to ``flagged.extxyz`` and goes on) and summarises the run.

Example
-------
>>> import numpy as np
>>> f = np.zeros((2, 3, 3)); f[1, 0, 0] = 0.2           # two members disagree on atom 0 by 0.2 eV/A
>>> force_deviation(f)["max_devi_f"]
0.1
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from ..errors import ConfigError, InputError, ModelDeviationError
from .rows import CsvRows

COLUMNS = ("step", "time_ps", "max_devi_f", "min_devi_f", "mean_devi_f", "teacher_force_mae",
           "teacher_force_max_error")
ACTIONS = ("stop", "flag")


def per_atom_force_deviation(forces) -> np.ndarray:
    """devi_f per atom (N,) of committee forces (K, N, 3) (module docstring); K >= 2."""
    f = np.asarray(forces, dtype=float)
    if f.ndim != 3 or f.shape[2] != 3 or f.shape[0] < 2:
        raise InputError(f"committee forces must have shape (K >= 2, N, 3), got {f.shape}")
    return np.sqrt(np.mean(np.sum((f - f.mean(axis=0)) ** 2, axis=2), axis=0))


def force_deviation(forces) -> dict:
    """``max_devi_f``, ``min_devi_f``, ``mean_devi_f`` (eV/A) and ``devi_f`` (per atom) of committee forces (K, N, 3)."""
    d = per_atom_force_deviation(forces)
    return {"max_devi_f": float(d.max()), "min_devi_f": float(d.min()), "mean_devi_f": float(d.mean()), "devi_f": d}


def force_errors(forces, reference) -> dict:
    """``force_mae`` (mean |component| error) and ``force_max_error`` (largest per-atom error norm), eV/A."""
    diff = np.asarray(forces, dtype=float) - np.asarray(reference, dtype=float)
    return {"force_mae": float(np.abs(diff).mean()), "force_max_error": float(np.linalg.norm(diff, axis=1).max())}


def read_deviation_csv(path) -> dict[str, np.ndarray]:
    """Columns of a ``deviation.csv`` as float arrays (empty cells are NaN)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {c: np.array([float(r[c]) if r[c] != "" else math.nan for r in rows]) for c in COLUMNS}


class DeviationMonitor:
    """Per-report committee deviation and teacher spot checks, with a threshold.

    Parameters
    ----------
    csv_path: where rows are written (None: keep nothing).
    threshold: max_devi_f threshold, eV/A (None: report only).
    action: ``stop`` (raise ModelDeviationError) or ``flag`` (append the frame to ``flagged_path``, go on).
    flagged_path: extxyz file of flagged frames (``flag`` only; None: do not save them).
    """

    def __init__(self, csv_path: str | os.PathLike | None = None, threshold: float | None = None,
                 action: str = "stop", flagged_path: str | os.PathLike | None = None):
        if action not in ACTIONS:
            raise ConfigError(f"deviation action must be one of {', '.join(ACTIONS)}, got {action!r}")
        self.csv_path, self.threshold, self.action = csv_path, threshold, action
        self.flagged_path = Path(flagged_path) if flagged_path is not None else None
        self.n_samples = self.n_flagged = self.n_spot_checks = 0
        self._max = -math.inf
        self._sum_max = self._sum_mae = 0.0
        self._max_mae = -math.inf
        self._pairs: list[tuple[float, float]] = []  # (max_devi_f, teacher MAE) where both exist
        self._rows = CsvRows(csv_path, COLUMNS)
        if self.flagged_path is not None and self.flagged_path.exists():
            self.flagged_path.unlink()  # frames of an earlier run in the same folder are not this run's

    def record(self, step: int, time_ps: float, deviation: dict | None = None, teacher: dict | None = None,
               atoms=None) -> None:
        """One report: ``deviation`` from :func:`force_deviation` (None: no committee), ``teacher`` from
        :func:`force_errors` (None: not spot-checked this step), ``atoms`` the frame (saved when flagged)."""
        dev = deviation or {}
        row = [step, time_ps] + [dev.get(k, "") for k in ("max_devi_f", "min_devi_f", "mean_devi_f")]
        row += [teacher["force_mae"], teacher["force_max_error"]] if teacher else ["", ""]
        self._rows.write(row)
        if teacher:
            self.n_spot_checks += 1
            self._sum_mae += teacher["force_mae"]
            self._max_mae = max(self._max_mae, teacher["force_mae"])
        if not dev:
            return
        m = dev["max_devi_f"]
        self.n_samples += 1
        self._max = max(self._max, m)
        self._sum_max += m
        if teacher:
            self._pairs.append((m, teacher["force_mae"]))
        if self.threshold is None or not m > self.threshold:
            return
        if self.action == "stop":
            self.close()
            where = f"; rows so far are in {self.csv_path}" if self.csv_path else ""
            raise ModelDeviationError(
                f"MD stopped: committee force deviation max_devi_f = {m:.4g} eV/A at step {step} exceeds "
                f"max_force_deviation {self.threshold:g}: the student is outside its training data here{where}")
        self.n_flagged += 1
        if atoms is not None and self.flagged_path is not None:
            self._save(atoms, step, time_ps, dev)

    def _save(self, atoms, step, time_ps, dev) -> None:
        from ase import Atoms
        from ase.io import write

        frame = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        # the LAMMPS fix hessdistill/deviation writes the same extxyz fields (fix_hessdistill_deviation.cpp)
        frame.info.update(step=int(step), time_ps=float(time_ps), max_devi_f=dev["max_devi_f"])
        frame.arrays["devi_f"] = np.asarray(dev["devi_f"], dtype=float)
        write(self.flagged_path, frame, format="extxyz", append=True)

    def summary(self) -> dict:
        """Counts, the largest and mean max_devi_f, the spot checks' mean and largest force MAE, and the Pearson
        correlation of max_devi_f with the teacher's force MAE over the frames that have both (NaN below 3)."""
        nan = math.nan
        corr = nan
        if len(self._pairs) >= 3:
            a = np.array(self._pairs)
            if a[:, 0].std() > 0 and a[:, 1].std() > 0:
                corr = float(np.corrcoef(a[:, 0], a[:, 1])[0, 1])
        return {
            "n_samples": self.n_samples,
            "max_devi_f": self._max if self.n_samples else nan,
            "mean_max_devi_f": self._sum_max / self.n_samples if self.n_samples else nan,
            "threshold": self.threshold,
            "action": self.action,
            "n_flagged": self.n_flagged,
            "n_spot_checks": self.n_spot_checks,
            "teacher_force_mae_mean": self._sum_mae / self.n_spot_checks if self.n_spot_checks else nan,
            "teacher_force_mae_max": self._max_mae if self.n_spot_checks else nan,
            "deviation_error_correlation": corr,
        }

    def close(self) -> None:
        self._rows.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
