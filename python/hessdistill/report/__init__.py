"""The fidelity report of a student: how closely it follows its teacher (:mod:`.fidelity`), from its errors on
held-out labels (:mod:`.labels`), physics against the teacher (:mod:`.physics`) and one PNG (:mod:`.plots`)."""

from .fidelity import fidelity_report, summary_lines
from .labels import label_errors, student_hessian
from .physics import SOFT_MODE_CM, crystal_physics, frequency_errors, kabsch_rmsd, molecule_physics
from .plots import plot_report

__all__ = ["SOFT_MODE_CM", "crystal_physics", "fidelity_report", "frequency_errors", "kabsch_rmsd",
           "label_errors", "molecule_physics", "plot_report", "student_hessian", "summary_lines"]
