"""Each profile's needs from a run: its defaults, the gateway's flags, the audio, and Locust's settings.

``resolve`` turns the profile-dependent ``None`` settings into the values a
run uses, so the manifest records what really ran. ``gateway_args`` are the
flags a gateway started by the runner gets for the profile, and
``locust_plan`` builds Locust's user count and the ``SOAK_*`` environment
variables the profile reads, once the gateway is ready and its model
identities are known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from soak.media import long_name, varying_names
from soak.settings import OVERLAPPING_USERS, RunSettings

# The workers profile saturates a small pool: more transcriptions at once than workers + queue places.
WORKERS_POOL = 2
WORKERS_QUEUE = 2
WORKERS_USERS = 12
# Each saturating client gives up after this long, as the incident's clients did; the gateway keeps working.
WORKERS_CLIENT_TIMEOUT_S = 2.0
WORKERS_SATURATE_AFTER_S = 8.0
# How long the workers profile watches the pool drain, past the 60 s criterion so that a slow drain is measured.
WORKERS_RECOVERY_WATCH_S = 90.0
SESSIONS_USERS = 4
SESSIONS_CLEANUP_GRACE_S = 5.0
SOAK_USERS = 4
SOAK_DRAIN_S = 60.0
BURST_SIZE = 8
PATTERNS_LONG_FILES = 3
PATTERNS_SHORT_FILES = 20
# Locust's --run-time for a profile is its own expected length plus this margin; the profile stops Locust earlier.
RUN_TIME_MARGIN_S = 120.0


@dataclass(frozen=True)
class LocustPlan:
    """Locust's user count (``None`` when a load shape sets it) and the profile's environment variables."""

    users: int | None
    env: dict[str, str]


def resolve(settings: RunSettings) -> RunSettings:
    """Fill in the profile's defaults for every setting left at ``None``."""
    users = settings.users
    pause_s = settings.pause_s
    workers = settings.workers
    max_queue = settings.max_queue

    if settings.profile == "memory":
        if users is None:
            users = OVERLAPPING_USERS if settings.variant == "overlapping" else 1
        if pause_s is None:
            pause_s = 0.0 if settings.variant == "overlapping" else 0.5
    elif settings.profile == "workers":
        users = users or WORKERS_USERS
        workers = workers or WORKERS_POOL
        max_queue = WORKERS_QUEUE if max_queue is None else max_queue
    elif settings.profile == "sessions":
        users = users or SESSIONS_USERS
    elif settings.profile == "soak":
        users = users or SOAK_USERS
    elif settings.profile == "patterns":
        users = 1
    if pause_s is None:
        pause_s = 0.3 if settings.profile == "patterns" else 0.5

    resolved = replace(settings, users=users, pause_s=pause_s, workers=workers, max_queue=max_queue)
    if settings.timeout_s is None:
        resolved = replace(resolved, timeout_s=expected_run_time_s(resolved) + RUN_TIME_MARGIN_S)
    return resolved


def expected_run_time_s(settings: RunSettings) -> float:
    """Estimate how long the profile's load phase lasts, before Locust's --run-time margin."""
    if settings.profile == "workers":
        return settings.load_s + WORKERS_CLIENT_TIMEOUT_S + WORKERS_RECOVERY_WATCH_S
    if settings.profile == "sessions":
        return settings.sessions * 3.0 + settings.session_ttl_s + settings.sweep_interval_s + SESSIONS_CLEANUP_GRACE_S
    if settings.profile == "soak":
        # The profile leaves a late schedule half its length again (see profiles/soak.py).
        return settings.soak_minutes * 60.0 / settings.compress * 1.5 + SOAK_DRAIN_S
    if settings.profile == "patterns":
        return 300.0
    return 480.0


def gateway_args(settings: RunSettings) -> list[str]:
    """Flags that a gateway started by the runner gets for this profile (after the common ones)."""
    args: list[str] = []
    if settings.workers is not None:
        args += ["--workers", str(settings.workers)]
    if settings.max_queue is not None:
        args += ["--max-queue", str(settings.max_queue)]
    if settings.profile == "sessions":
        args += ["--session-ttl-s", f"{settings.session_ttl_s:g}", "--sweep-interval-s", f"{settings.sweep_interval_s:g}"]
    if settings.tracemalloc_frames:
        args += ["--tracemalloc-frames", str(settings.tracemalloc_frames), "--tracemalloc-start", settings.tracemalloc_start]
    return args


def samples_after_requests(settings: RunSettings) -> bool:
    """Return whether the sampler also samples right after each request.

    The per-request RSS series of the memory and patterns profiles need a
    sample within a pause of each request. The other profiles are judged over
    time, where 1 s samples suffice, and a soak's 6 requests per second would
    otherwise add 6 process-tree reads per second.
    """
    return settings.profile in ("memory", "patterns")


def media_needs(settings: RunSettings) -> tuple[bool, bool]:
    """Return whether the profile sends the long audio files and the files of varying length."""
    return settings.profile in ("workers", "patterns"), settings.profile == "patterns"


def locust_plan(settings: RunSettings, identities: list[str], status: dict, media_dir: Path) -> LocustPlan:
    """Build Locust's user count and the profile's ``SOAK_*`` variables.

    ``identities`` are the model identities the run may use, ``status`` the
    gateway's ``GET /v1/status`` at readiness.
    """
    cached = list(status.get("cached_identities") or [])
    env = {"SOAK_PAUSE_S": f"{settings.pause_s:g}"}
    users: int | None = settings.users

    if settings.profile == "memory":
        env.update(SOAK_REQUESTS=str(settings.requests), SOAK_MODELS=",".join(identities), SOAK_AUDIO_URL="speech.wav")
    elif settings.profile == "workers":
        env.update(
            SOAK_AUDIO_URL=long_name(60),
            SOAK_LOAD_S=f"{settings.load_s:g}",
            SOAK_SATURATE_AFTER_S=f"{min(WORKERS_SATURATE_AFTER_S, settings.load_s / 2):g}",
            SOAK_CLIENT_TIMEOUT_S=f"{WORKERS_CLIENT_TIMEOUT_S:g}",
            SOAK_RECOVERY_WATCH_S=f"{WORKERS_RECOVERY_WATCH_S:g}",
        )
    elif settings.profile == "sessions":
        env.update(
            SOAK_SESSIONS=str(settings.sessions),
            SOAK_AUDIO_PATH=str(media_dir / "speech.wav"),
            SOAK_SESSION_TTL_S=f"{settings.session_ttl_s:g}",
            SOAK_SWEEP_INTERVAL_S=f"{settings.sweep_interval_s:g}",
            SOAK_CLEANUP_GRACE_S=f"{SESSIONS_CLEANUP_GRACE_S:g}",
        )
    elif settings.profile == "soak":
        env.update(
            SOAK_DURATION_MIN=f"{settings.soak_minutes:g}",
            SOAK_REQUESTS_PER_MIN=f"{settings.requests_per_min:g}",
            SOAK_COMPRESS=f"{settings.compress:g}",
            SOAK_USERS=str(settings.users),
            SOAK_AUDIO_URL="speech.wav",
            SOAK_DRAIN_S=f"{SOAK_DRAIN_S:g}",
        )
        # The load shape sets the user count.
        users = None
    elif settings.profile == "patterns":
        env.update(
            SOAK_BURST_MODEL=burst_identity(identities, cached),
            SOAK_BURST_SIZE=str(burst_size(status)),
            SOAK_VARYING_AUDIO_URLS=",".join(varying_order()),
            SOAK_LONG_AUDIO_URL=long_name(120),
            SOAK_LONG_FILES=str(PATTERNS_LONG_FILES),
            SOAK_SHORT_AUDIO_URL="speech.wav",
            SOAK_SHORT_FILES=str(PATTERNS_SHORT_FILES),
        )
    return LocustPlan(users=users, env=env)


def burst_size(status: dict) -> int:
    """Size the burst of first requests to what the gateway admits at once, at most ``BURST_SIZE``.

    More simultaneous requests than workers plus queue places would get 503
    and prove nothing about single-flight loading. A queue limit of 0 (the
    leaky pool has no admission control) admits everything.
    """
    workers_max = status.get("workers_max")
    queue_limit = status.get("queue_limit")
    if not workers_max or not queue_limit:
        return BURST_SIZE
    return max(2, min(BURST_SIZE, int(workers_max) + int(queue_limit)))


def varying_order() -> list[str]:
    """Return the varying-length files in the order the patterns profile sends them: the longest first, then mixed.

    RSS after a request rises with the longest audio decoded so far (the
    allocator's high-water mark), which is not a leak. Sending the longest
    file first sets that mark at the start, where the leak verdict's warm-up
    cut removes it, so what grows later grows per new input shape. The other
    29 follow in steps of 7 through the list sorted by length (7 and 29
    share no factor), so their lengths go up and down.
    """
    names = varying_names()
    longest, others = names[-1], names[:-1]
    return [longest] + [others[(position * 7) % len(others)] for position in range(len(others))]


def burst_identity(identities: list[str], cached: list[str]) -> str:
    """Pick the model identity for the burst of first requests: the last one the gateway has not loaded.

    The other phases use the default model, so nothing else loads it. An
    empty string (the default model, already loaded) means the burst cannot
    show duplicate loads, and the judgement reports it as INCONCLUSIVE.
    """
    uncached = [identity for identity in identities if identity not in cached]
    return uncached[-1] if uncached else ""


def planned_requests(settings: RunSettings) -> int:
    """Requests (or sessions) the profile plans, as the report counts them; 0 where the load is time-based.

    For patterns this assumes a full burst of ``BURST_SIZE``.
    """
    if settings.profile == "memory":
        return settings.requests
    if settings.profile == "sessions":
        return settings.sessions
    if settings.profile == "soak":
        return round(settings.soak_minutes * settings.requests_per_min)
    if settings.profile == "patterns":
        return BURST_SIZE + len(varying_names()) + PATTERNS_LONG_FILES + PATTERNS_SHORT_FILES
    return 0
