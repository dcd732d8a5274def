"""Keep freed heap memory in the process (glibc), so large per-step tensors reuse pages instead of faulting.

glibc hands blocks over 32 MB straight from ``mmap`` and returns them on ``free``; the kernel then faults in and
zeroes every page again on the next step. A student's edge tensors pass that size from a few thousand atoms, and
the page faults made its cost per atom 3-5x higher at 17k atoms than at 1k (benchmarks/lammps_bench.py).
Turning mmap and trimming off makes each step reuse the heap of the last; the process keeps its peak footprint.
The LAMMPS pair style does the same (``pair_style hessdistill memory keep``, the default).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("hessdistill.heap")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters from glibc's malloc.h
_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory (process-wide, one-way); True when it took effect. No-op elsewhere."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        log.debug("no mallopt in this C library; heap left as it is")
        return False
    _done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    return _done
