"""Stop glibc from handing a small student's per-step tensors back to the kernel between MD steps.

glibc serves a large block from ``mmap`` or from the heap depending on a threshold that moves with the process's
history, and trims the top of the heap whenever a few MB are free. A student on ~50 atoms allocates and frees
~1 MB edge tensors many times per step, so depending on that history each step either reuses pages or faults
in and zeroes hundreds of fresh ones: the same step took 4 ms in one process and up to 8 ms in another
(benchmarks/openmm_bench.py). Fixing the mmap threshold at glibc's own upper limit (32 MB) and the trim
threshold at twice that makes every process take the fast path. Blocks over 32 MB still come from mmap and go
back on free, so the heap keeps at most the small blocks of one step plus 64 MB. (The LAMMPS pair style has its
own block cache for its large systems: lammps_plugin/block_cache.h.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("hessdistill.heap")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers from glibc's malloc.h
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where its own sliding rule stops
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # the ratio glibc's sliding rule keeps

_done = False


def keep_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds for this process (once; process-wide). True when in effect; a no-op
    returning False where the C library has no ``mallopt`` (macOS, musl)."""
    global _done
    if not _done:
        try:
            mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
        except (OSError, AttributeError):
            log.debug("no mallopt in this C library; heap left as it is")
            return False
        _done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _done
