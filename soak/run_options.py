"""Command-line options of ``soak run``, ``soak compare`` and ``soak gate``, and the settings they build."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from soak.criteria import CriteriaError, parse_size
from soak.settings import ALLOCATORS, PROFILES, TRACEMALLOC_STARTS, VARIANTS, RunSettings

LEAK_NAMES = ("model-cache", "worker-futures", "session-buffers")


def add_run_options(parser: argparse.ArgumentParser, runs_dir: Path) -> None:
    """Add every run setting as an option; the help of a profile-specific one names the profile that reads it."""
    defaults = RunSettings()
    general = parser.add_argument_group("every profile")
    general.add_argument("--model", default=defaults.model, help=f"model preset (default {defaults.model})")
    general.add_argument("--users", type=positive_int, default=None,
                         help="concurrent Locust users (default: the profile's: memory 1, or 4 when overlapping; "
                         "workers 12; sessions 4; soak 4; patterns 1)")
    general.add_argument("--cache-max-models", type=positive_int, default=defaults.cache_max_models,
                         help=f"the gateway's model cache bound (default {defaults.cache_max_models})")
    general.add_argument("--out", type=Path, default=None, help=f"output folder, empty or new (default: a new folder under {runs_dir})")
    general.add_argument("--criteria", type=Path, default=None, help="criteria TOML file (default: the built-in criteria)")
    general.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the gateway's default)")
    general.add_argument("--timeout-s", type=positive_float, default=None,
                         help="wall-clock limit of the load phase in seconds (default: the profile's expected length plus 120)")
    general.add_argument("--ready-timeout-s", type=positive_float, default=defaults.ready_timeout_s,
                         help=f"seconds to wait for the gateway's readiness (default {defaults.ready_timeout_s:.0f})")
    general.add_argument("--pause-s", type=non_negative_float, default=None,
                         help="pause after each request of a user, in seconds (default 0.5; 0 for overlapping memory runs)")

    gateway = parser.add_argument_group("the gateway and its allocator")
    gateway.add_argument("--target", dest="target_url", default=None, metavar="URL",
                         help="drive and sample a running gateway at URL instead of starting one")
    gateway.add_argument("--pid", dest="target_pid", type=positive_int, default=None,
                         help="with --target on this host: the gateway's PID, so that its process tree is sampled "
                         "(without it, RSS comes from the gateway's own status figure)")
    gateway.add_argument("--model-bytes", type=size_value, default=None, metavar="SIZE",
                         help="with --target: the model instance size for the memory limits, such as '50 MiB' "
                         "(default: read from --models-dir)")
    gateway.add_argument("--allocator", choices=ALLOCATORS, default=defaults.allocator,
                         help="glibc malloc, or jemalloc through LD_PRELOAD of libjemalloc.so.2 (default glibc)")
    gateway.add_argument("--malloc-arena-max", type=positive_int, default=None, help="set MALLOC_ARENA_MAX for the gateway")
    gateway.add_argument("--tracemalloc-frames", type=non_negative_int, default=0, metavar="N",
                         help="trace the gateway's Python allocations with N frames and save snapshots (default 0: off; "
                         "tracing slows inference about 8 times at 1 frame and 47 at 25, as measured in docs/benchmarks.md)")
    gateway.add_argument("--tracemalloc-start", choices=TRACEMALLOC_STARTS, default=defaults.tracemalloc_start,
                         help="start tracing at boot, or after the warm-up (default boot)")
    gateway.add_argument("--snapshot-interval-s", type=positive_float, default=defaults.snapshot_interval_s,
                         help=f"seconds between tracemalloc snapshots (default {defaults.snapshot_interval_s:g})")

    profile = parser.add_argument_group("profile settings")
    profile.add_argument("--variant", choices=VARIANTS, default=defaults.variant,
                         help="memory: one request at a time, or several users with overlapping requests (default sequential)")
    profile.add_argument("--requests", type=positive_int, default=defaults.requests,
                         help=f"memory: requests in total (default {defaults.requests})")
    profile.add_argument("--sessions", type=positive_int, default=defaults.sessions,
                         help=f"sessions: sessions in total (default {defaults.sessions})")
    profile.add_argument("--session-ttl-s", type=positive_float, default=defaults.session_ttl_s,
                         help=f"sessions: the gateway's idle session TTL (default {defaults.session_ttl_s:g})")
    profile.add_argument("--sweep-interval-s", type=positive_float, default=defaults.sweep_interval_s,
                         help=f"sessions: the gateway's sweep interval (default {defaults.sweep_interval_s:g})")
    profile.add_argument("--workers", type=positive_int, default=None, help="the gateway's worker threads (default: workers 2; others the gateway's)")
    profile.add_argument("--max-queue", type=non_negative_int, default=None, help="the gateway's queue places (default: workers 2; others the gateway's)")
    profile.add_argument("--load-s", type=positive_float, default=defaults.load_s,
                         help=f"workers: seconds of saturating load (default {defaults.load_s:g})")
    profile.add_argument("--compress", type=at_least_one, default=defaults.compress,
                         help="soak: time compression; 60 runs 8 simulated hours in 8 minutes (default 1, real time)")
    profile.add_argument("--soak-minutes", type=positive_float, default=defaults.soak_minutes,
                         help=f"soak: simulated minutes (default {defaults.soak_minutes:g})")
    profile.add_argument("--requests-per-min", type=positive_float, default=defaults.requests_per_min,
                         help=f"soak: requests per simulated minute (default {defaults.requests_per_min:g})")


def settings_from(args: argparse.Namespace, locust_args: list[str]) -> RunSettings:
    return replace(
        RunSettings(),
        profile=args.profile,
        leaks=getattr(args, "leaks", "none"),
        model=args.model,
        variant=args.variant,
        requests=args.requests,
        users=args.users,
        cache_max_models=args.cache_max_models,
        pause_s=args.pause_s,
        sessions=args.sessions,
        session_ttl_s=args.session_ttl_s,
        sweep_interval_s=args.sweep_interval_s,
        workers=args.workers,
        max_queue=args.max_queue,
        load_s=args.load_s,
        soak_minutes=args.soak_minutes,
        requests_per_min=args.requests_per_min,
        compress=args.compress,
        target_url=args.target_url,
        target_pid=args.target_pid,
        model_bytes=args.model_bytes,
        allocator=args.allocator,
        malloc_arena_max=args.malloc_arena_max,
        tracemalloc_frames=args.tracemalloc_frames,
        tracemalloc_start=args.tracemalloc_start,
        snapshot_interval_s=args.snapshot_interval_s,
        criteria_path=args.criteria.resolve() if args.criteria else None,
        models_dir=args.models_dir,
        timeout_s=args.timeout_s,
        ready_timeout_s=args.ready_timeout_s,
        locust_args=tuple(locust_args),
    )


def profile_value(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"unknown profile {text!r}: use one of {', '.join(PROFILES)}")
    return text


def leaks_value(text: str) -> str:
    if text in ("none", "all"):
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LEAK_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"invalid leak switch {text!r}: use none, all or a comma list of {', '.join(LEAK_NAMES)}"
        )
    return ",".join(names)


def size_value(text: str) -> int:
    try:
        return parse_size(text, key="--model-bytes")
    except CriteriaError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    value = parse_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = parse_int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_float(text: str) -> float:
    value = parse_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value:g}")
    return value


def at_least_one(text: str) -> float:
    value = parse_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    value = parse_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value:g}")
    return value


def parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value
