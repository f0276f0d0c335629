"""Returning freed heap pages to the OS under glibc and under a preloaded jemalloc."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from soak.allocator import find_jemalloc

# Allocate 256 MiB in 64 KiB blocks, free them, and read RSS before and after the release call named in argv[1].
FREE_PROBE = """
import json, sys, psutil
from gateway import native
process = psutil.Process()
blocks = [bytearray(64 * 1024) for _ in range(4096)]
del blocks
freed_rss = process.memory_info().rss
getattr(native, sys.argv[1])()
print(json.dumps({"freed_rss": freed_rss, "returned_rss": process.memory_info().rss, "jemalloc": native.jemalloc_purge()}))
"""
MIB = 1024 * 1024


def run_probe(release: str, env: dict[str, str]) -> dict:
    completed = subprocess.run([sys.executable, "-c", FREE_PROBE, release], capture_output=True, text=True, timeout=120, env=env)
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_return_freed_memory_purges_jemalloc() -> None:
    """GIVEN jemalloc preloaded WHEN freed blocks are returned THEN RSS drops, which malloc_trim alone cannot do."""
    library = find_jemalloc()
    if library is None:
        pytest.skip("libjemalloc.so.2 is not installed (Debian and Ubuntu: apt-get install -y libjemalloc2)")

    env = {**os.environ, "LD_PRELOAD": str(library)}
    trimmed = run_probe("malloc_trim", env)
    returned = run_probe("return_freed_memory", env)

    assert returned["jemalloc"] is True
    assert trimmed["freed_rss"] - trimmed["returned_rss"] < 16 * MIB, trimmed
    assert returned["freed_rss"] - returned["returned_rss"] > 48 * MIB, returned


def test_return_freed_memory_under_glibc() -> None:
    """GIVEN glibc's malloc WHEN freed blocks are returned THEN no jemalloc is found and RSS does not grow."""
    env = {name: value for name, value in os.environ.items() if name != "LD_PRELOAD"}

    figures = run_probe("return_freed_memory", env)

    assert figures["jemalloc"] is False
    assert figures["returned_rss"] <= figures["freed_rss"]
