"""The gateway's allocator environment: glibc with fewer arenas, or jemalloc by LD_PRELOAD."""

from __future__ import annotations

import pytest

from soak.allocator import AllocatorError, allocator_env, find_jemalloc


def test_glibc_leaves_environment_alone():
    env, record = allocator_env("glibc", None, {"PATH": "/usr/bin"})

    assert env == {"PATH": "/usr/bin"}
    assert record == {"allocator": "glibc", "MALLOC_ARENA_MAX": None, "LD_PRELOAD": None}


def test_arena_max_reaches_environment():
    env, record = allocator_env("glibc", 2, {})

    assert env["MALLOC_ARENA_MAX"] == "2"
    assert record["MALLOC_ARENA_MAX"] == "2"


def test_jemalloc_preloaded_before_existing_preload(tmp_path):
    library = tmp_path / "libjemalloc.so.2"
    library.touch()

    env, record = allocator_env("jemalloc", None, {"LD_PRELOAD": "/opt/other.so"}, jemalloc_patterns=(str(library),))

    assert env["LD_PRELOAD"] == f"{library}:/opt/other.so"
    assert record["allocator"] == "jemalloc"
    assert record["LD_PRELOAD"] == env["LD_PRELOAD"]


def test_missing_jemalloc_says_how_to_install(tmp_path):
    with pytest.raises(AllocatorError, match="apt-get install -y libjemalloc2"):
        allocator_env("jemalloc", None, {}, jemalloc_patterns=(str(tmp_path / "*" / "libjemalloc.so.2"),))


def test_installed_jemalloc_is_found():
    library = find_jemalloc()
    if library is None:
        pytest.skip("libjemalloc2 is not installed on this host")

    assert library.name == "libjemalloc.so.2"
    assert library.exists()
