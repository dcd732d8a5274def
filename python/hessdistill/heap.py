"""Opt-in, process-wide: stop glibc from handing a student's per-step tensors back to the kernel between steps.

Nothing in the package calls :func:`keep_freed_memory` on import or when it builds a calculator, an OpenMM force
or a Trainer: it changes the whole process, so the program that owns the process decides. The ``hessdistill``
command calls it at start (``--no-heap-tuning`` leaves the heap alone); a script that runs MD or training in
Python calls it once, before the work:

>>> from hessdistill.heap import keep_freed_memory
>>> keep_freed_memory()
True

What it changes and why: glibc serves a large block from ``mmap`` or from the heap depending on a threshold that
moves with the process's history, and trims the top of the heap whenever a few MB are free. A student allocates
and frees many ~1 MB edge tensors per step, so depending on that history each step either reuses pages or faults
in and zeroes thousands of fresh ones: the same 54-atom MD step took 4 ms in one process and up to 8 ms in another
(benchmarks/openmm_bench.py), and a Hessian-row training step on 8 Si8 cells 60 ms instead of 42 ms, with ~10k
page faults per step. Fixing the mmap threshold at glibc's own upper limit (32 MB) and trimming only when over
1 GB is free makes every step reuse the pages of the last. Blocks over 32 MB still come from mmap and go back on
free (putting them on the heap too fragmented it into an out-of-memory at 32k atoms), so what the process keeps
is the peak of its smaller blocks: the cost is memory that other programs cannot use until the process ends.
The same can be had without Python by setting ``MALLOC_MMAP_THRESHOLD_=33554432`` and
``MALLOC_TRIM_THRESHOLD_=1073741824`` in the environment. The LAMMPS pair style has its own opt-in for large
systems, ``pair_style hessdistill memory cache`` (engines/lammps/plugin/block_cache.h).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("hessdistill.heap")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own sliding rule stops
TRIM_THRESHOLD = 1024 * 1024 * 1024  # a training step's working set passes the 64 MB glibc would pair with it

_done = False


def keep_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 32 MB and its trim threshold at 1 GB for this whole process (once; the
    settings stay until the process ends).

    Returns True when in effect; a no-op returning False where the C library has no ``mallopt`` (macOS, musl).
    """
    global _done
    if not _done:
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            log.debug("no mallopt in this C library; heap left as it is")
            return False
        _done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _done
