"""Distill: train a conservative student on the teacher's energies, forces and Hessian rows.

``config`` (settings), ``data`` (graphs and batches), ``hessian`` (student Hessian rows by VJPs), ``trainer``
(loss, loop, evaluation, checkpoints).
"""

from .config import DistillConfig, load_config, write_config  # noqa: F401
from .trainer import Trainer, distill, evaluate, model_from_checkpoint, predict  # noqa: F401

__all__ = ["DistillConfig", "Trainer", "distill", "evaluate", "load_config", "model_from_checkpoint", "predict",
           "write_config"]
