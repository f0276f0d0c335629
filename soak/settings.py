"""Settings of one run, and the times its stages started and ended."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from soak.errors import SoakError
from soak.rundir import utc_iso

# NOTE: the harness runs from a checkout: profiles/ and the speech fixture
# under tests/data/ sit next to the soak package and are not installed with it.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO_ROOT / "tests" / "data" / "speech.wav"

PROFILES = ("memory", "workers", "sessions", "soak", "patterns")
VARIANTS = ("sequential", "overlapping")
ALLOCATORS = ("glibc", "jemalloc")
TRACEMALLOC_STARTS = ("boot", "warmup")

# Users of the overlapping memory variant when --users is not given.
OVERLAPPING_USERS = 4


class SettingsError(SoakError):
    """A run setting is invalid, so the run cannot start (exit status 2)."""


@dataclass(frozen=True)
class RunSettings:
    """Everything one run needs; ``soak compare`` derives its two runs from one of these.

    ``None`` means "the profile's default" where a profile has its own, and is
    resolved by ``soak.plans``.
    """

    profile: str = "memory"
    leaks: str = "none"
    model: str = "paraformer-50mb"
    # memory: "sequential" (one user) or "overlapping" (several users, no pause).
    variant: str = "sequential"
    # memory: requests in total.
    requests: int = 30
    users: int | None = None
    cache_max_models: int = 3
    # Extra model identities (copies of the model); None: what the profile needs
    # (cache bound + 1 for memory, so that it cycles through more identities than the cache holds).
    copies: int | None = None
    pause_s: float | None = None
    # sessions: sessions in total, and the TTL and sweep interval the gateway is started with.
    sessions: int = 36
    session_ttl_s: float = 5.0
    sweep_interval_s: float = 1.0
    # workers: the gateway's pool and queue, and how long the saturating load lasts.
    workers: int | None = None
    max_queue: int | None = None
    load_s: float = 25.0
    # soak: simulated minutes, requests per simulated minute, and the time compression.
    soak_minutes: float = 480.0
    requests_per_min: float = 3.0
    compress: float = 1.0
    # A gateway the runner did not start: its URL and, on this host, its PID.
    target_url: str | None = None
    target_pid: int | None = None
    # Model instance size for a target's memory limits when no prepared model folder tells it.
    model_bytes: int | None = None
    allocator: str = "glibc"
    malloc_arena_max: int | None = None
    tracemalloc_frames: int = 0
    tracemalloc_start: str = "boot"
    snapshot_interval_s: float = 60.0
    # Wall-clock bound of the load phase (Locust's --run-time), in seconds; None: the profile's.
    timeout_s: float | None = None
    ready_timeout_s: float = 180.0
    prepare_timeout_s: float = 900.0
    # Sampling continues this long after the last request, so the end of the run is measured at rest.
    settle_s: float = 3.0
    sample_interval_s: float = 1.0
    # The gateway drains for up to 30 s on SIGTERM, so SIGKILL comes only after that.
    stop_timeout_s: float = 40.0
    models_dir: Path | None = None
    criteria_path: Path | None = None
    audio_path: Path = DEFAULT_AUDIO
    locust_args: tuple[str, ...] = ()
    gateway_args: tuple[str, ...] = ()
    gateway_command: tuple[str, ...] = (sys.executable, "-m", "gateway")
    locust_command: tuple[str, ...] = (sys.executable, "-m", "locust")

    @property
    def starts_gateway(self) -> bool:
        return self.target_url is None

    @property
    def model_copies(self) -> int:
        if self.copies is not None:
            return self.copies
        if self.profile == "memory":
            return self.cache_max_models + 1
        if self.profile == "patterns":
            # One identity that nothing else loads, for the burst of first requests.
            return 1
        return 0

    @property
    def run_label(self) -> str:
        """The run folder's middle part: the profile, and the memory variant when it is not the default."""
        if self.profile == "memory" and self.variant != "sequential":
            return f"{self.profile}-{self.variant}"
        return self.profile

    def validate(self) -> None:
        """Raise SettingsError naming the first invalid setting."""
        checks = [
            (self.profile in PROFILES, f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}"),
            (self.variant in VARIANTS, f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}"),
            (self.variant == "sequential" or self.profile == "memory", f"--variant applies to the memory profile only, not to {self.profile}"),
            (self.requests >= 1, f"requests must be at least 1, got {self.requests}"),
            (self.users is None or self.users >= 1, f"users must be at least 1, got {self.users}"),
            (self.cache_max_models >= 1, f"cache max models must be at least 1, got {self.cache_max_models}"),
            (self.model_copies >= 0, f"copies must be at least 0, got {self.model_copies}"),
            (self.sessions >= 1, f"sessions must be at least 1, got {self.sessions}"),
            (self.session_ttl_s > 0, f"session TTL must be greater than 0 s, got {self.session_ttl_s}"),
            (self.sweep_interval_s > 0, f"sweep interval must be greater than 0 s, got {self.sweep_interval_s}"),
            (self.workers is None or self.workers >= 1, f"workers must be at least 1, got {self.workers}"),
            (self.max_queue is None or self.max_queue >= 0, f"max queue must be at least 0, got {self.max_queue}"),
            (self.load_s > 0, f"load duration must be greater than 0 s, got {self.load_s}"),
            (self.soak_minutes > 0, f"soak minutes must be greater than 0, got {self.soak_minutes}"),
            (self.requests_per_min > 0, f"requests per minute must be greater than 0, got {self.requests_per_min}"),
            (self.compress >= 1, f"compress must be at least 1 (1 is real time), got {self.compress}"),
            (self.timeout_s is None or self.timeout_s > 0, f"timeout must be greater than 0 s, got {self.timeout_s}"),
            (self.pause_s is None or self.pause_s >= 0, f"pause must be at least 0 s, got {self.pause_s}"),
            (self.allocator in ALLOCATORS, f"allocator must be one of {', '.join(ALLOCATORS)}, got {self.allocator!r}"),
            (self.tracemalloc_frames >= 0, f"tracemalloc frames must be at least 0, got {self.tracemalloc_frames}"),
            (self.tracemalloc_frames <= 100, f"tracemalloc frames must be at most 100, got {self.tracemalloc_frames}"),
            (
                self.tracemalloc_start in TRACEMALLOC_STARTS,
                f"tracemalloc start must be one of {', '.join(TRACEMALLOC_STARTS)}, got {self.tracemalloc_start!r}",
            ),
            (self.snapshot_interval_s > 0, f"snapshot interval must be greater than 0 s, got {self.snapshot_interval_s}"),
            (self.audio_path.is_file(), f"audio file {self.audio_path} not found"),
            (
                self.criteria_path is None or self.criteria_path.is_file(),
                f"criteria file {self.criteria_path} not found",
            ),
        ]
        for passed, message in checks:
            if not passed:
                raise SettingsError(message)
        self._validate_target()

    def _validate_target(self) -> None:
        if self.target_url is None:
            if self.target_pid is not None:
                raise SettingsError("--pid needs --target URL: it names the process of a gateway the runner did not start")
            return

        parts = urlsplit(self.target_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"--target must be an http(s) URL such as http://127.0.0.1:8080, got {self.target_url!r}")
        if self.target_pid is not None and self.target_pid < 1:
            raise SettingsError(f"--pid must be a process id, got {self.target_pid}")
        if self.leaks != "none":
            raise SettingsError(
                f"--leaks {self.leaks} starts a gateway with leaks switched on, but --target names a running gateway; "
                "start that gateway with --leaks instead"
            )
        if self.allocator != "glibc" or self.malloc_arena_max is not None:
            raise SettingsError(
                "--allocator and --malloc-arena-max set the environment of a gateway the runner starts; with --target, "
                "start the gateway with LD_PRELOAD or MALLOC_ARENA_MAX yourself"
            )

    def to_manifest(self) -> dict[str, Any]:
        values = asdict(self)
        for key, value in values.items():
            if isinstance(value, Path):
                values[key] = str(value)
            elif isinstance(value, tuple):
                values[key] = list(value)
        values["copies"] = self.model_copies
        return values


@dataclass
class RunTimes:
    """Wall-clock times of a run's stages, in Unix seconds."""

    started_s: float = field(default_factory=time.time)
    ready_s: float | None = None
    load_started_s: float | None = None
    load_ended_s: float | None = None
    ended_s: float | None = None

    def to_manifest(self) -> dict[str, Any]:
        times: dict[str, Any] = {}
        for name in ("started", "ready", "load_started", "load_ended", "ended"):
            value = getattr(self, f"{name}_s")
            times[f"{name}_s"] = value
            times[f"{name}_at"] = utc_iso(value) if value is not None else None
        return times
