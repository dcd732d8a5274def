"""What a label store and a training run were made from, as short fingerprints, so that a resume never mixes data.

- A label store and each of its parts record the teacher (name and a fingerprint of its parameters, or of its
  model file) and the structure set (a fingerprint of numbers, positions, cells, periodicity and splits, and its
  size): resuming ``label`` with another teacher or other structures is refused.
- A run's checkpoint records the fingerprint of its label store (of the labels themselves, not of the file, which a
  second merge rewrites): resuming ``distill`` on other labels is refused (``distill.checkpoint``).

Example
-------
>>> teacher_fingerprint(load_teacher("morse"))   # 16 hex digits
>>> labels_fingerprint(load_labels("labels.h5"))
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

#: Teacher attributes that change how labels are computed, not their values.
_NOT_LABEL_SETTINGS = {"device", "chunk_size", "hessian_mode", "progress"}
#: Files of a run folder that other commands read: no output may overwrite them.
RUN_FILES = ("checkpoint.pt", "config.yaml", "metrics.csv", "summary.json", "committee.json")


def _digest(parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def teacher_fingerprint(teacher) -> str:
    """Name, spec and label-relevant settings of a teacher, and the content of its model file if it has one."""
    settings = {}
    for k, v in sorted(vars(teacher).items()):
        if k in _NOT_LABEL_SETTINGS or k.startswith("_"):
            continue
        if isinstance(v, (int, float, str, bool, type(None))):
            settings[k] = v
        elif k == "dtype":
            settings[k] = str(v)
    parts = [type(teacher).__name__, teacher.name, json.dumps(settings, sort_keys=True)]
    spec = getattr(teacher, "spec", "") or ""
    path = spec.split(":", 1)[-1]
    if path and Path(path).is_file():
        parts.append(file_digest(path))
    return _digest(parts)


def structures_fingerprint(structures: Sequence) -> str:
    """Numbers, positions (to 1e-8 A), cells, periodicity and splits of a structure set, in order."""
    parts = [len(structures)]
    for a in structures:
        parts += [np.asarray(a.numbers, dtype=np.int64).tobytes(),
                  np.round(np.asarray(a.positions, dtype=np.float64), 8).tobytes(),
                  np.round(np.asarray(a.cell.array if hasattr(a.cell, "array") else a.cell, dtype=np.float64), 8)
                  .tobytes(), np.asarray(a.pbc, dtype=bool).tobytes(), str(a.info.get("split", "train"))]
    return _digest(parts)


def labels_fingerprint(items: Sequence) -> str:
    """The content of a label store's structures (``load_labels``; any order): structures, splits and every label
    (the same after a re-merge)."""
    parts = []
    for it in sorted(items, key=lambda it: it.index):
        parts += [it.numbers.tobytes(), np.asarray(it.positions, np.float64).tobytes(),
                  np.asarray(it.cell, np.float64).tobytes(), np.asarray(it.pbc, bool).tobytes(), it.split,
                  repr(float(it.energy)), np.asarray(it.forces, np.float64).tobytes(),
                  np.asarray(it.hessian_rows, np.int64).tobytes(), np.asarray(it.hessian, np.float64).tobytes()]
        if it.stress is not None:
            parts.append(np.asarray(it.stress, np.float64).tobytes())
        if getattr(it, "probes", None) is not None:
            parts += [np.asarray(it.probes, np.float64).tobytes(), np.asarray(it.hvp, np.float64).tobytes()]
    return _digest(parts)

