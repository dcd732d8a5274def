"""ASE engine: the student as an ASE calculator, and ``run_md`` with ASE's integrators."""

from .calculator import StudentCalculator  # noqa: F401
from .md import run_md  # noqa: F401

__all__ = ["StudentCalculator", "run_md"]
