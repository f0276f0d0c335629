"""Memory guard: refuse new model loads above a memory limit and evict idle models.

The limit is ``--memory-limit-bytes`` when set, else the cgroup memory limit
of the gateway's container when one is set (cgroup v2 ``memory.max`` or v1
``memory.limit_in_bytes``), else none. The guard compares the process tree's
RSS with it before every model load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from gateway.errors import OverloadedError

logger = logging.getLogger(__name__)

CGROUP_V2_LIMIT = Path("/sys/fs/cgroup/memory.max")
CGROUP_V1_LIMIT = Path("/sys/fs/cgroup/memory/memory.limit_in_bytes")
# cgroup v1 reports "no limit" as a page-rounded huge number.
CGROUP_V1_UNLIMITED_BYTES = 1 << 60


class MemoryLimitError(OverloadedError):
    """A model load refused above the memory limit: 503 with ``Retry-After``."""

    def __init__(self, message: str):
        super().__init__(message, retry_after_s=30, code="memory_limit")


def cgroup_memory_limit_bytes(v2_path: Path = CGROUP_V2_LIMIT, v1_path: Path = CGROUP_V1_LIMIT) -> int | None:
    """Return the cgroup memory limit in bytes, or None when no limit is set or readable."""
    for path in (v2_path, v1_path):
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text == "max":
            return None
        try:
            value = int(text)
        except ValueError:
            logger.warning("Ignoring unreadable cgroup memory limit %r in %s", text, path)
            return None
        return None if value >= CGROUP_V1_UNLIMITED_BYTES else value
    return None


class MemoryGuard:
    def __init__(self, limit_bytes: int | None, read_rss_bytes: Callable[[], int], source: str = "setting"):
        self.limit_bytes = limit_bytes
        self.source = source if limit_bytes is not None else "none"
        self._read_rss_bytes = read_rss_bytes
        self.refused_loads_total = 0

    @classmethod
    def from_setting(cls, limit_bytes: int | None, read_rss_bytes: Callable[[], int]) -> "MemoryGuard":
        if limit_bytes is not None:
            return cls(limit_bytes, read_rss_bytes, "setting")
        cgroup = cgroup_memory_limit_bytes()
        return cls(cgroup, read_rss_bytes, "cgroup") if cgroup is not None else cls(None, read_rss_bytes)

    def over_limit(self) -> tuple[bool, int]:
        if self.limit_bytes is None:
            return False, 0
        rss = self._read_rss_bytes()
        return rss > self.limit_bytes, rss

    def reason(self) -> str | None:
        over, rss = self.over_limit()
        if not over:
            return None
        return f"RSS {rss / 2**20:.0f} MiB is above the memory limit of {self.limit_bytes / 2**20:.0f} MiB ({self.source})"

    def check_before_load(self, model_name: str, evict_idle: Callable[[], int]) -> None:
        """Evict idle models when over the limit; raise MemoryLimitError if still over."""
        over, rss = self.over_limit()
        if not over:
            return
        evicted = evict_idle()
        over, after = self.over_limit()
        logger.warning(
            "Memory guard: RSS %d bytes above limit %d before loading %s; evicted %d idle models, RSS now %d",
            rss, self.limit_bytes, model_name, evicted, after,
        )
        if over:
            self.refused_loads_total += 1
            raise MemoryLimitError(
                f"loading model {model_name!r} rejected: RSS {after / 2**20:.0f} MiB is above the memory limit of "
                f"{self.limit_bytes / 2**20:.0f} MiB ({self.source}); retry later, use a cached model, "
                "or raise --memory-limit-bytes"
            )
