"""Tests of the criteria file: defaults, overrides, size parsing and invalid input."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from soak.criteria import (
    DEFAULT_CRITERIA_PATH,
    KNOWN_PROFILES,
    MAX_CRITERIA_FILE_BYTES,
    MAX_SIZE_BYTES,
    Criteria,
    CriteriaError,
    load_criteria,
    parse_size,
)
from soak.errors import SoakError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

MIB = 1024 * 1024


def write_criteria(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "criteria.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and overrides -------------------------------------------------------


def test_defaults_load():
    criteria = load_criteria(None, "soak")

    assert criteria.profile == "soak"
    assert criteria.source_path is None
    assert criteria.rss_after_profile_extra_models == 0.5
    assert criteria.growth_per_request_fraction_of_model == 0.01
    assert criteria.worker_recovery_s == 60
    assert criteria.session_cleanup_grace_s == 5
    assert criteria.soak_growth_bytes == 500_000_000
    assert criteria.max_timeout_rate_percent == 0.0
    assert criteria.thread_and_file_counts_return is True
    assert criteria.thread_and_file_count_tolerance == 1, "the soak profile's own table allows one short-lived thread"
    assert criteria.min_leak_rate_bytes_per_hour == 10 * MIB
    assert criteria.leak_alpha == 0.05
    assert criteria.leak_min_points == 8
    assert criteria.fail_on_inconclusive_leak_verdict is False


def test_default_tolerance_zero_outside_soak():
    assert load_criteria(None, "memory").thread_and_file_count_tolerance == 0
    assert load_criteria(None, "workers").status_call_limit_s == 2.0


@pytest.mark.parametrize("profile", KNOWN_PROFILES)
def test_defaults_load_for_every_profile(profile):
    assert load_criteria(None, profile).profile == profile


def test_default_file_sets_every_criterion():
    document = tomllib.loads(DEFAULT_CRITERIA_PATH.read_text(encoding="utf-8"))
    criterion_names = {field.name for field in dataclasses.fields(Criteria)} - {"profile", "source_path"}

    assert set(document) - {"profiles"} == criterion_names


def test_user_file_overrides_defaults(tmp_path):
    path = write_criteria(tmp_path, 'soak_growth_bytes = "1 GiB"\nworker_recovery_s = 30\n')

    criteria = load_criteria(path, "memory")

    assert criteria.soak_growth_bytes == 1024**3
    assert criteria.worker_recovery_s == 30.0
    assert criteria.leak_alpha == 0.05
    assert criteria.source_path == path


def test_profile_table_overrides_top_level(tmp_path):
    path = write_criteria(
        tmp_path,
        "worker_recovery_s = 30\n"
        "[profiles.workers]\n"
        "worker_recovery_s = 10\n"
        "[profiles.soak]\n"
        'min_leak_rate_bytes_per_hour = "50 MiB"\n',
    )

    workers = load_criteria(path, "workers")
    soak = load_criteria(path, "soak")
    memory = load_criteria(path, "memory")

    assert workers.worker_recovery_s == 10.0
    assert soak.worker_recovery_s == 30.0
    assert soak.min_leak_rate_bytes_per_hour == 50 * MIB
    assert memory.worker_recovery_s == 30.0
    assert memory.min_leak_rate_bytes_per_hour == 10 * MIB


def test_empty_file_keeps_defaults(tmp_path):
    path = write_criteria(tmp_path, "")

    assert load_criteria(path, "soak") == dataclasses.replace(load_criteria(None, "soak"), source_path=path)


def test_path_may_be_a_string(tmp_path):
    path = write_criteria(tmp_path, "leak_min_points = 12\n")

    assert load_criteria(str(path), "soak").leak_min_points == 12


# --- derived limits ---------------------------------------------------------------


def test_rss_limit_uses_extra_models(tmp_path):
    criteria = load_criteria(None, "memory")

    # The incident: a 450 MB base, 200 MiB instances, a cache bound of 3.
    assert criteria.rss_limit_bytes(450_000_000, 200 * MIB, 3) == 450_000_000 + round(3.5 * 200 * MIB)

    path = write_criteria(tmp_path, "rss_after_profile_extra_models = 1.0\n")
    assert load_criteria(path, "memory").rss_limit_bytes(100, 10, 2) == 130


def test_min_growth_per_request_is_fraction_of_model():
    criteria = load_criteria(None, "memory")

    assert criteria.min_growth_per_request_bytes(200 * MIB) == pytest.approx(2 * MIB)


def test_session_cleanup_deadline_adds_grace():
    criteria = load_criteria(None, "sessions")

    assert criteria.session_cleanup_deadline_s(300, 60) == 365.0


def test_min_leak_rate_per_second():
    criteria = load_criteria(None, "soak")

    assert criteria.min_leak_rate_bytes_per_s == pytest.approx(10 * MIB / 3600)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.rss_limit_bytes(1, 1, 0), "cache_bound"),
        (lambda c: c.rss_limit_bytes(1, -1, 3), "model_bytes"),
        (lambda c: c.rss_limit_bytes(float("nan"), 1, 3), "base_bytes"),
        (lambda c: c.min_growth_per_request_bytes(-1), "model_bytes"),
        (lambda c: c.session_cleanup_deadline_s(-1, 60), "ttl_s"),
    ],
)
def test_derived_limits_reject_invalid_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(load_criteria(None, "memory"))


def test_criteria_to_dict_is_json(tmp_path):
    path = write_criteria(tmp_path, "")

    data = json.loads(json.dumps(load_criteria(path, "soak").to_dict()))

    assert data["source_path"] == str(path)
    assert data["soak_growth_bytes"] == 500_000_000


# --- size parsing -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1234, 1234),
        ("1234", 1234),
        ("10 B", 10),
        ("1KB", 1000),
        ("500 MB", 500_000_000),
        ("2 GB", 2_000_000_000),
        ("1 TB", 10**12),
        ("1 KiB", 1024),
        ("10 MiB", 10 * MIB),
        ("1.5GiB", 3 * 512 * MIB),
        ("1 TiB", 1024**4),
        ("0.5 KB", 500),
        (".5 KiB", 512),
        ("1e3 KB", 1_000_000),
        ("  7 mib  ", 7 * MIB),
        ("1.5 B", 2),
        (MAX_SIZE_BYTES, MAX_SIZE_BYTES),
    ],
)
def test_parse_size_accepts(value, expected):
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("-5 MB", "must not be negative"),
        (-5, "must not be negative"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("1e400 GB", "at most"),
        ("1e999999999 GB", "at most"),
        (MAX_SIZE_BYTES + 1, "at most"),
        ("9 EiB", "not a size unit"),
        ("5 XB", "not a size unit"),
        ("MB", "not a number"),
        ("inf GB", "not a number"),
        ("nan", "not a number"),
        ("5 MB extra", "not a number"),
        ("0x10 MB", "not a number"),
        ("1" * 100, "characters long"),
        (5.0, "not a float"),
        (True, "not a boolean"),
        ({"value": 5}, "not a table"),
        ([5], "not an array"),
    ],
)
def test_parse_size_rejects(value, problem):
    with pytest.raises(CriteriaError, match=problem) as caught:
        parse_size(value, key="soak_growth_bytes")

    assert caught.value.key == "soak_growth_bytes"
    assert caught.value.value == value
    assert "soak_growth_bytes" in str(caught.value)
    assert "500 MB" in str(caught.value), "the message shows a valid example"


# --- invalid files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "shown"),
    [
        ('soak_growth_bytes = "-5 MB"', "soak_growth_bytes", "'-5 MB'"),
        ('soak_growth_bytes = "1e400 GB"', "soak_growth_bytes", "'1e400 GB'"),
        ('soak_growth_bytes = ""', "soak_growth_bytes", "''"),
        ("soak_growth_bytes = 12.5", "soak_growth_bytes", "12.5"),
        ("soak_growth_bytes = { value = 5 }", "soak_growth_bytes", "the table {'value': 5}"),
        ("[soak_growth_bytes]\nvalue = 5", "soak_growth_bytes", "the table {'value': 5}"),
        ('min_leak_rate_bytes_per_hour = "10 MiB/h"', "min_leak_rate_bytes_per_hour", "'10 MiB/h'"),
        ('worker_recovery_s = "60s"', "worker_recovery_s", "'60s'"),
        ("worker_recovery_s = 0", "worker_recovery_s", "0"),
        ("worker_recovery_s = -1", "worker_recovery_s", "-1"),
        ("worker_recovery_s = inf", "worker_recovery_s", "inf"),
        ("worker_recovery_s = nan", "worker_recovery_s", "nan"),
        ("worker_recovery_s = 1e400", "worker_recovery_s", "inf"),
        ("worker_recovery_s = [60]", "worker_recovery_s", "the array [60]"),
        ("session_cleanup_grace_s = -0.5", "session_cleanup_grace_s", "-0.5"),
        ("max_timeout_rate_percent = 101", "max_timeout_rate_percent", "101"),
        ("growth_per_request_fraction_of_model = 1.5", "growth_per_request_fraction_of_model", "1.5"),
        ("rss_after_profile_extra_models = -0.5", "rss_after_profile_extra_models", "-0.5"),
        ("rss_after_profile_extra_models = true", "rss_after_profile_extra_models", "true"),
        ("leak_alpha = 0.5", "leak_alpha", "0.5"),
        ("leak_alpha = 0", "leak_alpha", "0"),
        ("leak_min_points = 2", "leak_min_points", "2"),
        ("leak_min_points = 8.0", "leak_min_points", "8.0"),
        ("leak_min_points = 100000", "leak_min_points", "100000"),
        ("thread_and_file_count_tolerance = -1", "thread_and_file_count_tolerance", "-1"),
        ('thread_and_file_counts_return = "yes"', "thread_and_file_counts_return", "'yes'"),
        ("fail_on_inconclusive_leak_verdict = 1", "fail_on_inconclusive_leak_verdict", "1"),
        ('[profiles.soak]\nsoak_growth_bytes = "-1 GB"', "profiles.soak.soak_growth_bytes", "'-1 GB'"),
        ('profiles = "soak"', "profiles", "'soak'"),
        ("[profiles]\nsoak = 5", "profiles.soak", "5"),
    ],
)
def test_invalid_value_names_key_and_value(tmp_path, text, key, shown):
    path = write_criteria(tmp_path, text + "\n")

    with pytest.raises(CriteriaError) as caught:
        load_criteria(path, "soak")

    message = str(caught.value)
    assert caught.value.key == key
    assert f"Invalid value for {key} in {path}" in message
    assert f"got {shown}," in message
    assert "Write " in message, "the message says what to write instead"


def test_unknown_key_suggests_close_name(tmp_path):
    path = write_criteria(tmp_path, 'soak_growt_bytes = "500 MB"\n')

    with pytest.raises(CriteriaError) as caught:
        load_criteria(path, "soak")

    message = str(caught.value)
    assert caught.value.key == "soak_growt_bytes"
    assert "Unknown criterion soak_growt_bytes = '500 MB'" in message
    assert "Did you mean soak_growth_bytes?" in message


def test_unknown_key_in_profile_table(tmp_path):
    path = write_criteria(tmp_path, "[profiles.memory]\ncolour = 'red'\n")

    with pytest.raises(CriteriaError) as caught:
        load_criteria(path, "soak")

    assert caught.value.key == "profiles.memory.colour"
    assert "'red'" in str(caught.value)


def test_unknown_profile_table(tmp_path):
    path = write_criteria(tmp_path, "[profiles.nightly]\nworker_recovery_s = 5\n")

    with pytest.raises(CriteriaError) as caught:
        load_criteria(path, "soak")

    message = str(caught.value)
    assert caught.value.key == "profiles.nightly"
    assert "[profiles.nightly]" in message
    assert "memory, workers, sessions, soak" in message


def test_unknown_profile_argument():
    with pytest.raises(CriteriaError) as caught:
        load_criteria(None, "nightly")

    assert caught.value.key == "profile"
    assert "'nightly'" in str(caught.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"

    with pytest.raises(CriteriaError, match="not found"):
        load_criteria(path, "soak")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(CriteriaError, match="is a directory"):
        load_criteria(tmp_path, "soak")


def test_invalid_toml(tmp_path):
    path = write_criteria(tmp_path, "soak_growth_bytes = \n")

    with pytest.raises(CriteriaError, match="not valid TOML"):
        load_criteria(path, "soak")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "criteria.toml"
    path.write_bytes(b"worker_recovery_s = 60 # \xff\xfe\n")

    with pytest.raises(CriteriaError, match="not valid UTF-8"):
        load_criteria(path, "soak")


def test_oversized_file(tmp_path):
    path = tmp_path / "criteria.toml"
    path.write_bytes(b"# padding\n" * (MAX_CRITERIA_FILE_BYTES // 10 + 1))

    with pytest.raises(CriteriaError, match="larger than"):
        load_criteria(path, "soak")


def test_criteria_error_is_soak_error():
    assert issubclass(CriteriaError, SoakError)
