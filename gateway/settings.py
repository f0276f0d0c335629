"""The gateway's settings: one typed object, command-line flag over environment over default.

Each setting is a field of :class:`Settings` with its default, and has one
entry in ``_OPTIONS`` with its parser and help text. The command-line flags and
the ``GATEWAY_<NAME>`` environment variables are both built from that table. Building a :class:`Settings` does no I/O
beyond checking that configured folders exist.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gateway.errors import SettingsError
from gateway.url_allowlist import parse_allowlist, parse_entry

logger = logging.getLogger(__name__)

LEAK_NAMES = ("model-cache", "worker-futures", "session-buffers")
MAX_DEFAULT_WORKERS = 12
ENV_PREFIX = "GATEWAY_"


def default_models_dir() -> Path:
    """Return the folder that ``gateway models prepare`` writes to by default."""
    env = os.environ.get("GATEWAY_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "asr-leak-toolkit" / "models"


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def parse_leaks(value: str) -> tuple[str, ...]:
    """Parse ``none``, ``all`` or a comma list of leak names into a sorted tuple."""
    text = value.strip().lower()
    if text in ("", "none"):
        return ()
    if text == "all":
        return LEAK_NAMES
    names = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in LEAK_NAMES]
    if unknown:
        raise SettingsError(
            f"leaks: unknown leak {', '.join(repr(n) for n in unknown)} in {value!r}; "
            f"use none, all, or a comma list of {', '.join(LEAK_NAMES)}"
        )
    return tuple(name for name in LEAK_NAMES if name in names)


def parse_media_roots(value: str) -> tuple[Path, ...]:
    """Parse an ``os.pathsep``-separated list of folders (the environment form)."""
    return tuple(Path(part).expanduser() for part in value.split(os.pathsep) if part.strip())


_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_bytes(value: str) -> int:
    """Parse a byte size: a plain integer or a number with a unit such as ``64MiB`` or ``1.5 GB``."""
    match = _SIZE_PATTERN.fullmatch(value)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"expected bytes such as 1048576, 64MiB or 1.5GB, got {value!r}")
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    if size > 2**62:
        raise ValueError(f"{value!r} is larger than any supported size")
    return int(size)


def _parse_bool(value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    model: str = "default"
    models_dir: Path = field(default_factory=default_models_dir)
    device: str = "cpu"
    workers: int = field(default_factory=default_workers)
    max_queue: int | None = None  # None: 4 x workers
    task_timeout_s: float = 300.0
    stuck_after_timeouts: int = 3
    cache_max_models: int = 3
    session_ttl_s: float = 300.0
    sweep_interval_s: float = 60.0
    max_sessions: int = 1000
    max_session_bytes: int = 64 * 1024 * 1024
    max_upload_bytes: int = 100 * 1024 * 1024
    max_audio_duration_s: float = 2 * 3600.0
    media_roots: tuple[Path, ...] = ()
    url_allowlist: tuple[str, ...] = ()  # canonical host[:port] entries; empty: no downloads
    download_timeout_s: float = 30.0
    upload_timeout_s: float = 300.0
    onednn_cache_capacity: int = 1024
    torch_threads: int = 1
    stream_max_message_bytes: int = 1024 * 1024
    stream_partial_interval_s: float = 2.0
    auth_token: str | None = None
    memory_limit_bytes: int | None = None  # None: the cgroup limit when one is set
    drain_timeout_s: float = 30.0
    processes: int = 1
    tracemalloc_frames: int = 0  # 0: tracing off
    tracemalloc_start: str = "boot"  # boot, or warmup: once the default model is loaded
    leaks: tuple[str, ...] = ()
    debug_endpoints: bool = False
    debug_token: str | None = None
    log_level: str = "info"

    @property
    def queue_limit(self) -> int:
        return self.max_queue if self.max_queue is not None else 4 * self.workers

    def validate(self) -> list[str]:
        """Raise :class:`SettingsError` on an invalid value; return warnings for risky ones."""
        _require(1 <= self.port <= 65535, "port", self.port, "an integer from 1 to 65535", "port")
        _require(self.workers >= 1, "workers", self.workers, "an integer of at least 1", "workers")
        if self.max_queue is not None:
            _require(self.max_queue >= 0, "max queue", self.max_queue, "an integer of at least 0", "max_queue")
        _require(self.task_timeout_s > 0, "task timeout", self.task_timeout_s, "a number of seconds above 0", "task_timeout_s")
        _require(self.stuck_after_timeouts >= 1, "stuck after timeouts", self.stuck_after_timeouts, "at least 1", "stuck_after_timeouts")
        _require(self.cache_max_models >= 1, "cache max models", self.cache_max_models, "an integer of at least 1", "cache_max_models")
        _require(self.session_ttl_s > 0, "session TTL", self.session_ttl_s, "a number of seconds above 0", "session_ttl_s")
        _require(self.sweep_interval_s > 0, "sweep interval", self.sweep_interval_s, "a number of seconds above 0", "sweep_interval_s")
        _require(self.max_sessions >= 1, "max sessions", self.max_sessions, "an integer of at least 1", "max_sessions")
        _require(self.max_session_bytes >= 1, "max session bytes", self.max_session_bytes, "at least 1 byte", "max_session_bytes")
        _require(self.max_upload_bytes >= 1, "max upload bytes", self.max_upload_bytes, "at least 1 byte", "max_upload_bytes")
        _require(self.max_audio_duration_s > 0, "max audio duration", self.max_audio_duration_s, "above 0 seconds", "max_audio_duration_s")
        _require(self.download_timeout_s > 0, "download timeout", self.download_timeout_s, "a number of seconds above 0", "download_timeout_s")
        _require(self.upload_timeout_s > 0, "upload timeout", self.upload_timeout_s, "a number of seconds above 0", "upload_timeout_s")
        _require(self.onednn_cache_capacity >= 0, "oneDNN cache capacity", self.onednn_cache_capacity, "at least 0", "onednn_cache_capacity")
        _require(self.stream_max_message_bytes >= 2, "stream max message bytes", self.stream_max_message_bytes, "at least 2", "stream_max_message_bytes")
        _require(self.stream_partial_interval_s > 0, "stream partial interval", self.stream_partial_interval_s, "above 0 seconds", "stream_partial_interval_s")
        for name, token in (("auth token", self.auth_token), ("debug token", self.debug_token)):
            if token is not None and len(token) < 16:
                raise SettingsError(f"{name} must have at least 16 characters, got {len(token)}; use a random secret")
        if self.memory_limit_bytes is not None:
            _require(self.memory_limit_bytes >= 1, "memory limit", self.memory_limit_bytes, "at least 1 byte", "memory_limit_bytes")
        _require(0 <= self.tracemalloc_frames <= 100, "tracemalloc frames", self.tracemalloc_frames, "0 (off) to 100", "tracemalloc_frames")
        _require(self.tracemalloc_start in ("boot", "warmup"), "tracemalloc start", self.tracemalloc_start, "boot or warmup", "tracemalloc_start")
        _require(1 <= self.processes <= 64, "processes", self.processes, "an integer from 1 to 64", "processes")
        _require(self.drain_timeout_s >= 0, "drain timeout", self.drain_timeout_s, "at least 0 seconds", "drain_timeout_s")
        _require(self.torch_threads >= 1, "torch threads", self.torch_threads, "an integer of at least 1", "torch_threads")
        _require(_is_device_name(self.device), "device", self.device, "cpu, cuda or cuda:N", "device")
        _require(
            self.log_level in ("debug", "info", "warning", "error"),
            "log level", self.log_level, "debug, info, warning or error",
        )
        _require(bool(self.model.strip()), "model", self.model, "a preset name or a model directory", "model")
        for root in self.media_roots:
            if not root.is_dir():
                raise SettingsError(
                    f"media root {str(root)!r} is not an existing folder; create it or pass another --media-root"
                )

        warnings = []
        cpu_count = os.cpu_count() or 1
        if self.workers > 2 * cpu_count:
            warnings.append(
                f"workers={self.workers} is above twice the CPU count ({cpu_count}); "
                "inference threads will compete for cores"
            )
        if self.cache_max_models == 1:
            warnings.append("cache max models is 1: every request for another model evicts and reloads (thrashing)")
        if self.session_ttl_s < 60:
            warnings.append(
                f"session TTL is {self.session_ttl_s:g} s (under 60 s): slow streaming clients may lose their sessions"
            )
        if self.tracemalloc_frames:
            warnings.append(
                f"tracemalloc on with {self.tracemalloc_frames} frame(s): inference runs several times slower, "
                "so timing figures of this run are not representative"
            )
        if self.leaks:
            warnings.append(f"leak switches on: {', '.join(self.leaks)}; this gateway reproduces the incident")
        for entry in self.url_allowlist:
            address = parse_entry(entry).address
            if address is not None and not address.is_global:
                warnings.append(
                    f"url allowlist entry {entry} is a non-public address: requests can make the gateway "
                    "download from inside its network"
                )
        if not self.media_roots:
            warnings.append("no media root set: every audio_url is rejected until --media-root is given")
        return warnings


def _is_device_name(device: str) -> bool:
    if device in ("cpu", "cuda"):
        return True
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()


def _require(condition: bool, name: str, value: Any, allowed: str, field: str | None = None) -> None:
    if condition:
        return
    where = f" (set with --{field.replace('_', '-')} or {ENV_PREFIX}{field.upper()})" if field else ""
    raise SettingsError(f"{name} must be {allowed}, got {value!r}{where}")


@dataclass(frozen=True)
class _Option:
    name: str  # Settings field
    parse: Callable[[str], Any]
    help: str
    metavar: str | None = None


_OPTIONS: tuple[_Option, ...] = (
    _Option("host", str, "address to listen on (default 127.0.0.1)"),
    _Option("port", int, "TCP port (default 8080)"),
    _Option("model", str, "default model: a preset name (default: paraformer-50mb) or a prepared model directory"),
    _Option("models_dir", Path, "folder of prepared models (default: ~/.cache/asr-leak-toolkit/models)"),
    _Option("device", str, "torch device: cpu, cuda or cuda:N (default cpu)"),
    _Option("workers", int, "inference worker threads (default: CPU count, at most 12)"),
    _Option("max_queue", int, "tasks that may wait for a worker before new ones get 503 (default 4 x workers)"),
    _Option("task_timeout_s", float, "seconds a request waits for its task before 504 (default 300)"),
    _Option("stuck_after_timeouts", int, "a task running this many timeouts long counts as stuck (default 3)"),
    _Option("cache_max_models", int, "model instances the cache holds before evicting the least recently used (default 3)"),
    _Option("session_ttl_s", float, "seconds of inactivity after which a session is dropped (default 300)"),
    _Option("sweep_interval_s", float, "seconds between sweeps for idle sessions (default 60)"),
    _Option("max_sessions", int, "open sessions allowed at once (default 1000)"),
    _Option("max_session_bytes", parse_bytes, "audio bytes one session may buffer (default 64 MiB)"),
    _Option("max_upload_bytes", parse_bytes, "largest audio file or chunk accepted, in bytes (default 100 MiB)"),
    _Option("max_audio_duration_s", float, "longest audio accepted, in seconds (default 7200)"),
    _Option("url_allowlist", parse_allowlist, "hosts that audio_url may download from, as host[:port] entries separated by commas; a host without a port allows only port 80 or 443 (default: empty, no downloads)", "HOSTS"),
    _Option("download_timeout_s", float, "seconds a download of an audio_url may take in total, redirects included (default 30)"),
    _Option("upload_timeout_s", float, "seconds a client may take to send a request body; past it the request gets 408 (default 300)"),
    _Option("onednn_cache_capacity", int, "oneDNN primitive cache capacity, set at start-up (default 1024, the same as oneDNN's own)"),
    _Option("torch_threads", int, "torch intra-op threads per process (default 1; workers run in parallel)"),
    _Option("stream_max_message_bytes", parse_bytes, "largest WebSocket message accepted, in bytes; past it the stream closes with 1009 (default 1 MiB)"),
    _Option("stream_partial_interval_s", float, "seconds of streamed audio between partial results (default 2)"),
    _Option("auth_token", str, "bearer token required on every endpoint but /healthz and /readyz (default: none); prefer GATEWAY_AUTH_TOKEN", "TOKEN"),
    _Option("debug_token", str, "token in X-Debug-Token that lets non-loopback clients use the debug endpoints (default: none)", "TOKEN"),
    _Option("memory_limit_bytes", parse_bytes, "RSS in bytes above which model loads get 503 and idle models are evicted (default: the cgroup limit, if any)"),
    _Option("drain_timeout_s", float, "seconds SIGTERM waits for running tasks before the server stops (default 30)"),
    _Option("processes", int, "gateway processes sharing the port, each with its own cache, pool and sessions (default 1)"),
    _Option("tracemalloc_frames", int, "trace Python allocations with this many frames; 0 is off (default 0; tracing slows inference about 8 times at 1 frame and 47 at 25, as measured in docs/benchmarks.md)"),
    _Option("tracemalloc_start", str.lower, "when tracing starts: boot, or warmup once the default model is loaded (default boot)"),
    _Option("leaks", parse_leaks, "turn old leaks back on: none, all, or a comma list of " + ",".join(LEAK_NAMES)),
    _Option("debug_endpoints", _parse_bool, "serve /v1/debug/* to loopback clients (default off)"),
    _Option("log_level", str.lower, "debug, info, warning or error (default info)"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting; unset flags stay ``None`` so the environment can fill them."""
    for option in _OPTIONS:
        flag = "--" + option.name.replace("_", "-")
        if option.name == "debug_endpoints":
            parser.add_argument(flag, action="store_true", default=None, help=option.help)
            continue
        parser.add_argument(flag, default=None, help=option.help, metavar=option.metavar)
    parser.add_argument(
        "--media-root",
        action="append",
        default=None,
        dest="media_roots",
        metavar="DIR",
        help="folder that audio_url paths may point into; repeat for several (default: none, all rejected)",
    )


def settings_from(args: argparse.Namespace | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings from parsed flags, then ``GATEWAY_<NAME>`` variables, then defaults."""
    environ = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(Settings)}

    for option in _OPTIONS:
        raw = getattr(args, option.name, None) if args is not None else None
        source = "--" + option.name.replace("_", "-")
        if raw is None:
            env_name = ENV_PREFIX + option.name.upper()
            if env_name not in environ:
                continue
            raw = environ[env_name]
            source = env_name
        if isinstance(raw, bool):
            values[option.name] = raw
            continue
        try:
            values[option.name] = option.parse(raw)
        except SettingsError as error:
            raise SettingsError(f"{source}: {error.message}") from None
        except (ValueError, TypeError) as error:
            raise SettingsError(f"{source}: invalid value {raw!r} ({error}); see gateway serve --help") from None

    roots = getattr(args, "media_roots", None) if args is not None else None
    if roots:
        values["media_roots"] = tuple(Path(r).expanduser() for r in roots)
    elif "GATEWAY_MEDIA_ROOTS" in environ:
        values["media_roots"] = parse_media_roots(environ["GATEWAY_MEDIA_ROOTS"])
    if "media_roots" in values:
        values["media_roots"] = tuple(root.resolve() for root in values["media_roots"])

    assert set(values) <= known
    return Settings(**values)
