"""Native-memory controls: glibc's malloc_trim, jemalloc's purge and oneDNN's primitive cache.

All are process-wide. ``malloc_trim`` exists only on glibc; on other C
libraries :func:`malloc_trim` does nothing and returns False. jemalloc,
when preloaded (``LD_PRELOAD=libjemalloc.so.2``), serves every ``malloc``
instead of glibc, so ``malloc_trim`` cannot reach its pages; without a
background thread it returns them only as later allocations advance its
decay clock, so an idle process keeps them. :func:`return_freed_memory`
does both.
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


# jemalloc's MALLCTL_ARENAS_ALL: "arena.4096.purge" purges every arena (jemalloc 5).
JEMALLOC_ALL_ARENAS = 4096

_mallctl = None
_mallctl_checked = False


def _load_mallctl():
    global _mallctl, _mallctl_checked
    if _mallctl_checked:
        return _mallctl
    _mallctl_checked = True
    try:
        # A preloaded jemalloc puts mallctl in the global symbol namespace; glibc has none.
        mallctl = ctypes.CDLL(None).mallctl
    except (OSError, AttributeError):
        return None
    mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    mallctl.restype = ctypes.c_int
    logger.info("jemalloc is the process's allocator; freed models are purged from its arenas")
    _mallctl = mallctl
    return _mallctl


def jemalloc_purge() -> bool:
    """Purge the unused dirty pages of every jemalloc arena; return False when jemalloc is not loaded or refused."""
    mallctl = _load_mallctl()
    if mallctl is None:
        return False
    return mallctl(f"arena.{JEMALLOC_ALL_ARENAS}.purge".encode(), None, None, None, 0) == 0


def return_freed_memory() -> None:
    """Return freed heap pages to the OS, from jemalloc's arenas when it is preloaded, else from glibc's."""
    if not jemalloc_purge():
        malloc_trim()


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
