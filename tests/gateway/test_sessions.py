"""Unit tests of the fixed session store (TTL, sweep, limits) and the leaky one."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from gateway.leaky.sessions import LeakySessionStore, _BUFFERS, _SESSIONS
from gateway.sessions import SessionExistsError, SessionStore, TooManySessionsError


def store(**overrides) -> SessionStore:
    options = {"ttl_s": 10.0, "sweep_interval_s": 1.0, "max_sessions": 3, "max_session_bytes": 8}
    options.update(overrides)
    return SessionStore(**options)


def test_sweep_drops_idle_sessions_only():
    sessions = store()
    sessions.open("idle", 16000, None)
    sessions.open("active", 16000, None)
    sessions.append("idle", b"\x00\x00")
    now = time.monotonic()
    sessions._sessions["idle"].last_active_s = now - 11
    sessions._sessions["active"].last_active_s = now - 9

    assert sessions.sweep(now) == 1

    assert [row["session_id"] for row in sessions.describe()] == ["active"]
    assert sessions.stats()["sessions_buffered_bytes"] == 0
    assert sessions.stats()["sessions_expired_total"] == 1


def test_chunk_refreshes_idle_time():
    sessions = store()
    sessions.open("s", 16000, None)
    sessions._sessions["s"].last_active_s = time.monotonic() - 11

    sessions.append("s", b"\x01\x00")

    assert sessions.sweep() == 0


def test_store_enforces_limits():
    sessions = store()
    for name in ("a", "b", "c"):
        sessions.open(name, 16000, None)

    with pytest.raises(TooManySessionsError, match="limit is 3"):
        sessions.open("d", 16000, None)
    with pytest.raises(PayloadTooLargeError, match="limit of 8"):
        sessions.append("a", b"\x00" * 10)
    with pytest.raises(SessionExistsError):
        sessions.open("a", 16000, None)
    with pytest.raises(InvalidRequestError, match="even byte count"):
        sessions.append("a", b"\x00")


@pytest.mark.parametrize("session_id", ["", "a" * 129, "../etc", "a b", "ü", "a/b", "\x00"])
def test_store_rejects_invalid_session_ids(session_id):
    with pytest.raises(InvalidRequestError, match="session_id"):
        store().open(session_id, 16000, None)


@pytest.mark.parametrize("sample_rate", [0, -1, 7999, 192001, True, 16000.5])
def test_store_rejects_invalid_sample_rates(sample_rate):
    with pytest.raises(InvalidRequestError, match="sample_rate"):
        store().open("s", sample_rate, None)


def test_close_returns_audio_and_forgets_session():
    sessions = store()
    sessions.open("s", 8000, None)
    sessions.append("s", b"\x01\x00\x02\x00")

    closed = sessions.close("s")

    assert closed.audio == b"\x01\x00\x02\x00"
    assert closed.sample_rate == 8000
    with pytest.raises(NotFoundError):
        sessions.close("s")


def test_sweeper_runs_in_background_and_stops():
    async def scenario():
        sessions = store(ttl_s=0.01, sweep_interval_s=0.01)
        sessions.open("s", 16000, None)
        sessions.start()
        for _ in range(1000):
            if sessions.stats()["sessions_open"] == 0:
                break
            await asyncio.sleep(0.01)
        assert sessions.stats()["sessions_open"] == 0
        await sessions.stop()
        await sessions.stop()
        assert sessions._sweeper is None

    asyncio.run(scenario())


def test_leaky_store_never_sweeps():
    _BUFFERS.clear()
    _SESSIONS.clear()
    sessions = LeakySessionStore(ttl_s=0.01, sweep_interval_s=0.01, max_sessions=1, max_session_bytes=1)
    try:
        for name in ("a", "b"):
            sessions.open(name, 16000, None)
            sessions.append(name, b"\x00" * 100)

        assert sessions.sweep(time.monotonic() + 3600) == 0
        assert sessions.stats()["sessions_buffered_bytes"] == 200
    finally:
        _BUFFERS.clear()
        _SESSIONS.clear()
