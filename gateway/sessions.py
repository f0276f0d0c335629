"""Streaming sessions: buffered PCM audio with an idle TTL, a sweeper and limits.

A session expires ``ttl_s`` after its last activity (open, chunk). The sweeper
runs every ``sweep_interval_s`` as an asyncio task owned by the app's
lifespan. Every access happens on the event loop, so the store needs no lock.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from gateway.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from gateway.errors import GatewayError, InvalidRequestError, NotFoundError, PayloadTooLargeError

logger = logging.getLogger(__name__)

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")


class TooManySessionsError(GatewayError):
    code = "too_many_sessions"
    http_status = 429


class SessionExistsError(GatewayError):
    code = "session_exists"
    http_status = 409


@dataclass
class Session:
    session_id: str
    sample_rate: int
    model: str | None
    created_s: float = field(default_factory=time.monotonic)
    last_active_s: float = field(default_factory=time.monotonic)
    buffer: bytearray = field(default_factory=bytearray)


@dataclass
class ClosedSession:
    session_id: str
    sample_rate: int
    model: str | None
    audio: bytes


def validate_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.fullmatch(session_id):
        shown = session_id[:40] + "..." if isinstance(session_id, str) and len(session_id) > 40 else session_id
        raise InvalidRequestError(
            f"session_id {shown!r} is invalid; use 1 to 128 characters of letters, digits, '.', '_' or '-'",
            code="invalid_session_id",
        )
    return session_id


def validate_sample_rate(sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidRequestError(
            f"sample_rate {sample_rate!r} is invalid; use an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz",
            code="invalid_sample_rate",
        )
    return sample_rate


def new_session_id() -> str:
    return secrets.token_hex(12)


class SessionStoreProtocol(Protocol):
    """Interface of a session store, fixed or leaky."""

    def open(self, session_id: str | None, sample_rate: int, model: str | None) -> Session: ...

    def append(self, session_id: str, chunk: bytes) -> int: ...

    def close(self, session_id: str) -> ClosedSession: ...

    def delete(self, session_id: str) -> None: ...

    def has(self, session_id: str) -> bool: ...

    def abandon(self, session_id: str) -> bool: ...

    def stats(self) -> dict[str, int]: ...

    def describe(self) -> list[dict]: ...

    def start(self) -> None: ...

    async def stop(self) -> int: ...


class SessionStore:
    def __init__(self, ttl_s: float, sweep_interval_s: float, max_sessions: int, max_session_bytes: int):
        self._ttl_s = ttl_s
        self._sweep_interval_s = sweep_interval_s
        self._max_sessions = max_sessions
        self._max_session_bytes = max_session_bytes
        self._sessions: dict[str, Session] = {}
        self._sweeper: asyncio.Task | None = None
        self.expired_total = 0

    def open(self, session_id: str | None, sample_rate: int, model: str | None) -> Session:
        session_id = new_session_id() if session_id is None else validate_session_id(session_id)
        validate_sample_rate(sample_rate)
        if session_id in self._sessions:
            raise SessionExistsError(f"session {session_id!r} is already open; close it or use another session_id")
        if len(self._sessions) >= self._max_sessions:
            raise TooManySessionsError(
                f"{len(self._sessions)} sessions are open, the limit is {self._max_sessions}; "
                "close finished sessions or raise --max-sessions"
            )
        session = Session(session_id, sample_rate, model)
        self._sessions[session_id] = session
        logger.debug("Session %s opened", session_id)
        return session

    def _get(self, session_id: str) -> Session:
        session = self._sessions.get(validate_session_id(session_id))
        if session is None:
            raise NotFoundError(
                f"session {session_id!r} not found; it was closed, expired after {self._ttl_s:g} s idle, "
                "or never opened",
                code="session_not_found",
            )
        return session

    def append(self, session_id: str, chunk: bytes) -> int:
        session = self._get(session_id)
        if len(chunk) % 2:
            raise InvalidRequestError(
                f"chunk has {len(chunk)} bytes; PCM16 chunks must have an even byte count", code="invalid_chunk"
            )
        if len(session.buffer) + len(chunk) > self._max_session_bytes:
            raise PayloadTooLargeError(
                f"session {session_id!r} would buffer {len(session.buffer) + len(chunk)} bytes, over the limit "
                f"of {self._max_session_bytes}; close the session to transcribe what it has",
                code="session_too_large",
            )
        session.buffer += chunk
        session.last_active_s = time.monotonic()
        return len(session.buffer)

    def close(self, session_id: str) -> ClosedSession:
        session = self._get(session_id)
        del self._sessions[session.session_id]
        audio = bytes(session.buffer)
        session.buffer = bytearray()
        return ClosedSession(session.session_id, session.sample_rate, session.model, audio)

    def delete(self, session_id: str) -> None:
        session = self._get(session_id)
        del self._sessions[session.session_id]

    def has(self, session_id: str) -> bool:
        return session_id in self._sessions

    def abandon(self, session_id: str) -> bool:
        """Release a session whose streaming client went away; return whether one was released."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        logger.info("Session %s released after its client disconnected (%d bytes)", session_id, len(session.buffer))
        return True

    def sweep(self, now_s: float | None = None) -> int:
        """Drop sessions idle for longer than the TTL; return how many were dropped."""
        now_s = time.monotonic() if now_s is None else now_s
        expired = [sid for sid, s in self._sessions.items() if now_s - s.last_active_s > self._ttl_s]
        for session_id in expired:
            session = self._sessions.pop(session_id)
            logger.info(
                "Session %s expired after %.0f s idle; dropped %d buffered bytes",
                session_id, now_s - session.last_active_s, len(session.buffer),
            )
        self.expired_total += len(expired)
        return len(expired)

    def stats(self) -> dict[str, int]:
        return {
            "sessions_open": len(self._sessions),
            "sessions_buffered_bytes": sum(len(s.buffer) for s in self._sessions.values()),
            "sessions_expired_total": self.expired_total,
        }

    def describe(self) -> list[dict]:
        now = time.monotonic()
        return [
            {
                "session_id": s.session_id,
                "age_s": round(now - s.created_s, 3),
                "idle_s": round(now - s.last_active_s, 3),
                "buffered_bytes": len(s.buffer),
                "sample_rate": s.sample_rate,
            }
            for s in self._sessions.values()
        ]

    def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="session-sweeper")
            logger.info("Session sweeper started: TTL %g s, every %g s", self._ttl_s, self._sweep_interval_s)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval_s)
            try:
                self.sweep()
            except Exception:
                logger.exception("Session sweep failed; retrying in %g s", self._sweep_interval_s)

    async def stop(self) -> int:
        """Stop the sweeper and drop every session; return how many were dropped."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except asyncio.CancelledError:
                pass
            self._sweeper = None
            logger.info("Session sweeper stopped")
        dropped = len(self._sessions)
        self._sessions.clear()
        return dropped
