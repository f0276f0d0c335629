"""RSS after the memory profile's and the compressed soak's request sequences: gateway fixed, gateway leaky, funasr-server.

funasr-server speaks neither the soak profiles' ``/v1/responses`` requests
nor the gateway's status routes, so the bench replays each profile's
request sequence itself, the same way against all three servers, with
OpenAI-style uploads:

- memory: sequential requests, each with new hotwords (``prompt``), cycling
  through the model and its prepared copies, more identities than the
  gateway's cache bound (funasr-server serves one model, so it gets that
  one every time);
- compressed soak: then, on the same process, concurrent users sending
  requests as fast as they return, cycling three fixed hotword lists, the
  way the soak profile runs with no pause between due times.

Each round starts each server afresh, in an order that alternates.
"""

from __future__ import annotations

import logging
import time

from soak.bench.context import BenchContext, BenchServer, funasr_server, gateway_server, running
from soak.bench.figures import Figure, Section, percentile
from soak.bench.load import StatusPoller, closed_loop
from soak.bench.throughput import STATUS_INTERVAL_S

logger = logging.getLogger(__name__)

MEMORY_REQUESTS = 15
SOAK_REQUESTS = 40
SOAK_USERS = 4
CACHE_MAX_MODELS = 3
SETTLE_S = 1.0
# The soak profile's three fixed hotword lists, as regular clients would send them.
SOAK_PROMPTS = ("", "alpha beta", "gamma delta epsilon")
MIB = 1024 * 1024

TARGETS = ("gateway fixed", "gateway leaky", "funasr-server")


def run(context: BenchContext) -> list[Section]:
    """Replay both sequences against each server for every round; return the "memory" section."""
    names = context.model_copies()
    audio = context.audio_path.read_bytes()
    readings: dict[str, list[dict[str, float]]] = {target: [] for target in TARGETS}

    for round_index in range(context.rounds):
        order = TARGETS if round_index % 2 == 0 else tuple(reversed(TARGETS))
        for target in order:
            server = _server(context, target, round_index)
            with running(server):
                readings[target].append(_replay(server, audio, names))
        logger.info("Memory round %d of %d done.", round_index + 1, context.rounds)

    return [_section(context, names, readings)]


def _server(context: BenchContext, target: str, round_index: int) -> BenchServer:
    name = f"{target.replace(' ', '-')}-memory-{round_index + 1}"
    if target == "funasr-server":
        return funasr_server(context, name)
    leaks = "all" if target == "gateway leaky" else "none"
    return gateway_server(context, name, leaks=leaks, extra_args=("--cache-max-models", str(CACHE_MAX_MODELS)))


def _replay(server: BenchServer, audio: bytes, names: list[str]) -> dict[str, float]:
    """Send one warm-up, the memory sequence, then the soak sequence; read RSS after each step."""
    closed_loop(server, audio, concurrency=1, requests=1, model_for=lambda index: names[0])
    time.sleep(SETTLE_S)
    reading = {"warm_bytes": float(server.rss_bytes())}

    started = time.perf_counter()
    with StatusPoller(server, STATUS_INTERVAL_S, max_duration_s=600.0) as poller:
        closed_loop(
            server, audio, concurrency=1, requests=MEMORY_REQUESTS,
            model_for=lambda index: names[index % len(names)], prompt_for=lambda index: f"hot{index}",
        )
    reading["memory_s"] = time.perf_counter() - started
    reading["status_p99_s"] = percentile(poller.latencies_s, 0.99)
    reading["status_max_s"] = max(poller.latencies_s, default=float("nan"))
    time.sleep(SETTLE_S)
    reading["after_memory_bytes"] = float(server.rss_bytes())

    started = time.perf_counter()
    closed_loop(
        server, audio, concurrency=SOAK_USERS, requests=SOAK_REQUESTS,
        model_for=lambda index: names[0], prompt_for=lambda index: SOAK_PROMPTS[index % len(SOAK_PROMPTS)],
    )
    reading["soak_s"] = time.perf_counter() - started
    time.sleep(SETTLE_S)
    reading["after_soak_bytes"] = float(server.rss_bytes())
    return reading


def _section(context: BenchContext, names: list[str], readings: dict[str, list[dict[str, float]]]) -> Section:
    def values(target: str, key: str) -> list[float]:
        return [reading[key] / MIB for reading in readings[target]]

    def growth(target: str, key: str) -> list[float]:
        return [(reading[key] - reading["warm_bytes"]) / MIB for reading in readings[target]]

    figures = []
    for key, step in (("after_memory_bytes", "after the memory sequence"), ("after_soak_bytes", "after the compressed soak")):
        reference = values("gateway fixed", key)
        for target in TARGETS:
            figures.append(Figure(
                f"{target}: RSS {step}", "MiB", values(target, key),
                "" if target == "gateway fixed" else "gateway fixed", [] if target == "gateway fixed" else reference,
                better="lower",
            ))
        for target in TARGETS:
            figures.append(Figure(f"{target}: growth since warm-up, {step}", "MiB", growth(target, key), better="lower"))
    for target in TARGETS:
        figures.append(Figure(f"{target}: RSS after warm-up", "MiB", values(target, "warm_bytes"), better="lower"))
    for target in TARGETS:
        route = "GET /health" if target == "funasr-server" else "GET /v1/status"
        for key, name in (("status_p99_s", "p99"), ("status_max_s", "max")):
            figures.append(Figure(
                f"{target}: {route} during the memory sequence, {name}", "s", [reading[key] for reading in readings[target]], better="lower",
            ))

    section = Section(
        key="memory",
        title="RSS after the memory profile and after a compressed soak",
        method=(
            f"Per round and server, a fresh process gets one warm-up request, then the memory sequence "
            f"({MEMORY_REQUESTS} sequential requests with new hotwords each, cycling {len(names)} model identities: "
            f"{', '.join(names)}; the gateway's cache bound is {CACHE_MAX_MODELS}), then the compressed soak sequence "
            f"({SOAK_REQUESTS} requests from {SOAK_USERS} users, three fixed hotword lists, the default model) on the same "
            f"process. RSS is the process tree's, read {SETTLE_S:.0f} s after each step. During the memory sequence the "
            f"status route is read every {STATUS_INTERVAL_S * 1000:.0f} ms: there the gateway loads and evicts models. The leaky gateway runs "
            "`--leaks all`. funasr-server serves one model and ignores hotwords, so every request of its sequences uses "
            "that model: it measures the server's own retention, not a cache. Ratios are against the fixed gateway of the "
            "same round."
        ),
        commands=[
            f"gateway serve --model {context.model} --cache-max-models {CACHE_MAX_MODELS} --workers 2 --leaks none",
            f"gateway serve --model {context.model} --cache-max-models {CACHE_MAX_MODELS} --workers 2 --leaks all",
            f"python -m funasr.bin.server --host 127.0.0.1 --device cpu --model-path {context.model_path}",
        ],
        figures=figures,
        raw=readings,
    )
    fixed = section.figure("gateway fixed: RSS after the compressed soak")
    leaky = section.figure("gateway leaky: RSS after the compressed soak")
    funasr = section.figure("funasr-server: RSS after the compressed soak")
    fixed_growth = section.figure("gateway fixed: growth since warm-up, after the compressed soak")
    leaky_growth = section.figure("gateway leaky: growth since warm-up, after the compressed soak")
    section.findings.append(
        f"After both sequences the leaky gateway uses {leaky.ratio_median:.1f} times the fixed gateway's RSS "
        f"({leaky.median:.0f} against {fixed.median:.0f} MiB); it grew {leaky_growth.median:.0f} MiB since warm-up, "
        f"the fixed one {fixed_growth.median:.0f} MiB."
    )
    loads_p99 = section.figure("gateway fixed: GET /v1/status during the memory sequence, p99")
    section.findings.append(
        f"While the fixed gateway loads and evicts models, GET /v1/status p99 is {loads_p99.median * 1000:.0f} ms "
        f"(median of rounds, {loads_p99.spread[0] * 1000:.0f} to {loads_p99.spread[1] * 1000:.0f} ms)."
    )
    section.findings.append(
        f"funasr-server ends at {funasr.median:.0f} MiB, {funasr.ratio_median:.2f} of the fixed gateway's RSS, "
        "with one model loaded where the gateway keeps up to "
        f"{CACHE_MAX_MODELS}."
    )
    return section
