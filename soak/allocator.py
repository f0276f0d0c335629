"""The memory allocator of a gateway the runner starts: glibc malloc (optionally with fewer arenas) or jemalloc.

Freed memory trapped in glibc's per-thread arenas makes RSS grow while the
Python heap stays flat. Running the same profile under plain glibc, under
``MALLOC_ARENA_MAX`` and under jemalloc separates such allocator growth from
a leak. jemalloc is loaded with ``LD_PRELOAD`` from Debian's ``libjemalloc2``
package; the manifest records what the gateway ran with.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from soak.errors import SoakError

JEMALLOC_LIBRARY = "libjemalloc.so.2"
# Install locations of libjemalloc.so.2 in Debian's and Ubuntu's libjemalloc2 and in a few other distributions.
JEMALLOC_PATTERNS = (
    "/usr/lib/*-linux-gnu/" + JEMALLOC_LIBRARY,
    "/usr/lib/" + JEMALLOC_LIBRARY,
    "/usr/lib64/" + JEMALLOC_LIBRARY,
    "/usr/local/lib/" + JEMALLOC_LIBRARY,
)


class AllocatorError(SoakError):
    """The requested allocator is not available on this host."""


def find_jemalloc(patterns: tuple[str, ...] = JEMALLOC_PATTERNS) -> Path | None:
    """Return the path of libjemalloc.so.2, or ``None`` when it is not installed."""
    for pattern in patterns:
        matches = sorted(glob.glob(pattern))
        if matches:
            return Path(matches[0])
    return None


def allocator_env(
    allocator: str,
    malloc_arena_max: int | None,
    base_env: dict[str, str],
    *,
    jemalloc_patterns: tuple[str, ...] = JEMALLOC_PATTERNS,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Return the gateway's environment for the allocator, and the manifest's record of it.

    ``jemalloc_patterns`` are the glob patterns searched for the library.
    """
    env = dict(base_env)
    if malloc_arena_max is not None:
        env["MALLOC_ARENA_MAX"] = str(malloc_arena_max)

    if allocator == "jemalloc":
        library = find_jemalloc(jemalloc_patterns)
        if library is None:
            raise AllocatorError(
                f"--allocator jemalloc needs {JEMALLOC_LIBRARY}, which was not found under "
                f"{', '.join(jemalloc_patterns)}; install it (Debian and Ubuntu: apt-get install -y libjemalloc2) "
                "or run with --allocator glibc"
            )
        preload = [entry for entry in env.get("LD_PRELOAD", "").split(os.pathsep) if entry]
        env["LD_PRELOAD"] = os.pathsep.join([str(library), *preload])

    record = {
        "allocator": allocator,
        "MALLOC_ARENA_MAX": env.get("MALLOC_ARENA_MAX"),
        "LD_PRELOAD": env.get("LD_PRELOAD"),
    }
    return env, record
