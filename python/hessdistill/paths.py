"""Checks on the paths a command reads and writes, and atomic writes: made before any teacher or training work,
so a bad path fails in one line and no input is ever overwritten.

Example
-------
>>> check_output("labels.h5", inputs=["structures.extxyz"])          # a file to be written
>>> check_output("report", kind="dir", inputs=["student.pt"])         # a folder to be written into
>>> with atomic_path("student.pt") as tmp:                             # write tmp; renamed over student.pt
...     save(tmp)
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

from .errors import InputError


def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """``path`` as a Path; InputError when it is missing or is not a regular file (a folder is named as such)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory; expected a file")
    if not p.exists():
        raise InputError(f"{what} {p} does not exist")
    if not p.is_file():
        raise InputError(f"{what} {p} is not a regular file")
    return p


def _same(a: Path, b: Path) -> bool:
    """Same file, or (for paths not yet there) the same resolved name."""
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output(path: str | os.PathLike, inputs: Iterable = (), kind: str = "file", what: str = "output",
                 protected: Iterable = (), writes: Iterable[str] = ()) -> Path:
    """Check that ``path`` can be written as a ``kind`` ("file" or "dir") without harming anything; returns it.

    Refused: a folder where a file is meant (and a non-folder where a folder is meant), an existing special file,
    a nearest existing ancestor that is not a writable folder, and a written file that is one of ``inputs`` (what
    the command reads) or ``protected`` (files a run folder needs). For ``kind="dir"``, ``writes`` names the files
    the command writes into the folder.
    """
    p = Path(path)
    if kind == "file":
        targets = [p]
    elif kind == "dir":
        if p.exists() and not p.is_dir():
            raise InputError(f"{what} {p} exists and is not a directory")
        targets = [p / name for name in writes]
    else:
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    guarded = [(Path(x), "input") for x in inputs if x is not None]
    guarded += [(Path(x), "file the run needs") for x in protected if x is not None]
    for target in targets:
        if target.is_dir():
            raise InputError(f"{what} {target} is a directory; expected a file path")
        if target.exists() and not target.is_file():
            raise InputError(f"{what} {target} exists and is not a regular file")
        for other, role in guarded:
            if _same(target, other):
                raise InputError(f"{what} {target} is the {role} {other}: writing it would destroy it; choose "
                                 "another path")
    ancestor = (p if kind == "dir" else p.parent).absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{what} {p}: {ancestor} is not a directory")
    probe = ancestor / f".hessdistill-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:  # os.access says yes to root on read-only mounts and /proc: try it
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{what} {p}: folder {ancestor} is not writable ({exc.strerror})") from exc
    return p


def temp_name(path: str | os.PathLike) -> Path:
    """A temporary name beside ``path`` that no other process uses, keeping the suffix (formats go by it)."""
    p = Path(path)
    return p.parent / f".{p.stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{p.suffix}"


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; when the block ends normally it is renamed over ``path`` (atomic
    on one file system), on error it is removed: readers never see a partial file and no temporary file stays."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(p)
    try:
        yield tmp
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
