"""hessdistill.heap: after keep_freed_memory(), a large block no longer comes from mmap (glibc's mallinfo2)."""

import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from hessdistill.heap import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    before = libc.mallinfo2().hblkhd
    block = np.ones(100 * 2**20 // 8)  # 100 MB, above glibc's largest mmap threshold (32 MB)
    print(libc.mallinfo2().hblkhd - before)
""")


def _mmapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True)
    if out.returncode != 0 and "mallinfo2" in out.stderr:
        pytest.skip("not glibc >= 2.33")
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


def test_large_blocks_stay_on_the_heap():
    assert _mmapped_bytes("default") >= 100 * 2**20  # glibc's default: the block is mmapped (the slow path)
    assert _mmapped_bytes("keep") == 0
