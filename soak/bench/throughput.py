"""Throughput and latency of the gateway, funasr-server and direct calls; status latency under saturation.

Both servers and the direct worker start once and stay up for all rounds.
In each round every target runs one closed-loop batch at each concurrency,
in an order that alternates from round to round. Both servers get the same
request: an OpenAI-style multipart upload of the same file to
``/v1/audio/transcriptions``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from soak.bench.context import BenchContext, BenchServer, funasr_server, gateway_server, running
from soak.bench.direct import DirectWorker
from soak.bench.figures import Figure, Section, percentile
from soak.bench.load import Batch, StatusPoller, closed_loop

logger = logging.getLogger(__name__)

CONCURRENCIES = (1, 2, 4, 8)
REQUESTS_PER_BATCH = 16
GATEWAY_WORKERS = 2
# Status reads while transcriptions keep every worker busy.
SATURATION_CONCURRENCY = 8
SATURATION_REQUESTS = 32
STATUS_INTERVAL_S = 0.05
STATUS_IDLE_READS = 40
STATUS_P99_TARGET_S = 0.050
THROUGHPUT_RATIO_TARGET = 0.95

TARGETS = ("gateway", "funasr-server", "direct (VAD + Paraformer)", "direct (Paraformer only)")


def run(context: BenchContext) -> list[Section]:
    """Measure throughput, latency and status latency; return the "throughput" and "status" sections."""
    audio = context.audio_path.read_bytes()
    batches: dict[tuple[str, int], list[Batch]] = {(target, c): [] for target in TARGETS for c in CONCURRENCIES}
    status_rounds: dict[str, list[dict[str, list[float]]]] = {"gateway": [], "funasr-server": []}

    with contextlib.ExitStack() as stack:
        gateway = stack.enter_context(running(gateway_server(context, "gateway-throughput", workers=GATEWAY_WORKERS)))
        funasr = stack.enter_context(running(funasr_server(context, "funasr-server-throughput")))
        direct = stack.enter_context(DirectWorker(context))
        senders: dict[str, Callable[[int], Batch]] = {
            "gateway": lambda c: closed_loop(gateway, audio, concurrency=c, requests=REQUESTS_PER_BATCH, model_for=lambda i: context.model),
            "funasr-server": lambda c: closed_loop(funasr, audio, concurrency=c, requests=REQUESTS_PER_BATCH, model_for=lambda i: context.model),
            "direct (VAD + Paraformer)": lambda c: direct.run("vad", c, REQUESTS_PER_BATCH),
            "direct (Paraformer only)": lambda c: direct.run("plain", c, REQUESTS_PER_BATCH),
        }
        # One warm-up batch each, so that first-call costs (lazy imports, allocator growth) stay out of the rounds.
        for send in senders.values():
            send(2)

        for round_index in range(context.rounds):
            order = TARGETS if round_index % 2 == 0 else tuple(reversed(TARGETS))
            for concurrency in CONCURRENCIES:
                for target in order:
                    batches[(target, concurrency)].append(senders[target](concurrency))
            for server in (gateway, funasr) if round_index % 2 == 0 else (funasr, gateway):
                status_rounds[server.kind].append(_status_under_saturation(server, audio, context.model))
            logger.info("Throughput round %d of %d done.", round_index + 1, context.rounds)

    return [_throughput_section(context, batches), _status_section(status_rounds)]


def _status_under_saturation(server: BenchServer, audio: bytes, model: str) -> dict[str, list[float]]:
    """Read status at idle, then while a batch at concurrency 8 keeps the server busy."""
    with StatusPoller(server, STATUS_INTERVAL_S, max_duration_s=STATUS_IDLE_READS * STATUS_INTERVAL_S * 4) as idle:
        time.sleep(STATUS_IDLE_READS * STATUS_INTERVAL_S)
    with StatusPoller(server, STATUS_INTERVAL_S, max_duration_s=600.0) as busy:
        closed_loop(server, audio, concurrency=SATURATION_CONCURRENCY, requests=SATURATION_REQUESTS, model_for=lambda i: model)
    return {"idle_s": idle.latencies_s, "saturated_s": busy.latencies_s, "failures": idle.failures + busy.failures}


def _throughput_section(context: BenchContext, batches: dict[tuple[str, int], list[Batch]]) -> Section:
    figures: list[Figure] = []
    for concurrency in CONCURRENCIES:
        reference = [batch.throughput_per_s for batch in batches[("direct (VAD + Paraformer)", concurrency)]]
        plain_reference = [batch.throughput_per_s for batch in batches[("direct (Paraformer only)", concurrency)]]
        for target in TARGETS:
            rounds = batches[(target, concurrency)]
            own_reference = plain_reference if target == "funasr-server" else reference
            reference_label = "direct (Paraformer only)" if target == "funasr-server" else "direct (VAD + Paraformer)"
            if target.startswith("direct"):
                own_reference, reference_label = [], ""
            figures.append(Figure(
                f"{target}, concurrency {concurrency}: throughput", "requests/s",
                [batch.throughput_per_s for batch in rounds], reference_label, own_reference, better="higher",
            ))
            for name, fraction in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
                figures.append(Figure(
                    f"{target}, concurrency {concurrency}: latency {name}", "s",
                    [percentile(batch.latencies_s, fraction) for batch in rounds], better="lower",
                ))

    section = Section(
        key="throughput",
        title="Throughput and latency: gateway, funasr-server and direct calls",
        method=(
            f"{len(CONCURRENCIES)} concurrency levels ({', '.join(map(str, CONCURRENCIES))}), {REQUESTS_PER_BATCH} requests per batch, "
            f"{context.rounds} rounds; within a round the targets run in turn at each level, in reversed order every other round. "
            f"Clients are threads of the bench process with keep-alive connections, each sending its next request as soon as "
            f"one returns. The gateway runs {GATEWAY_WORKERS} workers with one torch thread each and runs its companion VAD "
            "before the Paraformer; funasr-server serves the same folder through `--model-path`, which runs the Paraformer "
            "alone (no VAD, no punctuation) with AutoModel's default of 4 torch threads (FunASR 1.4.16). So each server is compared with the direct "
            "call of its own pipeline: the gateway with `AutoModel.generate()` on the model built with the VAD, funasr-server "
            "with `AutoModel.generate()` on the model alone, both in one child process with one torch thread and one call at a "
            "time per model, on audio decoded once."
        ),
        commands=[
            f"gateway serve --model {context.model} --workers {GATEWAY_WORKERS} --leaks none",
            f"python -m funasr.bin.server --host 127.0.0.1 --device cpu --model-path {context.model_path}",
            f"python -m soak.bench.direct_worker --model {context.model}",
        ],
        figures=figures,
        raw={
            f"{target}|{concurrency}": [{"latencies_s": batch.latencies_s, "wall_s": batch.wall_s} for batch in rounds]
            for (target, concurrency), rounds in batches.items()
        },
    )
    for concurrency in CONCURRENCIES:
        figure = section.figure(f"gateway, concurrency {concurrency}: throughput")
        verdict = "meets" if figure.ratio_median >= THROUGHPUT_RATIO_TARGET else "is below"
        section.findings.append(
            f"At concurrency {concurrency} the gateway reaches {figure.ratio_median:.2f} of direct calls' throughput "
            f"(median, rounds {figure.ratio_spread[0]:.2f} to {figure.ratio_spread[1]:.2f}), which {verdict} the target of "
            f"{THROUGHPUT_RATIO_TARGET:.2f}."
        )
    return section


def _status_section(status_rounds: dict[str, list[dict[str, list[float]]]]) -> Section:
    figures = []
    for kind, route in (("gateway", "GET /v1/status"), ("funasr-server", "GET /health")):
        rounds = status_rounds[kind]
        idle_p50 = [percentile(reads["idle_s"], 0.5) for reads in rounds]
        for name, fraction in (("p50", 0.50), ("p99", 0.99)):
            figures.append(Figure(
                f"{kind} {route} under saturation: {name}", "s",
                [percentile(reads["saturated_s"], fraction) for reads in rounds],
                f"{kind} {route} at idle: p50", idle_p50, better="lower",
            ))
        figures.append(Figure(f"{kind} {route} under saturation: max", "s", [max(reads["saturated_s"], default=float("nan")) for reads in rounds], better="lower"))
        figures.append(Figure(f"{kind} {route} at idle: p50", "s", idle_p50, better="lower"))

    section = Section(
        key="status",
        title="Status latency while transcriptions saturate the server",
        method=(
            f"Per round and server: {STATUS_IDLE_READS} reads at idle every {STATUS_INTERVAL_S * 1000:.0f} ms, then reads every "
            f"{STATUS_INTERVAL_S * 1000:.0f} ms while {SATURATION_CONCURRENCY} clients send {SATURATION_REQUESTS} transcriptions. "
            "The gateway's route is `/v1/status` (pool, cache, session and memory figures); funasr-server's is `/health`. "
            "Ratios are against the same server's idle median from the same round."
        ),
        figures=figures,
        raw=status_rounds,
    )
    for kind, route in (("gateway", "GET /v1/status"), ("funasr-server", "GET /health")):
        p99 = section.figure(f"{kind} {route} under saturation: p99")
        reads = sum(len(reads["saturated_s"]) for reads in status_rounds[kind])
        failures = sum(len(reads["failures"]) for reads in status_rounds[kind])
        section.findings.append(
            f"{kind}: {route} p99 under saturation is {p99.median * 1000:.1f} ms (median of rounds, "
            f"{p99.spread[0] * 1000:.1f} to {p99.spread[1] * 1000:.1f} ms) over {reads} reads with {failures} failures"
            + (f"; the target is at most {STATUS_P99_TARGET_S * 1000:.0f} ms." if kind == "gateway" else ".")
        )
    return section
