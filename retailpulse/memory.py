"""Handing freed memory back to the operating system between the heavy steps of one process.

A task that builds pandas/Arrow frames and then runs dbt (DuckDB, which takes up to its own
memory limit) in the same process must not keep the frames' memory while DuckDB works: the
kernel counts both.  Dropping the references is not always enough -- glibc keeps freed heap
pages in its arenas and Arrow's allocator keeps freed blocks for reuse -- so
:func:`release_memory` also asks both to return what they hold unused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys

log = logging.getLogger(__name__)


def _malloc_trim() -> bool:
    """glibc's malloc_trim(0): return free heap pages to the OS (False where there is no glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))


def release_memory() -> dict[str, bool]:
    """Collect garbage (frames held in reference cycles), release Arrow's unused pool memory and
    trim the C heap. Call it after dropping the last reference to big frames."""
    gc.collect()
    arrow = False
    pa = sys.modules.get("pyarrow")  # only when Arrow is in use already: never import it for this
    if pa is not None:
        try:
            pa.default_memory_pool().release_unused()
            arrow = True
        except AttributeError:  # pragma: no cover - pyarrow < 10
            pass
    trimmed = _malloc_trim()
    log.debug("released memory (arrow pool: %s, malloc_trim: %s)", arrow, trimmed)
    return {"arrow_pool": arrow, "malloc_trim": trimmed}


__all__ = ["release_memory"]
