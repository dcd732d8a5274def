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
systems, ``pair_style hessdistill memory cache`` (lammps_plugin/block_cache.h).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("hessdistill.heap")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own sliding rule stops
TRIM_THRESHOLD = 1024 * 1024 * 1024  # a training step's working set passes the 64 MB glibc would pair with it

_applied: set[str] = set()


def _mallopt():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        log.debug("no mallopt in this C library; heap left as it is")
        return None


def keep_freed_memory(large_blocks: bool = False) -> bool:
    """Fix glibc's mmap threshold at 32 MB and its trim threshold at 1 GB for this whole process (once; the
    settings stay until the process ends).

    ``large_blocks=True`` also stops glibc from using ``mmap`` at all (``M_MMAP_MAX = 0``), so blocks over 32 MB
    come from the heap and are reused too. That is what keeps a 47k-atom OpenMM step from faulting in ~300k
    fresh pages a step (half its time in the kernel; ``benchmarks/openmm_bench.py --mode scaling``). The price is memory: the
    heap keeps the largest step's blocks and can fragment (in LAMMPS at 32k atoms it grew to 2.7x a step's working
    set, which is why the LAMMPS pair style has its own cache, ``memory cache``). Use it for large systems with
    memory to spare. Environment equivalent: ``MALLOC_MMAP_MAX_=0``.

    Returns True when in effect; a no-op returning False where the C library has no ``mallopt`` (macOS, musl).
    """
    wanted = {"thresholds"} | ({"large_blocks"} if large_blocks else set())
    if wanted <= _applied:
        return True
    mallopt = _mallopt()
    if mallopt is None:
        return False
    if "thresholds" not in _applied:
        if mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
            _applied.add("thresholds")
    if large_blocks and "large_blocks" not in _applied and mallopt(_M_MMAP_MAX, 0) == 1:
        _applied.add("large_blocks")
    return wanted <= _applied
