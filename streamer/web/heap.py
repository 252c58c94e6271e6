"""glibc's allocator, tuned for a long-running service that decodes large photos on many threads.

Measured with ``bench/web.py`` (12 MP JPEG uploads to `serve`): resident memory grew from 107 MB
to 553 MB over 12 sequential uploads and 632 MB over 50, although each photo's buffers are freed.
Each request thread allocates from its own malloc arena (up to 8 per core), and buffers below
glibc's mmap threshold, which rises to 32 MB as large blocks are freed, stay in those arenas after
use. Two arenas and a fixed 1 MB mmap threshold (large buffers come from and go back to the
kernel) kept it at ~300 MB over the same uploads; ``trim()`` after each photo gives back what is
left free at the arenas' tops. Elsewhere than glibc (musl, macOS) these do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h).
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_ARENAS = 2  # the request threads contend a little on two arenas; photos are serialised anyway
_MMAP_THRESHOLD_BYTES = 1 << 20  # a 640x480 BGR frame (0.9 MB) and larger are mapped and unmapped whole

_libc: Optional[ctypes.CDLL] = None
_looked = False


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc, _looked
    if not _looked:
        _looked = True
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
                _libc = libc
        except OSError:
            _libc = None
    return _libc


def limit_arenas() -> bool:
    """Two malloc arenas and a fixed mmap threshold for this process (call before the request
    threads start); False where the allocator is not glibc's."""
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_ARENA_MAX, _ARENAS)) and bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt refused the arena or mmap settings")
    return ok


def trim() -> None:
    """Give the memory freed at the top of the malloc arenas back to the kernel (a few ms)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
