"""Sampling: build the specialized structure set.

Teacher MD (ASE Langevin, at one or several temperatures), normal-mode sampling around the teacher's minimum
(:mod:`.modes`) and/or rattling around a starting structure, or user structures read with ase.io; optionally
strained cells (so a periodic student learns the teacher's equation of state, not one volume); then a seeded
train/validation/test split stored in ``atoms.info["split"]``. :func:`sample_structures` does all of it.
"""

from .io import read_structures, starting_structure, write_structures
from .md import teacher_md
from .perturb import rattled, strained
from .sampler import sample_structures
from .splitting import share_out, split

__all__ = ["rattled", "read_structures", "sample_structures", "share_out", "split", "starting_structure",
           "strained", "teacher_md", "write_structures"]
