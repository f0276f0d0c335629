"""Load: 400 concurrent connections at the transcription endpoint of a loopback gateway.

Past ``workers + max queue`` admitted tasks, every request must get 503 with
Retry-After at once, while the workers are still busy. Every admitted request
must finish within its task timeout (no 504). Afterwards the gateway must be
at rest, with RSS within the margin that ``assert_at_rest`` states.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass

import pytest

from tests.reliability.conftest import assert_at_rest, rss_baseline, wait_until

CONNECTIONS = 400
WORKERS = 2
MAX_QUEUE = 8
REQUEST_TIMEOUT_S = 180.0


@dataclass
class Answer:
    status: int
    retry_after: str | None


def request_bytes() -> bytes:
    body = json.dumps({"audio_url": "speech.wav"}).encode()
    return (
        "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def one_request(port: int, payload: bytes) -> Answer:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        await reader.read()
    finally:
        writer.close()
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:] if line)}
    return Answer(int(lines[0].split(" ")[1]), headers.get("retry-after"))


async def burst(port: int, connections: int) -> list[Answer | BaseException]:
    payload = request_bytes()
    calls = [asyncio.wait_for(one_request(port, payload), REQUEST_TIMEOUT_S) for _ in range(connections)]
    return await asyncio.gather(*calls, return_exceptions=True)


def statuses(answers: list) -> Counter:
    return Counter(answer.status if isinstance(answer, Answer) else type(answer).__name__ for answer in answers)


def test_400_connections_rejected_fast_past_queue(start_gateway, tmp_path):
    failpoints = tmp_path / "failpoints"
    failpoints.mkdir()
    server = start_gateway(
        "--workers", str(WORKERS), "--max-queue", str(MAX_QUEUE), "--task-timeout-s", "120",
        env={"GATEWAY_FAILPOINTS_DIR": str(failpoints)},
    )
    baseline = rss_baseline(server)
    (failpoints / "hold").touch()

    async def scenario():
        requests = asyncio.ensure_future(burst(server.port, CONNECTIONS))
        # Every rejection must arrive while both workers are still held: none waits for a worker.
        await asyncio.to_thread(
            wait_until,
            lambda: server.status()["requests_rejected_total"] == CONNECTIONS - WORKERS - MAX_QUEUE,
            120, "every request past the queue rejected",
        )
        held = server.status()
        (failpoints / "hold").unlink()
        return held, await requests

    held, answers = asyncio.run(scenario())

    counts = statuses(answers)
    assert counts == {503: CONNECTIONS - WORKERS - MAX_QUEUE, 200: WORKERS + MAX_QUEUE}, counts
    assert held["workers_active"] == WORKERS
    assert held["queue_depth"] == MAX_QUEUE
    assert held["requests_completed_total"] == 1
    assert all(answer.retry_after and int(answer.retry_after) >= 1 for answer in answers if answer.status == 503)
    status = assert_at_rest(server, baseline, f"{CONNECTIONS} concurrent connections, workers held", statuses=dict(counts))
    assert status["requests_timed_out_total"] == 0
    assert server.transcribe(audio_url="speech.wav").status_code == 200


@pytest.mark.soak
def test_400_connections_repeated_with_real_inference(start_gateway):
    server = start_gateway("--workers", str(WORKERS), "--max-queue", str(MAX_QUEUE), "--task-timeout-s", "120")
    baseline = rss_baseline(server)
    totals: Counter = Counter()

    for round_index in range(5):
        answers = asyncio.run(burst(server.port, CONNECTIONS))
        counts = statuses(answers)
        totals.update(counts)

        assert set(counts) <= {200, 503}, counts
        assert counts[200] >= WORKERS + MAX_QUEUE, counts
        assert_at_rest(server, baseline, f"{CONNECTIONS} concurrent connections, real inference, round {round_index + 1}",
                       statuses=dict(counts))

    assert server.status()["requests_timed_out_total"] == 0
    assert totals[200] + totals[503] == 5 * CONNECTIONS
