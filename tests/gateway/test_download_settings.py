"""Settings of downloads and uploads: the URL allowlist and its timeouts."""

from __future__ import annotations

import argparse
import json

import pytest

from gateway.errors import SettingsError
from gateway.processes import settings_from_json, settings_to_json
from gateway.settings import Settings, add_arguments, settings_from


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_allowlist_defaults_to_no_downloads():
    settings = settings_from(None, environ={})

    assert settings.url_allowlist == ()
    assert settings.download_timeout_s == 30.0
    assert settings.upload_timeout_s == 300.0


def test_allowlist_flag_wins_over_environment():
    settings = settings_from(
        parsed("--url-allowlist", "Media.Example.com.,192.0.2.10:8080"),
        environ={"GATEWAY_URL_ALLOWLIST": "other.example.com", "GATEWAY_DOWNLOAD_TIMEOUT_S": "5"},
    )

    assert settings.url_allowlist == ("media.example.com", "192.0.2.10:8080")
    assert settings.download_timeout_s == 5.0


def test_allowlist_from_environment():
    settings = settings_from(None, environ={"GATEWAY_URL_ALLOWLIST": "a.example:8443, [2001:db8::1]"})

    assert settings.url_allowlist == ("a.example:8443", "[2001:db8::1]")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("https://media.example.com", "leave out the scheme"),
        ("2130706433", "dotted decimal"),
        ("media.example.com:70000", "invalid port"),
    ],
)
def test_invalid_allowlist_stops_startup(value, fragment):
    with pytest.raises(SettingsError) as caught:
        settings_from(None, environ={"GATEWAY_URL_ALLOWLIST": value})

    assert "url allowlist" in caught.value.message
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"download_timeout_s": 0}, "download timeout must be a number of seconds above 0, got 0"),
        ({"upload_timeout_s": -1}, "upload timeout must be a number of seconds above 0, got -1"),
    ],
)
def test_invalid_timeouts_rejected(overrides, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings(**overrides).validate()


def test_non_public_allowlist_entry_warns():
    warnings = Settings(url_allowlist=("127.0.0.1:9000", "media.example.com", "93.184.215.14")).validate()

    flagged = [warning for warning in warnings if "url allowlist entry" in warning]
    assert len(flagged) == 1
    assert "127.0.0.1:9000" in flagged[0]


def test_allowlist_survives_process_handoff():
    settings = Settings(url_allowlist=("media.example.com", "[2001:db8::1]:9000"), download_timeout_s=7.5)

    copied = settings_from_json(settings_to_json(settings))

    assert copied.url_allowlist == settings.url_allowlist
    assert copied.download_timeout_s == 7.5
    assert json.loads(settings_to_json(settings))["url_allowlist"] == ["media.example.com", "[2001:db8::1]:9000"]
