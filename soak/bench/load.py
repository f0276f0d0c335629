"""Bounded HTTP load for the benchmarks: closed-loop transcription batches and a status poller.

Every request goes to a loopback server the bench started, with a timeout;
every loop is bounded by a request count and a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from soak.bench.context import FUNASR_SERVER_MODEL, BenchError, BenchServer

REQUEST_TIMEOUT_S = 120.0
STATUS_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Batch:
    """The outcome of one closed-loop batch: per-request latencies and the batch's wall time."""

    latencies_s: list[float]
    wall_s: float

    @property
    def throughput_per_s(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0


def transcription_form(server: BenchServer, model: str, prompt: str | None) -> dict[str, str]:
    """Return the multipart form fields of one OpenAI-style transcription request.

    funasr-server serves its one model as ``custom`` and has no hotwords, so
    it gets that name and ignores ``prompt``.
    """
    fields = {"model": model if server.kind == "gateway" else FUNASR_SERVER_MODEL, "response_format": "json"}
    if prompt:
        fields["prompt"] = prompt
    return fields


def transcribe(client: httpx.Client, server: BenchServer, audio: bytes, model: str, prompt: str | None = None) -> float:
    """POST one transcription; return its latency in seconds; raise BenchError unless the server returns 200."""
    started = time.perf_counter()
    try:
        response = client.post(
            server.url + "/v1/audio/transcriptions",
            files={"file": ("speech.wav", audio, "audio/wav")},
            data=transcription_form(server, model, prompt),
            timeout=REQUEST_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise BenchError(f"transcription request to {server.name} ({server.url}) failed: {exc!r}") from None
    latency_s = time.perf_counter() - started
    if response.status_code != 200:
        raise BenchError(
            f"{server.name} returned {response.status_code} for a transcription: {response.text[:300]}; "
            f"see {server.process.log_path}"
        )
    return latency_s


def closed_loop(
    server: BenchServer,
    audio: bytes,
    *,
    concurrency: int,
    requests: int,
    model_for: Callable[[int], str],
    prompt_for: Callable[[int], str | None] = lambda index: None,
) -> Batch:
    """Send ``requests`` transcriptions from ``concurrency`` clients, each sending its next one as soon as one returns."""
    if concurrency < 1 or requests < 1:
        raise BenchError(f"a batch needs at least 1 client and 1 request, got {concurrency} and {requests}")
    next_index = iter(range(requests))
    index_lock = threading.Lock()
    latencies_s: list[float] = []

    def client_loop() -> None:
        with httpx.Client() as client:
            while True:
                with index_lock:
                    index = next(next_index, None)
                if index is None:
                    return
                latency_s = transcribe(client, server, audio, model_for(index), prompt_for(index))
                with index_lock:
                    latencies_s.append(latency_s)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client") as clients:
        futures = [clients.submit(client_loop) for _ in range(concurrency)]
        for future in futures:
            future.result()
    return Batch(latencies_s, time.perf_counter() - started)


class StatusPoller:
    """Read the server's status (gateway) or health (funasr-server) route at a fixed interval in a thread."""

    def __init__(self, server: BenchServer, interval_s: float, max_duration_s: float):
        self.server = server
        self.interval_s = interval_s
        self.max_duration_s = max_duration_s
        self.latencies_s: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-status", daemon=True)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=STATUS_TIMEOUT_S + 5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        with httpx.Client(timeout=STATUS_TIMEOUT_S) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.get(self.server.url + self.server.status_path)
                    if response.status_code == 200:
                        self.latencies_s.append(time.perf_counter() - started)
                    else:
                        self.failures.append(f"status {response.status_code}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(max(0.0, self.interval_s - (time.perf_counter() - started)))
