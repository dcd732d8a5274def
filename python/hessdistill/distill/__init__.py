"""Distill: train a conservative student on the teacher's energies, forces and Hessian rows.

``config`` (settings), ``data`` (label store -> graphs and batches), ``hessian`` (student Hessian rows by VJPs),
``loss`` (loss terms, normalizers, ``predict``), ``compiled`` (the traced and compiled training step),
``evaluation`` (held-out errors), ``trainer`` (the loop, its stopping rules and the state a resume needs),
``checkpoint`` (atomic writes, format and settings checks, ``model_from_checkpoint``), ``metrics`` (metrics.csv,
learning curve), ``run`` (``distill``: data -> trainer -> test errors -> exported student), ``committee`` (K students
differing in seed), ``sizes`` (a size ladder: students of several sizes, their validation errors and cost).
"""

from .checkpoint import model_from_checkpoint  # noqa: F401
from .committee import committee_students, distill_committee  # noqa: F401
from .config import DistillConfig, load_config, write_config  # noqa: F401
from .evaluation import evaluate  # noqa: F401
from .loss import predict  # noqa: F401
from .run import distill, distill_compare, export_run  # noqa: F401
from .sizes import parse_sizes, size_ladder  # noqa: F401
from .trainer import Trainer  # noqa: F401

__all__ = ["DistillConfig", "Trainer", "committee_students", "distill", "distill_committee", "distill_compare", "evaluate", "export_run", "load_config", "model_from_checkpoint", "parse_sizes",
           "predict", "size_ladder", "write_config"]
