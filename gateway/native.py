"""Native-memory controls: glibc's malloc_trim and oneDNN's primitive cache.

Both are process-wide. ``malloc_trim`` exists only on glibc; on other C
libraries :func:`malloc_trim` does nothing and returns False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"

_libc: ctypes.CDLL | None = None
_libc_checked = False


def _load_glibc() -> ctypes.CDLL | None:
    global _libc, _libc_checked
    if _libc_checked:
        return _libc
    _libc_checked = True
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError):
        logger.info("malloc_trim is not available (C library %s is not glibc)", name)
        return None
    _libc = libc
    return _libc


def malloc_trim() -> bool:
    """Return freed heap memory to the OS via glibc ``malloc_trim(0)``.

    Returns True when glibc released memory, False when nothing was released
    or the C library has no ``malloc_trim``.
    """
    libc = _load_glibc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def bound_onednn_primitive_cache(capacity: int) -> None:
    """Set oneDNN's primitive-cache capacity before torch creates primitives.

    Varying input shapes (a different audio length on every call) add cache
    entries on CPU; the capacity bounds that growth. oneDNN reads the variable
    when it first creates a primitive, so this must run before inference. A
    value the operator already exported wins.
    """
    if ONEDNN_CACHE_ENV in os.environ:
        logger.info("%s already set to %s; leaving it", ONEDNN_CACHE_ENV, os.environ[ONEDNN_CACHE_ENV])
        return
    os.environ[ONEDNN_CACHE_ENV] = str(capacity)
