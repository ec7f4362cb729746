"""Keep the streaming buffers of big transfers and verifications off fresh pages.

Archives move in 1 MiB pieces (file reads, inflated output, SSH reads). glibc serves an allocation
that big with a fresh mmap and unmaps it on free, so every piece costs 256 page faults: measured
here, inflating a 1 GiB archive took 0.75 CPU-s with 188,000 faults and 0.26 CPU-s with none. Raising
the mmap threshold (and the trim threshold with it) makes glibc reuse heap memory for them; the
heap stays as small as the few pieces alive at once, so peak RSS does not grow.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # allocations below this come from the heap
TRIM_THRESHOLD = 64 << 20  # free heap memory above this goes back to the system

_done = False


def reuse_big_buffers() -> bool:
    """Make glibc serve allocations below MMAP_THRESHOLD from the heap. Return True if it was set
    (now or by an earlier call), False where the C library is not glibc (nothing changes)."""
    global _done
    if _done:
        return True
    try:
        # the process's own symbols (dlopen(NULL)): the C library Python runs on is among them.
        # ctypes.util.find_library("c") forked `ldconfig -p` at every start (5-20 ms per command).
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    _done = _done and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
