"""What every Python engine does at a report to watch trust in the student: the committee's force deviation and
the teacher's spot checks, recorded by :class:`~hessdistill.monitor.deviation.DeviationMonitor`.

The ASE engine passes the deviation its :class:`~hessdistill.engines.ase.CommitteeCalculator` already computed;
the OpenMM reporter passes the positions and the driving forces, and the committee is evaluated here (one
:class:`CommitteeCalculator` on an ASE copy of the frame). Either way the arithmetic is
:func:`~hessdistill.monitor.deviation.force_deviation` and :func:`~hessdistill.monitor.deviation.force_errors`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..monitor.deviation import DeviationMonitor, force_errors


def resolve_teacher(teacher):
    """A Teacher from a name (:func:`~hessdistill.teachers.load_teacher`) or the Teacher itself (None stays None)."""
    if teacher is None or not isinstance(teacher, str):
        return teacher
    from ..teachers import load_teacher

    return load_teacher(teacher)


class TrustWatch:
    """Committee deviation and teacher spot checks at reports.

    Parameters
    ----------
    members: student files of the committee (None or fewer than 2: no deviation).
    csv_path, threshold, action, flagged_path: see :class:`~hessdistill.monitor.deviation.DeviationMonitor`.
    teacher: teacher for spot checks (name or Teacher; None: none).
    spot_check_interval: steps between spot checks (None: every report).
    device: where the committee runs when it is evaluated here.
    """

    def __init__(self, members: Sequence | None, csv_path=None, threshold: float | None = None,
                 action: str = "stop", flagged_path=None, teacher=None, spot_check_interval: int | None = None,
                 device: str | None = None):
        self.members = list(members or [])
        self.device = device
        self.teacher = resolve_teacher(teacher)
        self.spot_check_interval = spot_check_interval
        self.monitor = DeviationMonitor(csv_path, threshold, action, flagged_path)
        self._committee = None

    @classmethod
    def from_options(cls, model_path, options, files: dict, device: str | None = None) -> "TrustWatch | None":
        """The watch of an MD run with :class:`~hessdistill.engines.contract.MDOptions` ``options`` (None when
        it has neither a committee nor spot checks)."""
        if not options.watches_trust:
            return None
        members = [model_path, *options.committee] if options.committee else None
        return cls(members, files["deviation_csv"], options.max_force_deviation, options.deviation_action,
                   files["flagged"], options.spot_check_teacher, options.spot_check_interval, device)

    def check_structure(self, atoms) -> None:
        """Fail before the run when the teacher cannot evaluate ``atoms``."""
        if self.teacher is not None:
            self.teacher.check(atoms)

    def committee_deviation(self, atoms) -> dict:
        """force_deviation of the committee on ``atoms`` (evaluated here)."""
        from .ase.calculator import CommitteeCalculator

        if self._committee is None:
            self._committee = CommitteeCalculator(self.members, device=self.device, drive="mean")
        frame = atoms.copy()
        frame.calc = self._committee
        return {k: frame.calc.get_property(k, frame) for k in ("max_devi_f", "min_devi_f", "mean_devi_f", "devi_f")}

    def check(self, step: int, time_ps: float, atoms, forces, deviation: dict | None = None) -> dict | None:
        """Record one report of frame ``atoms`` driven by ``forces`` (eV/A). ``deviation``: the committee's, when
        the caller has it (else computed here when there is a committee). Raises ModelDeviationError to stop."""
        if deviation is None and len(self.members) >= 2:
            deviation = self.committee_deviation(atoms)
        teacher = None
        if self.teacher is not None and (self.spot_check_interval is None or step % self.spot_check_interval == 0):
            _, reference = self.teacher.energy_forces(atoms)
            teacher = force_errors(np.asarray(forces), reference)
        self.monitor.record(step, time_ps, deviation, teacher, atoms)
        return deviation

    def summary(self) -> dict:
        return self.monitor.summary()

    def close(self) -> None:
        self.monitor.close()
