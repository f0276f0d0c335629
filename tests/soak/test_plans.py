"""Per-profile defaults, gateway flags and Locust settings, and the run settings' own checks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from soak import plans
from soak.media import varying_names
from soak.settings import RunSettings, SettingsError


@pytest.mark.parametrize(
    ("profile", "variant", "users", "pause_s"),
    [
        ("memory", "sequential", 1, 0.5),
        ("memory", "overlapping", 4, 0.0),
        ("workers", "sequential", 12, 0.5),
        ("sessions", "sequential", 4, 0.5),
        ("soak", "sequential", 4, 0.5),
        ("patterns", "sequential", 1, 0.3),
    ],
)
def test_resolve_fills_profile_defaults(profile, variant, users, pause_s):
    resolved = plans.resolve(RunSettings(profile=profile, variant=variant))

    assert resolved.users == users
    assert resolved.pause_s == pause_s
    assert resolved.timeout_s > 0


def test_resolve_keeps_explicit_values():
    resolved = plans.resolve(RunSettings(profile="memory", variant="overlapping", users=6, pause_s=0.2, timeout_s=30))

    assert (resolved.users, resolved.pause_s, resolved.timeout_s) == (6, 0.2, 30)


def test_workers_profile_gets_small_pool():
    settings = plans.resolve(RunSettings(profile="workers"))

    args = plans.gateway_args(settings)

    assert args[:4] == ["--workers", "2", "--max-queue", "2"]
    assert settings.users > settings.workers + settings.max_queue, "the load must exceed workers plus queue places"


def test_sessions_profile_gets_short_ttl():
    args = plans.gateway_args(plans.resolve(RunSettings(profile="sessions", session_ttl_s=5, sweep_interval_s=1)))

    assert args == ["--session-ttl-s", "5", "--sweep-interval-s", "1"]


def test_tracing_flags_reach_gateway():
    args = plans.gateway_args(plans.resolve(RunSettings(tracemalloc_frames=3, tracemalloc_start="warmup")))

    assert args == ["--tracemalloc-frames", "3", "--tracemalloc-start", "warmup"]


def test_soak_plan_leaves_users_to_shape(tmp_path):
    settings = plans.resolve(RunSettings(profile="soak", compress=120))

    plan = plans.locust_plan(settings, ["paraformer-50mb"], {}, tmp_path)

    assert plan.users is None
    assert plan.env["SOAK_COMPRESS"] == "120"
    assert plan.env["SOAK_USERS"] == "4"
    assert plans.planned_requests(settings) == 1440


def test_memory_plan_cycles_all_identities(tmp_path):
    identities = [f"paraformer-50mb{suffix}" for suffix in ("", "-copy1", "-copy2", "-copy3", "-copy4")]

    plan = plans.locust_plan(plans.resolve(RunSettings(requests=12)), identities, {"cached_identities": ["paraformer-50mb"]}, tmp_path)

    assert plan.env["SOAK_MODELS"].split(",") == identities
    assert plan.env["SOAK_REQUESTS"] == "12"
    assert plan.users == 1


def test_burst_uses_identity_not_loaded():
    assert plans.burst_identity(["a", "a-copy1", "a-copy2"], ["a", "a-copy2"]) == "a-copy1"
    assert plans.burst_identity(["a"], ["a"]) == ""


def test_burst_fits_what_gateway_admits():
    assert plans.burst_size({"workers_max": 2, "queue_limit": 2}) == 4
    assert plans.burst_size({"workers_max": 2, "queue_limit": 8}) == 8
    assert plans.burst_size({"workers_max": 2, "queue_limit": 0}) == 8, "the leaky pool admits everything"
    assert plans.burst_size({}) == 8


def test_varying_order_starts_longest_then_mixes():
    order = plans.varying_order()

    assert sorted(order) == varying_names()
    assert order[0] == varying_names()[-1], "the longest file first sets the high-water mark during the warm-up"
    assert order[1:] != sorted(order[1:])


def test_patterns_copies_one_identity_for_burst():
    assert RunSettings(profile="patterns").model_copies == 1
    assert RunSettings(profile="memory", cache_max_models=3).model_copies == 4
    assert RunSettings(profile="workers").model_copies == 0


def test_run_label_names_overlapping_variant():
    assert RunSettings(profile="memory", variant="overlapping").run_label == "memory-overlapping"
    assert RunSettings(profile="sessions").run_label == "sessions"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"profile": "throughput"}, "profile must be one of"),
        ({"profile": "workers", "variant": "overlapping"}, "--variant applies to the memory profile only"),
        ({"target_pid": 123}, "--pid needs --target URL"),
        ({"target_url": "127.0.0.1:8080"}, "--target must be an http(s) URL"),
        ({"target_url": "http://127.0.0.1:8080", "leaks": "all"}, "start that gateway with --leaks instead"),
        ({"target_url": "http://127.0.0.1:8080", "allocator": "jemalloc"}, "--allocator and --malloc-arena-max"),
        ({"target_url": "http://127.0.0.1:8080", "malloc_arena_max": 2}, "--allocator and --malloc-arena-max"),
        ({"compress": 0.5}, "compress must be at least 1"),
        ({"tracemalloc_frames": 101}, "tracemalloc frames must be at most 100"),
        ({"audio_path": Path("/nonexistent/speech.wav")}, "not found"),
    ],
)
def test_invalid_settings_name_the_problem(changes, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        replace(RunSettings(), **changes).validate()
