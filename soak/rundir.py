"""The run folder: one folder per run, holding everything needed to judge it again.

Layout::

    manifest.json     settings, versions, model hashes, host, target, times
    samples.jsonl     one sampler row per line
    requests.jsonl    one Locust request per line, written by the profile
    events.jsonl      the profile's phases and its own status readings
    locust/           Locust's CSV files, HTML report, log and usage figures
    snapshots/        tracemalloc snapshots, when the gateway traced allocations
    gateway.log       the gateway's stdout and stderr
    media/            the audio the profile sends, as the gateway's media root
    summary.json      verdict and criteria
    junit.xml         one test case per criterion
    report.html       self-contained report

Every JSON object written here carries ``schema_version``, and so does every
JSONL row.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from soak.errors import SoakError

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
REQUESTS = "requests.jsonl"
EVENTS = "events.jsonl"
SUMMARY = "summary.json"
JUNIT = "junit.xml"
REPORT = "report.html"
GATEWAY_LOG = "gateway.log"
LOCUST_DIR = "locust"
MEDIA_DIR = "media"


class RunFolderError(SoakError):
    """A run folder is missing, unreadable or written by an unknown schema version."""


class JsonlWriter:
    """Append JSON rows to a file, one per line, flushed after each row.

    Flushing each row keeps the file readable while the run is still going and
    loses at most one row when the writer's process is killed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        row = {"schema_version": SCHEMA_VERSION, **row}
        self._file.write(json.dumps(row, separators=(",", ":"), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class RunFolder:
    """Paths and readers and writers of one run folder (or one comparison folder)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, parent: Path, profile: str, leaks: str, now: datetime | None = None) -> RunFolder:
        """Create ``<parent>/<UTC timestamp>-<profile>-<leaks>/``, adding a suffix if it exists."""
        now = now or datetime.now(timezone.utc)
        stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base_name = f"{stamp}-{profile}-{folder_label(leaks)}"
        parent.mkdir(parents=True, exist_ok=True)

        for attempt in range(100):
            name = base_name if attempt == 0 else f"{base_name}-{attempt}"
            try:
                (parent / name).mkdir()
            except FileExistsError:
                continue
            return cls(parent / name)
        raise RunFolderError(f"could not create a run folder under {parent}: 100 names starting with {base_name} exist")

    @classmethod
    def at(cls, path: Path) -> RunFolder:
        """Create the given folder (for ``--out``); it must be empty or absent."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise RunFolderError(f"output folder {path} is not empty; pass an empty or new folder to --out")
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def locust_dir(self) -> Path:
        folder = self.path / LOCUST_DIR
        folder.mkdir(exist_ok=True)
        return folder

    @property
    def media_dir(self) -> Path:
        folder = self.path / MEDIA_DIR
        folder.mkdir(exist_ok=True)
        return folder

    def write_json(self, name: str, payload: dict[str, Any]) -> Path:
        """Write a JSON object atomically (temporary file, then rename), adding ``schema_version``."""
        payload = {"schema_version": SCHEMA_VERSION, **payload}
        target = self.path / name
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(temporary, target)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
        return target

    def read_json(self, name: str) -> dict[str, Any]:
        """Read a JSON object and check that its schema version is one this code reads."""
        path = self.path / name
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunFolderError(f"{path} not found; is {self.path} a run folder?") from None
        except json.JSONDecodeError as exc:
            raise RunFolderError(f"{path} is not valid JSON: {exc}") from None
        check_schema_version(payload, path)
        return payload

    def jsonl_writer(self, name: str) -> JsonlWriter:
        return JsonlWriter(self.path / name)

    def read_jsonl(self, name: str) -> list[dict[str, Any]]:
        """Read every row; a missing file reads as no rows."""
        path = self.path / name
        if not path.exists():
            return []
        return list(iter_jsonl(path))

    def has(self, name: str) -> bool:
        return (self.path / name).exists()


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSONL file.

    A last line cut short by a killed writer is skipped with a warning. A bad
    line anywhere else raises, because it means the file is not what it claims.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                logger.warning("Skipping the truncated last line %d of %s: %s", number, path, exc)
                return
            raise RunFolderError(f"{path}, line {number}: invalid JSON: {exc}") from None
        check_schema_version(row, path)
        yield row


def check_schema_version(payload: dict[str, Any], path: Path) -> None:
    version = payload.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RunFolderError(
            f"{path} has schema_version {version!r}; this version of soak reads schema_version {SCHEMA_VERSION}"
        )


def folder_label(leaks: str) -> str:
    """Turn a leak switch value into a folder name part: ``model-cache,worker-futures`` -> ``model-cache+worker-futures``."""
    label = "+".join(part.strip() for part in leaks.split(",") if part.strip())
    return re.sub(r"[^A-Za-z0-9+._-]", "_", label) or "none"


def utc_iso(timestamp_s: float) -> str:
    """Format a Unix timestamp as ISO 8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(timestamp_s, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
