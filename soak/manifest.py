"""The parts of ``manifest.json`` that describe where and with what a run was made."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from soak import __version__

# Distributions whose versions decide what a run measures. importlib.metadata
# reads them without importing the packages (torch and funasr must not be
# imported in the runner's process).
PACKAGES = (
    "asr-leak-toolkit",
    "funasr",
    "torch",
    "numpy",
    "fastapi",
    "uvicorn",
    "locust",
    "psutil",
    "scipy",
    "matplotlib",
)
GIT_TIMEOUT_S = 10.0
HASH_CHUNK_BYTES = 1024 * 1024


def build_manifest(settings: dict[str, Any], repo_root: Path) -> dict[str, Any]:
    """Start a run's manifest: profile, settings, versions, git revision and host."""
    return {
        "kind": "run",
        "profile": settings["profile"],
        "soak_version": __version__,
        "settings": settings,
        "seeds": {"profile": None, "models": "fixed per preset by gateway models prepare"},
        "git": git_state(repo_root),
        "packages": package_versions(),
        "host": host_facts(),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(repo_root: Path) -> dict[str, Any]:
    """Return the checked-out revision and whether the tree has uncommitted changes (None when unknown)."""
    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                ["git", *args], cwd=repo_root, capture_output=True, text=True, timeout=GIT_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return completed.stdout.strip() if completed.returncode == 0 else None

    revision = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def host_facts() -> dict[str, Any]:
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else None,
        "memory_total_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python_executable": sys.executable,
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_model_files(model_dir: Path) -> dict[str, str]:
    """Return the SHA-256 of every file in a model folder, by path relative to it."""
    if not model_dir.is_dir():
        return {}
    return {
        str(path.relative_to(model_dir)): sha256_file(path)
        for path in sorted(model_dir.rglob("*"))
        if path.is_file()
    }
