"""A committee of students: K runs of :func:`~.run.distill` that differ only in seed (initialisation, data order
and Hessian-row sampling all follow ``config.seed``), for the force deviation that tells where a student is not to
be trusted (:mod:`hessdistill.monitor.deviation`).

Layout: member k is an ordinary run folder ``RUN/member{k}/`` (checkpoint, metrics, ``student.pt``) trained with
seed ``config.seed + k``; ``RUN/committee.json`` lists the member files in order and their test errors. Any
member file is a normal student; give the first as the model and the others as ``committee`` to MD.

Example
-------
>>> summary = distill_committee(DistillConfig(), "labels.h5", "run", k=3)
>>> summary["students"]   # ['run/member0/student.pt', 'run/member1/student.pt', 'run/member2/student.pt']
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, InputError
from .config import DistillConfig
from .run import distill

COMMITTEE_FILE = "committee.json"


def member_dir(run_dir, k: int) -> Path:
    return Path(run_dir) / f"member{k}"


def distill_committee(config: DistillConfig, labels, run_dir, k: int, resume: bool = True,
                      progress: bool = True) -> dict:
    """Train K >= 2 students (member k with seed ``config.seed + k``); returns and writes ``committee.json``."""
    if isinstance(k, bool) or int(k) < 2:
        raise ConfigError(f"a committee needs K >= 2 students, got {k!r}")
    members = []
    for m in range(int(k)):
        summary = distill(config.replace(seed=config.seed + m), labels, member_dir(run_dir, m), resume=resume,
                          progress=progress)
        members.append({"student": summary["student"], "seed": config.seed + m, "test": summary["test"]})
    result = {"k": int(k), "students": [m["student"] for m in members], "members": members}
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / COMMITTEE_FILE).write_text(json.dumps(result, indent=2))
    return result


def committee_students(run_dir) -> list[str]:
    """The member student files of a committee run folder, in order (from ``committee.json``)."""
    path = Path(run_dir) / COMMITTEE_FILE
    if not path.is_file():
        raise InputError(f"{run_dir} is not a committee run folder (no {COMMITTEE_FILE}); train one with "
                         "hessdistill distill --committee K")
    return json.loads(path.read_text())["students"]
