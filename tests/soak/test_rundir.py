from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import pytest

from soak.rundir import SCHEMA_VERSION, RunFolder, RunFolderError, folder_label, utc_iso

NOW = datetime(2027, 1, 15, 8, 30, 5, tzinfo=timezone.utc)


def test_json_round_trip_adds_schema_version(tmp_path):
    folder = RunFolder(tmp_path)

    folder.write_json("manifest.json", {"profile": "memory", "settings": {"requests": 30}})

    assert folder.read_json("manifest.json") == {
        "schema_version": SCHEMA_VERSION,
        "profile": "memory",
        "settings": {"requests": 30},
    }
    assert not list(tmp_path.glob("*.tmp"))


def test_jsonl_round_trip(tmp_path):
    folder = RunFolder(tmp_path)
    rows = [{"index": index, "rss_bytes": 1000 + index} for index in range(3)]

    with folder.jsonl_writer("samples.jsonl") as writer:
        for row in rows:
            writer.write(row)

    assert folder.read_jsonl("samples.jsonl") == [{"schema_version": SCHEMA_VERSION, **row} for row in rows]


def test_jsonl_rows_readable_before_close(tmp_path):
    folder = RunFolder(tmp_path)
    writer = folder.jsonl_writer("requests.jsonl")

    writer.write({"index": 0})

    assert folder.read_jsonl("requests.jsonl") == [{"schema_version": SCHEMA_VERSION, "index": 0}]
    writer.close()


def test_missing_jsonl_reads_as_empty(tmp_path):
    assert RunFolder(tmp_path).read_jsonl("requests.jsonl") == []


def test_truncated_last_line_skipped(tmp_path, caplog):
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "index": 0}) + '\n{"schema_version": 1, "ind', encoding="utf-8")

    with caplog.at_level(logging.WARNING, logger="soak.rundir"):
        rows = RunFolder(tmp_path).read_jsonl("samples.jsonl")

    assert rows == [{"schema_version": SCHEMA_VERSION, "index": 0}]
    assert "truncated last line 2" in caplog.text


def test_invalid_middle_line_raises(tmp_path):
    path = tmp_path / "samples.jsonl"
    good = json.dumps({"schema_version": SCHEMA_VERSION})
    path.write_text(f"{good}\nnot json\n{good}\n", encoding="utf-8")

    with pytest.raises(RunFolderError, match="line 2: invalid JSON"):
        RunFolder(tmp_path).read_jsonl("samples.jsonl")


def test_unknown_schema_version_raises(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"schema_version": 99}), encoding="utf-8")

    with pytest.raises(RunFolderError, match="schema_version 99"):
        RunFolder(tmp_path).read_json("summary.json")


def test_missing_manifest_names_folder(tmp_path):
    with pytest.raises(RunFolderError, match="is .* a run folder"):
        RunFolder(tmp_path).read_json("manifest.json")


def test_create_names_folder_by_time_profile_leaks(tmp_path):
    first = RunFolder.create(tmp_path, "memory", "model-cache,worker-futures", now=NOW)
    second = RunFolder.create(tmp_path, "memory", "model-cache,worker-futures", now=NOW)

    assert first.path.name == "20270115T083005Z-memory-model-cache+worker-futures"
    assert second.path.name == "20270115T083005Z-memory-model-cache+worker-futures-1"
    assert first.path.is_dir()
    assert second.path.is_dir()


def test_at_rejects_non_empty_folder(tmp_path):
    (tmp_path / "old.txt").write_text("x", encoding="utf-8")

    with pytest.raises(RunFolderError, match="not empty"):
        RunFolder.at(tmp_path)


def test_at_creates_missing_folder(tmp_path):
    folder = RunFolder.at(tmp_path / "a" / "b")

    assert folder.path.is_dir()


@pytest.mark.parametrize(
    ("leaks", "label"),
    [("none", "none"), ("all", "all"), ("model-cache, session-buffers", "model-cache+session-buffers"), ("", "none")],
)
def test_folder_label(leaks, label):
    assert folder_label(leaks) == label


def test_utc_iso_has_milliseconds_and_z():
    assert utc_iso(NOW.timestamp() + 0.25) == "2027-01-15T08:30:05.250Z"
