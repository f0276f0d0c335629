"""Settings of one run, and the times its stages started and ended."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from soak.errors import SoakError
from soak.rundir import utc_iso

# NOTE: the harness runs from a checkout: profiles/ and the speech fixture
# under tests/data/ sit next to the soak package and are not installed with it.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO_ROOT / "tests" / "data" / "speech.wav"


class SettingsError(SoakError):
    """A run setting is invalid, so the run cannot start (exit status 2)."""


@dataclass(frozen=True)
class RunSettings:
    """Everything one run needs; ``soak compare`` derives its two runs from one of these."""

    profile: str = "memory"
    leaks: str = "none"
    model: str = "paraformer-50mb"
    requests: int = 30
    users: int = 1
    cache_max_models: int = 3
    # Extra model identities (copies of the model); None means cache bound + 1,
    # so that the profile cycles through more identities than the cache holds.
    copies: int | None = None
    pause_s: float = 0.5
    # Wall-clock bound of the load phase (Locust's --run-time), in seconds.
    timeout_s: float = 600.0
    ready_timeout_s: float = 180.0
    prepare_timeout_s: float = 900.0
    # Sampling continues this long after the last request, so the end of the run is measured at rest.
    settle_s: float = 3.0
    sample_interval_s: float = 1.0
    # The gateway drains for up to 30 s on SIGTERM, so SIGKILL comes only after that.
    stop_timeout_s: float = 40.0
    models_dir: Path | None = None
    criteria_path: Path | None = None
    malloc_arena_max: int | None = None
    audio_path: Path = DEFAULT_AUDIO
    locust_args: tuple[str, ...] = ()
    gateway_args: tuple[str, ...] = ()
    gateway_command: tuple[str, ...] = (sys.executable, "-m", "gateway")
    locust_command: tuple[str, ...] = (sys.executable, "-m", "locust")

    @property
    def model_copies(self) -> int:
        return self.copies if self.copies is not None else self.cache_max_models + 1

    def validate(self) -> None:
        """Raise SettingsError naming the first invalid setting."""
        checks = [
            (self.profile == "memory", f"profile must be memory, got {self.profile!r}"),
            (self.requests >= 1, f"requests must be at least 1, got {self.requests}"),
            (self.users >= 1, f"users must be at least 1, got {self.users}"),
            (self.cache_max_models >= 1, f"cache max models must be at least 1, got {self.cache_max_models}"),
            (self.model_copies >= 0, f"copies must be at least 0, got {self.model_copies}"),
            (self.timeout_s > 0, f"timeout must be greater than 0 s, got {self.timeout_s}"),
            (self.pause_s >= 0, f"pause must be at least 0 s, got {self.pause_s}"),
            (self.audio_path.is_file(), f"audio file {self.audio_path} not found"),
            (
                self.criteria_path is None or self.criteria_path.is_file(),
                f"criteria file {self.criteria_path} not found",
            ),
        ]
        for passed, message in checks:
            if not passed:
                raise SettingsError(message)

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
