"""Retention paths: the long-lived containers of GET /v1/debug/memory and what they keep reachable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024

# GET /v1/debug/memory, saved by the runner at the end of the load phase.
DIAGNOSIS = "diagnosis.json"


@dataclass(frozen=True)
class Holder:
    """A long-lived container from GET /v1/debug/memory and what it keeps reachable."""

    root: str
    # The module or class that owns the container, and its attribute name.
    owner: str
    attribute: str
    holds: dict[str, int]
    # Bytes of numpy arrays and of bytes objects of 1 KiB or more that it keeps reachable.
    bytes: int


def read_memory_report(folder: Path, manifest_diagnosis: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """Read diagnosis.json and return it, or None and the reason it is missing or unusable."""
    path = folder / DIAGNOSIS
    if not path.exists():
        if manifest_diagnosis and manifest_diagnosis.get("error"):
            return None, f"The gateway's memory report is missing: {manifest_diagnosis['error']}."
        return None, (
            "The run folder has no diagnosis.json, so no container can be named. The runner saves it from "
            "GET /v1/debug/memory at the end of the load phase."
        )
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        return None, f"{path.name} could not be read ({type(error).__name__}: {error})."
    if not isinstance(report, dict) or not isinstance(report.get("retention_paths"), list):
        return None, f"{path.name} has no retention_paths list, so it is not a report of GET /v1/debug/memory."
    return report, None


def parse_holders(report: dict[str, Any] | None) -> list[Holder]:
    """Turn the report's retention paths into holders, in the gateway's order (most bytes first)."""
    if not report:
        return []
    holders = []
    for row in report.get("retention_paths", []):
        root = str(row.get("root", ""))
        owner, _, attribute = root.rpartition(".")
        holds = {str(key): int(value) for key, value in (row.get("holds") or {}).items()}
        holders.append(Holder(root=root, owner=owner, attribute=attribute, holds=holds, bytes=int(row.get("bytes") or 0)))
    return holders


def holder_for_type(held_type: str, holders: list[Holder]) -> Holder | None:
    candidates = [holder for holder in holders if holder.holds.get(held_type, 0) > 0]
    if not candidates:
        return None
    return max(candidates, key=lambda holder: (holder.holds[held_type], holder.bytes))


def describe_holder(holder: Holder) -> str:
    """Name the container and what it holds: "_FUTURES in module gateway.leaky.workers (60 Future, ...)"."""
    return f"{holder.attribute} in {owner_kind(holder)} {holder.owner} ({describe_holdings(holder)})"


def owner_kind(holder: Holder) -> str:
    """Return "class" when the owner's last name is capitalised (a component's class), else "module"."""
    return "class" if holder.owner.rpartition(".")[2][:1].isupper() else "module"


def describe_holdings(holder: Holder) -> str:
    parts = [f"{count:,} {name}" for name, count in holder.holds.items() if not name.endswith("_bytes")]
    if holder.bytes:
        parts.append(f"{holder.bytes / MIB:,.1f} MiB of arrays and buffers")
    return ", ".join(parts) or "nothing counted"
