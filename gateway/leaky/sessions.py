"""Leak 3: session audio buffers that only an explicit close releases.

Chunks are appended to a module-level dict keyed by session id. There is no
idle TTL and no sweeper, so sessions whose clients timed out or disconnected
keep every raw chunk for the life of the process.
"""

from __future__ import annotations

import time

from gateway.errors import NotFoundError
from gateway.sessions import ClosedSession, Session, new_session_id, validate_sample_rate, validate_session_id

# The leaking containers: session id -> raw chunks, and session id -> metadata.
_BUFFERS: dict[str, list[bytes]] = {}
_SESSIONS: dict[str, Session] = {}


class LeakySessionStore:
    def __init__(self, ttl_s: float, sweep_interval_s: float, max_sessions: int, max_session_bytes: int):
        self.expired_total = 0

    def open(self, session_id: str | None, sample_rate: int, model: str | None) -> Session:
        session_id = new_session_id() if session_id is None else validate_session_id(session_id)
        validate_sample_rate(sample_rate)
        session = Session(session_id, sample_rate, model)
        _SESSIONS[session_id] = session
        _BUFFERS.setdefault(session_id, [])
        return session

    def _require(self, session_id: str) -> Session:
        session = _SESSIONS.get(validate_session_id(session_id))
        if session is None:
            raise NotFoundError(f"session {session_id!r} not found", code="session_not_found")
        return session

    def append(self, session_id: str, chunk: bytes) -> int:
        session = self._require(session_id)
        _BUFFERS[session_id].append(chunk)
        session.last_active_s = time.monotonic()
        return sum(len(c) for c in _BUFFERS[session_id])

    def close(self, session_id: str) -> ClosedSession:
        session = self._require(session_id)
        audio = b"".join(_BUFFERS.pop(session_id, []))
        del _SESSIONS[session_id]
        return ClosedSession(session.session_id, session.sample_rate, session.model, audio)

    def delete(self, session_id: str) -> None:
        self._require(session_id)
        _BUFFERS.pop(session_id, None)
        del _SESSIONS[session_id]

    def has(self, session_id: str) -> bool:
        return session_id in _SESSIONS

    def abandon(self, session_id: str) -> bool:
        # The leak: a client that goes away without closing keeps its chunks.
        return False

    def sweep(self, now_s: float | None = None) -> int:
        return 0

    def stats(self) -> dict[str, int]:
        return {
            "sessions_open": len(_SESSIONS),
            "sessions_buffered_bytes": sum(len(c) for chunks in _BUFFERS.values() for c in chunks),
            "sessions_expired_total": 0,
        }

    def describe(self) -> list[dict]:
        now = time.monotonic()
        return [
            {
                "session_id": sid,
                "age_s": round(now - s.created_s, 3),
                "idle_s": round(now - s.last_active_s, 3),
                "buffered_bytes": sum(len(c) for c in _BUFFERS.get(sid, [])),
                "sample_rate": s.sample_rate,
            }
            for sid, s in _SESSIONS.items()
        ]

    def start(self) -> None:
        return None

    async def stop(self) -> int:
        return 0
