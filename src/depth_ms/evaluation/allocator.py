"""Keep freed memory in the process (glibc): the labeller allocates the same large arrays every frame.

With glibc's defaults, arrays above the dynamic mmap threshold are mapped and unmapped per frame and
the heap top is trimmed back to the system, so every frame page-faults its temporaries in again.
Measured here (bench/bench_labeller.py, 640x480): scoring 30-50 fps with the defaults, 100-120 fps
with this. Memory stays bounded by the per-frame peak (flat in the number of frames).
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(trim_threshold: int = 512 << 20, mmap_threshold: int = 64 << 20) -> bool:
    """Raise glibc's trim and mmap thresholds for this process; False where that is not available."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)) and \
            bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    except (OSError, AttributeError):
        return False
