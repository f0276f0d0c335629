"""``soak bench``: prepare models, run the sections, write the page and the raw JSON."""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from soak.bench.context import BenchContext, BenchError
from soak.bench.figures import Section
from soak.bench.page import render_page
from soak.models import prepare_models
from soak.processes import stop_signals_raise_keyboard_interrupt
from soak.settings import DEFAULT_AUDIO, REPO_ROOT

logger = logging.getLogger(__name__)

# Section group -> module with ``run(context) -> list[Section]``, in the order they run.
SECTION_MODULES = {
    "throughput": "soak.bench.throughput",
    "memory": "soak.bench.memory",
    "allocator": "soak.bench.allocator",
    "overhead": "soak.bench.overhead",
}
DEFAULT_PAGE = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_WORK_DIR = REPO_ROOT / "reports" / "runs" / "bench"
MODEL_COPIES = 4
PREPARE_TIMEOUT_S = 900.0
PACKAGES = ("torch", "funasr", "fastapi", "uvicorn", "httpx", "locust", "psutil", "numpy", "asr-leak-toolkit")


def run_bench(
    *,
    groups: list[str],
    rounds: int,
    model: str,
    models_dir: Path | None,
    page_path: Path,
    json_path: Path,
    work_dir: Path,
    command_line: str,
) -> int:
    """Run the section groups, write the page and the JSON; return 0, or 1 when a group failed.

    SIGTERM ends the run as Ctrl+C does: every server a section started is stopped on the way out.
    """
    with stop_signals_raise_keyboard_interrupt():
        return _run_bench(groups, rounds, model, models_dir, page_path, json_path, work_dir, command_line)


def _run_bench(
    groups: list[str], rounds: int, model: str, models_dir: Path | None, page_path: Path, json_path: Path, work_dir: Path,
    command_line: str,
) -> int:
    if rounds < 1:
        raise BenchError(f"--rounds must be at least 1, got {rounds}; the page's medians need 5 or more")
    unknown = [group for group in groups if group not in SECTION_MODULES]
    if unknown or not groups:
        raise BenchError(f"unknown section group(s) {', '.join(map(repr, unknown)) or 'none'}; use a comma list of {', '.join(SECTION_MODULES)}")
    check_outputs(page_path, json_path, work_dir)
    media_dir = work_dir / "media"
    try:
        media_dir.mkdir(exist_ok=True)
        shutil.copyfile(DEFAULT_AUDIO, media_dir / DEFAULT_AUDIO.name)
    except OSError as error:
        raise BenchError(f"cannot write into --work-dir {str(work_dir)!r} ({error}); choose a writable folder") from None

    started = time.monotonic()
    prepared = prepare_models(
        [sys.executable, "-m", "gateway"], model, MODEL_COPIES, models_dir, PREPARE_TIMEOUT_S, work_dir / "models-prepare.log",
    )
    context = BenchContext(
        models_dir=prepared.models_dir, model=model, audio_path=DEFAULT_AUDIO, media_dir=media_dir, work_dir=work_dir, rounds=rounds,
    )

    sections: list[Section] = []
    failed = False
    for group in groups:
        group_started = time.monotonic()
        logger.info("Running the %s benchmarks (%d rounds).", group, rounds)
        try:
            module = importlib.import_module(SECTION_MODULES[group])
            produced = module.run(context)
        except BenchError as error:
            logger.error("The %s benchmarks failed: %s", group, error)
            produced = [Section(key=group, title=f"{group} (failed)", method="", error=str(error))]
            failed = True
        except Exception as error:  # a bug in one group must not cost the other groups' figures
            logger.exception("The %s benchmarks failed with an unexpected error", group)
            produced = [Section(key=group, title=f"{group} (failed)", method="", error=f"unexpected error: {type(error).__name__}: {error}")]
            failed = True
        elapsed_s = time.monotonic() - group_started
        for section in produced:
            # Sections that time themselves keep their figure; the others share the group's time.
            if not section.duration_s:
                section.duration_s = elapsed_s / len(produced)
        sections.extend(produced)
        logger.info("The %s benchmarks took %.0f s.", group, elapsed_s)

    document = {
        "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line,
        "rounds": rounds,
        "model": model,
        "duration_s": round(time.monotonic() - started, 1),
        "machine": machine_facts(),
        "versions": package_versions(),
        "git_revision": git_revision(),
        "sections": [section.to_json() for section in sections],
    }
    try:
        json_path.write_text(json.dumps(_finite(document), indent=1) + "\n", encoding="utf-8")
        page = render_page(
            _finite(document), json_name=_relative(json_path, page_path.parent),
            fixes_link=_relative(REPO_ROOT / "docs" / "benchmark-fixes.md", page_path.parent),
        )
        page_path.write_text(page, encoding="utf-8")
    except OSError as error:
        raise BenchError(f"cannot write the results ({error}); the server logs are under {work_dir}") from None
    logger.info("Wrote %s and %s in %.0f s.", page_path, json_path, document["duration_s"])
    return 1 if failed else 0


def check_outputs(page_path: Path, json_path: Path, work_dir: Path) -> None:
    """Create the output folders and check that the page and the JSON can be written, before any server starts."""
    for path, flag, example in ((page_path, "--out", "benchmarks.md"), (json_path, "--json", "benchmarks.json")):
        try:
            is_folder = path.is_dir()
        except OSError as error:
            raise BenchError(f"cannot write {flag} {str(path)[:200]!r} ({error.strerror}); choose a writable path") from None
        if is_folder:
            raise BenchError(f"{flag} {str(path)!r} is a folder; give a file path such as {str(path / example)!r}")
    if page_path.resolve() == json_path.resolve():
        raise BenchError(f"--out and --json are both {str(page_path)!r}; give the JSON its own file")
    check_writable(page_path, "--out")
    check_writable(json_path, "--json")
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"cannot create --work-dir {str(work_dir)[:200]!r} ({error.strerror}); choose a writable folder") from None


def check_writable(path: Path, flag: str) -> None:
    """Create ``path``'s folder and check that the file can be written, leaving no file behind that was not there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with path.open("a", encoding="utf-8"):
            pass
        if not existed:
            path.unlink()
    except OSError as error:
        raise BenchError(f"cannot write {flag} {str(path)[:200]!r} ({error.strerror}); choose a writable path") from None


def machine_facts() -> dict[str, Any]:
    """Return the CPU, core count, memory, OS and C library of this host."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libc, libc_version = platform.libc_ver()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "os": platform.platform(),
        "python": platform.python_version(),
        "libc": f"{libc} {libc_version}".strip(),
        "load_average_at_start": [round(value, 2) for value in os.getloadavg()],
    }


def package_versions() -> dict[str, str]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_revision() -> str:
    try:
        completed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) with None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _relative(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)
