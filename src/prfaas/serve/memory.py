"""Give freed request memory back to the OS (glibc only; a no-op elsewhere).

    tune_allocator()     # at node start, before the model loads: a fixed mmap threshold
    trim()               # when the node is idle again: malloc_trim(0)

Request buffers (KV receive buffers, prompt states, decode batches) are large and short-lived, allocated on the
model thread and the transport threads. glibc raises its mmap threshold after each large free (up to 32 MiB), so
later buffers come from the heap arenas, whose freed pages stay in the process: a decode node's RSS grew by ~100 MiB
per burst of 64 cancelled requests (benchmarks/bench_cancel.py). A fixed 64 KiB threshold keeps large buffers in
their own mappings (returned on free), and a trim when the node drains returns the rest of the arenas' free pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

MMAP_THRESHOLD_BYTES = 64 * 1024
_M_MMAP_THRESHOLD = -3  # mallopt parameters (malloc.h)
_log = logging.getLogger(__name__)


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 (glibc, not musl)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def tune_allocator(mmap_threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (disables its dynamic raise); False where not glibc."""
    if _LIBC is None:
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_threshold_bytes)))


def trim() -> bool:
    """Return the heap's free pages to the OS; True if some were returned."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(ctypes.c_size_t(0)))
