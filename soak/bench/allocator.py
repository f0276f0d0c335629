"""Allocator benchmarks: memory returned after model eviction per allocator, and RSS under oneDNN's primitive cache bound.

Each configuration gets one fork server (:mod:`soak.bench.allocator_worker`)
started under its environment, so allocator variables, ``LD_PRELOAD`` and
oneDNN's cache capacity are in place before torch is imported. Every
measurement then runs in a fresh child forked from that server: one child
per configuration and round, one child at a time, with the order of the
configurations reversed every other round. The servers spare each child the
import of FunASR, which costs several seconds of CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import shlex
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.native import ONEDNN_CACHE_ENV
from gateway.settings import Settings
from soak.allocator import JEMALLOC_PATTERNS, AllocatorError, allocator_env
from soak.bench.children import JsonLineChild
from soak.bench.context import BenchContext, BenchError
from soak.bench.figures import Better, Figure, Section, median

logger = logging.getLogger(__name__)

WORKER_MODULE = "soak.bench.allocator_worker"
MIB = 1024 * 1024
READY_TIMEOUT_S = 180.0
CHILD_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0

# Worker threads that load the models: the gateway's default pool size on a 2-core host. Each thread gets its own glibc arena.
EVICTION_THREADS = 2
# Variables that tune glibc's malloc or replace it. "glibc defaults" runs without them.
ALLOCATOR_VARIABLES = (
    "MALLOC_ARENA_MAX", "MALLOC_CONF", "GLIBC_TUNABLES",
    "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
)
GLIBC = "glibc defaults"
ARENA_MAX_2 = "MALLOC_ARENA_MAX=2"
JEMALLOC = "jemalloc"

ONEDNN_PIECES = 20
PIECE_MIN_S = 1.0
PIECE_MAX_S = 30.0
PIECES_SEED = 20
# oneDNN reads ONEDNN_PRIMITIVE_CACHE_CAPACITY, then DNNL_PRIMITIVE_CACHE_CAPACITY.
ONEDNN_CACHE_VARIABLES = (ONEDNN_CACHE_ENV, "DNNL_PRIMITIVE_CACHE_CAPACITY")
# oneDNN's capacity when neither variable is set: src/common/primitive_cache.cpp calls
# getenv_int_user("PRIMITIVE_CACHE_CAPACITY", 1024), and the developer guide's
# "Primitive Cache" page documents "default 1024" (oneDNN 3.x; torch 2.13.0 bundles v3.12.0).
ONEDNN_DEFAULT_CAPACITY = 1024
ONEDNN_SMALL_CAPACITY = 8
# Prints one line per primitive creation, marked cache_miss or cache_hit. The child counts them.
ONEDNN_VERBOSE = ("ONEDNN_VERBOSE", "profile_create")

Rounds = list[dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class Configuration:
    """An environment a fork server runs under: the variables it sets and those it removes."""

    name: str
    set_env: tuple[tuple[str, str], ...] = ()
    unset_env: tuple[str, ...] = ()

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        env = {name: value for name, value in base.items() if name not in self.unset_env}
        env.update(self.set_env)
        return env

    def command(self, argv: list[str]) -> str:
        """Return ``argv`` as one shell line under this configuration's environment."""
        prefix = ["env", *[part for name in self.unset_env for part in ("-u", name)]]
        prefix += [f"{name}={value}" for name, value in self.set_env]
        return shlex.join([*prefix, *argv])


@dataclass(frozen=True)
class Metric:
    """One configuration's per-round values of a figure, with its unit and preferred direction."""

    unit: str
    better: Better
    values: list[float]


def run(context: BenchContext) -> list[Section]:
    """Measure both allocator sections and return them: "eviction" and "onednn"."""
    return [measure_eviction(context), measure_onednn(context)]


# -- memory returned after eviction --------------------------------------------


def eviction_configurations(base_env: dict[str, str], jemalloc_patterns: tuple[str, ...]) -> tuple[list[Configuration], str]:
    """Return the allocator configurations, and why jemalloc is left out ("" when it is not)."""
    preload = [entry for entry in base_env.get("LD_PRELOAD", "").split(os.pathsep) if entry and "jemalloc" not in entry]
    glibc_preload = (("LD_PRELOAD", os.pathsep.join(preload)),) if preload else ()
    glibc_unset = ALLOCATOR_VARIABLES + (() if preload else ("LD_PRELOAD",))
    configurations = [
        Configuration(GLIBC, glibc_preload, glibc_unset),
        Configuration(ARENA_MAX_2, (*glibc_preload, ("MALLOC_ARENA_MAX", "2")), tuple(name for name in glibc_unset if name != "MALLOC_ARENA_MAX")),
    ]
    try:
        env, _ = allocator_env(JEMALLOC, None, {"LD_PRELOAD": os.pathsep.join(preload)}, jemalloc_patterns=jemalloc_patterns)
    except AllocatorError as error:
        return configurations, str(error)
    configurations.append(Configuration(JEMALLOC, (("LD_PRELOAD", env["LD_PRELOAD"]),), ALLOCATOR_VARIABLES))
    return configurations, ""


def measure_eviction(context: BenchContext, *, jemalloc_patterns: tuple[str, ...] = JEMALLOC_PATTERNS) -> Section:
    """Measure how much of the models' memory each allocator returns after eviction, with and without malloc_trim."""
    started = time.monotonic()
    configurations, jemalloc_skipped = eviction_configurations({**os.environ, **context.extra_env}, jemalloc_patterns)
    if jemalloc_skipped:
        logger.warning("Leaving jemalloc out of the eviction benchmark: %s", jemalloc_skipped)
    names = context.model_copies()
    request = {"measurement": "eviction", "models": names, "threads": EVICTION_THREADS}

    rounds = run_rounds(context, "eviction", configurations, request)
    for results in rounds:
        if JEMALLOC in results and results[JEMALLOC]["jemalloc"] is None:
            raise BenchError(
                f"the eviction child for configuration {JEMALLOC!r} ran without jemalloc although LD_PRELOAD named "
                f"{dict(configurations[-1].set_env)['LD_PRELOAD']}; check that the library loads (ldd, LD_DEBUG=libs)"
            )

    section = Section(
        key="eviction",
        title="Memory returned after model eviction: glibc, MALLOC_ARENA_MAX=2 and jemalloc",
        method=(
            f"Per round and configuration, a child forked from the configuration's fork server (which has imported torch and "
            f"FunASR) reads its memory, loads {len(names)} model identities ({', '.join(names)}) through "
            f"gateway.asr.load_model with one torch thread from a pool of {EVICTION_THREADS} worker threads, as the gateway's "
            f"worker pool does, and runs one transcription of {context.audio_path.name} on each. It reads memory again, drops "
            "every reference to the models while the pool stays up, runs gc.collect() and reads memory (eviction, no trim), "
            "then calls malloc_trim(0) through gateway.native and reads memory (eviction and malloc_trim). Load growth and "
            "returned memory are anonymous RSS (RssAnon in /proc/self/status), the part the allocator controls: a forked "
            "child maps library code again as it runs it, which adds file-backed RSS that no allocator returns. 'RSS after "
            "eviction' is the whole VmRSS. Under jemalloc, malloc_trim is glibc's (libjemalloc.so.2 exports none) and does not "
            "reach jemalloc's arenas, so the child then purges every arena (mallctl arena.4096.purge) and reads memory once "
            "more: that is what jemalloc's decay returns in the end. Without a background thread (jemalloc's default) the "
            "decay runs only inside later malloc and free calls, so an idle process keeps those pages. The child records "
            f"jemalloc's decay options. {context.rounds} rounds, one child at a time, configuration order reversed every "
            "other round. Ratios are against glibc defaults of the same round."
        ),
        commands=[_command(context, configuration, request) for configuration in configurations],
        raw={"models": names, "rounds": rounds},
    )
    section.figures = _figures([configuration.name for configuration in configurations], rounds, _eviction_metrics)
    section.findings = _eviction_findings(section, rounds, jemalloc_skipped)
    section.duration_s = time.monotonic() - started
    return section


def _eviction_metrics(results: list[dict[str, Any]]) -> dict[str, Metric]:
    """Return the per-round figures of one configuration from its children's results."""
    def mib(step: str, kind: str) -> list[float]:
        return [result["memory"][step][kind] / MIB if result["memory"][step] else math.nan for result in results]

    loaded = mib("loaded", "rss_anon_bytes")
    growth = [after - before for after, before in zip(loaded, mib("before_load", "rss_anon_bytes"))]

    def returned(step: str) -> list[float]:
        return [before - after for before, after in zip(loaded, mib(step, "rss_anon_bytes"))]

    def share(step: str) -> list[float]:
        return [100.0 * part / whole if whole > 0 else math.nan for part, whole in zip(returned(step), growth)]

    metrics = {
        "load growth": Metric("MiB", "none", growth),
        "returned after eviction, no trim": Metric("MiB", "higher", returned("evicted")),
        "returned after eviction and malloc_trim": Metric("MiB", "higher", returned("trimmed")),
        "share of load growth returned, no trim": Metric("%", "higher", share("evicted")),
        "share of load growth returned, with malloc_trim": Metric("%", "higher", share("trimmed")),
        "RSS after eviction, no trim": Metric("MiB", "lower", mib("evicted", "rss_bytes")),
        "RSS after eviction and malloc_trim": Metric("MiB", "lower", mib("trimmed", "rss_bytes")),
    }
    if all(result["memory"]["purged"] for result in results):
        metrics["returned after arena purge"] = Metric("MiB", "higher", returned("purged"))
        metrics["share of load growth returned, after arena purge"] = Metric("%", "higher", share("purged"))
        metrics["RSS after arena purge"] = Metric("MiB", "lower", mib("purged", "rss_bytes"))
    return metrics


def _eviction_findings(section: Section, rounds: Rounds, jemalloc_skipped: str) -> list[str]:
    def value(label: str) -> float:
        return section.figure(label).median

    def median_difference(label: str, minus: str) -> float:
        return median([a - b for a, b in zip(section.figure(label).values, section.figure(minus).values)])

    n = len(rounds)
    findings = [
        f"Under glibc defaults, eviction with gc.collect() returns {value(f'{GLIBC}: returned after eviction, no trim'):.0f} MiB "
        f"({value(f'{GLIBC}: share of load growth returned, no trim'):.0f} %) of the {value(f'{GLIBC}: load growth'):.0f} MiB "
        "the loads added, and malloc_trim returns "
        f"{median_difference(f'{GLIBC}: returned after eviction and malloc_trim', f'{GLIBC}: returned after eviction, no trim'):.0f} MiB "
        f"more ({value(f'{GLIBC}: share of load growth returned, with malloc_trim'):.0f} % in all); medians over {n} rounds.",
    ]

    growth = section.figure(f"{ARENA_MAX_2}: load growth")
    no_trim = section.figure(f"{ARENA_MAX_2}: returned after eviction, no trim")
    trimmed = section.figure(f"{ARENA_MAX_2}: RSS after eviction and malloc_trim")
    findings.append(
        f"With MALLOC_ARENA_MAX=2 the loads add {growth.median:.0f} MiB against {median(growth.reference_values):.0f} MiB "
        f"under glibc defaults (medians; the median of the per-round ratios is {growth.ratio_median:.2f}, because glibc's "
        f"own growth varies from round to round). Eviction without trim returns {no_trim.median:.0f} MiB against "
        f"{median(no_trim.reference_values):.0f} MiB, and RSS after malloc_trim is {trimmed.median:.0f} MiB against "
        f"{median(trimmed.reference_values):.0f} MiB (median ratio {trimmed.ratio_median:.2f})."
    )
    glibc_trim_share = value(f"{GLIBC}: share of load growth returned, with malloc_trim")
    findings.append(
        f"What returns an evicted model's memory is malloc_trim under glibc ({glibc_trim_share:.0f} % of the load growth, "
        f"against {value(f'{GLIBC}: share of load growth returned, no trim'):.0f} % without it) and the arena purge under "
        f"jemalloc. RSS after the trim under MALLOC_ARENA_MAX=2 is {trimmed.ratio_median:.2f} of glibc defaults' (median "
        f"ratio), so the arena limit {'makes no difference after the trim' if abs(trimmed.ratio_median - 1) < 0.05 else 'changes it too'}."
    )

    if jemalloc_skipped:
        findings.append(f"jemalloc was skipped: {jemalloc_skipped}.")
        return findings
    state = rounds[0][JEMALLOC]["jemalloc"]
    trim_change = median_difference(f"{JEMALLOC}: returned after eviction and malloc_trim", f"{JEMALLOC}: returned after eviction, no trim")
    jemalloc_rss = section.figure(f"{JEMALLOC}: RSS after eviction and malloc_trim")
    purge_gain = median_difference(f"{JEMALLOC}: returned after arena purge", f"{JEMALLOC}: returned after eviction and malloc_trim")
    findings.append(
        f"Under jemalloc {str(state['version']).split('-')[0]} (dirty_decay_ms {state['dirty_decay_ms']}, background_thread "
        f"{str(state['background_thread']).lower()}), eviction returns {value(f'{JEMALLOC}: returned after eviction, no trim'):.0f} MiB "
        f"({value(f'{JEMALLOC}: share of load growth returned, no trim'):.0f} %), malloc_trim returns {round(trim_change)} MiB more, "
        f"and purging every arena returns {round(purge_gain)} MiB more "
        f"({value(f'{JEMALLOC}: share of load growth returned, after arena purge'):.0f} % in all). Until a purge, RSS stays at "
        f"{jemalloc_rss.median:.0f} MiB against {median(jemalloc_rss.reference_values):.0f} MiB under glibc defaults after malloc_trim; "
        f"medians over {n} rounds. The gateway's unload runs the same purge when jemalloc is preloaded "
        "(gateway.native.return_freed_memory)."
    )
    return findings


# -- oneDNN primitive cache ------------------------------------------------------


def piece_lengths_s(count: int = ONEDNN_PIECES, seed: int = PIECES_SEED) -> list[float]:
    """Return ``count`` distinct lengths from PIECE_MIN_S to PIECE_MAX_S in 10 ms steps, in a seeded random order."""
    steps = round((PIECE_MAX_S - PIECE_MIN_S) * 100) + 1
    if not 1 <= count <= steps:
        raise ValueError(f"piece count must be between 1 and {steps}, got {count}")
    generator = random.Random(seed)
    return [round(PIECE_MIN_S + step / 100, 2) for step in generator.sample(range(steps), count)]


def onednn_configurations() -> list[Configuration]:
    """Return the cache configurations: unset (oneDNN's default), the gateway's bound, and a small bound."""
    gateway_capacity = Settings.onednn_cache_capacity
    return [
        Configuration("capacity unset", (ONEDNN_VERBOSE,), ONEDNN_CACHE_VARIABLES),
        Configuration(f"capacity {gateway_capacity}", (ONEDNN_VERBOSE, (ONEDNN_CACHE_ENV, str(gateway_capacity))), ONEDNN_CACHE_VARIABLES[1:]),
        Configuration(f"capacity {ONEDNN_SMALL_CAPACITY}", (ONEDNN_VERBOSE, (ONEDNN_CACHE_ENV, str(ONEDNN_SMALL_CAPACITY))), ONEDNN_CACHE_VARIABLES[1:]),
    ]


def measure_onednn(context: BenchContext, *, pieces: int = ONEDNN_PIECES) -> Section:
    """Measure RSS across transcriptions of distinct lengths with oneDNN's primitive cache unset, at the gateway's bound and small."""
    started = time.monotonic()
    configurations = onednn_configurations()
    lengths_s = piece_lengths_s(pieces)
    request = {"measurement": "onednn", "model": context.model, "lengths_s": lengths_s}
    rounds = run_rounds(context, "onednn", configurations, request)

    section = Section(
        key="onednn",
        title="RSS across audio of distinct lengths, with and without a bound on oneDNN's primitive cache",
        method=(
            f"Per round and configuration, a child forked from the configuration's fork server loads {context.model} through "
            "gateway.asr.load_model with one torch thread (the gateway's default) and transcribes "
            f"{len(lengths_s)} pieces of {context.audio_path.name}, repeated and cut to distinct lengths from "
            f"{min(lengths_s):g} s to {max(lengths_s):g} s in a seeded random order (the same in every round), reading its "
            "memory after each piece. The companion VAD sees each piece whole and the Paraformer sees its speech segments. "
            f"{ONEDNN_CACHE_ENV} is in the fork server's environment before torch is imported; 'capacity unset' removes it "
            f"and DNNL_PRIMITIVE_CACHE_CAPACITY. Every configuration runs with {ONEDNN_VERBOSE[0]}={ONEDNN_VERBOSE[1]}, and "
            "the child counts the primitive creations that missed the cache. Growth is anonymous RSS (RssAnon), so library "
            f"code mapped again by the forked child does not count. {context.rounds} rounds, one child at a time, "
            "configuration order reversed every other round. Ratios are against 'capacity unset' of the same round."
        ),
        figures=_figures([configuration.name for configuration in configurations], rounds, _onednn_metrics),
        commands=[_command(context, configuration, request) for configuration in configurations],
        raw={"lengths_s": lengths_s, "rounds": rounds},
    )
    section.findings = _onednn_findings(section, rounds, configurations)
    section.duration_s = time.monotonic() - started
    return section


def _onednn_metrics(results: list[dict[str, Any]]) -> dict[str, Metric]:
    """Return the per-round figures of one configuration from its children's results."""
    def mib(index: int, kind: str) -> list[float]:
        return [result["memory_after_piece"][index][kind] / MIB for result in results]

    first_anon, last_anon = mib(0, "rss_anon_bytes"), mib(-1, "rss_anon_bytes")
    return {
        "RSS after the first piece": Metric("MiB", "lower", mib(0, "rss_bytes")),
        "RSS after the last piece": Metric("MiB", "lower", mib(-1, "rss_bytes")),
        "anonymous RSS growth, first to last piece": Metric("MiB", "lower", [last - first for last, first in zip(last_anon, first_anon)]),
        "oneDNN primitives created": Metric("primitives", "none", [float(result["onednn_primitive_cache_misses"]) for result in results]),
    }


def _onednn_findings(section: Section, rounds: Rounds, configurations: list[Configuration]) -> list[str]:
    unset, gateway, small = (configuration.name for configuration in configurations)
    first = rounds[0][unset]
    gateway_capacity = Settings.onednn_cache_capacity
    same = "equals" if gateway_capacity == ONEDNN_DEFAULT_CAPACITY else "differs from"
    findings = [
        f"oneDNN {first['onednn_version']} in torch {first['torch_version']} holds at most {ONEDNN_DEFAULT_CAPACITY} primitives "
        f"when {ONEDNN_CACHE_ENV} is unset (src/common/primitive_cache.cpp; developer guide, Primitive Cache), which {same} the "
        f"gateway's bound of {gateway_capacity}."
    ]

    created = section.figure(f"{unset}: oneDNN primitives created")
    max_created = max(created.values)
    evicted = "so the cache never evicted a primitive" if max_created < ONEDNN_DEFAULT_CAPACITY else "so the cache evicted primitives"
    findings.append(
        f"With the capacity unset, the {len(first['lengths_s'])} pieces created {created.median:.0f} primitives "
        f"(median, {max_created:.0f} at most) against a capacity of {ONEDNN_DEFAULT_CAPACITY}, {evicted}; a capacity of "
        f"{ONEDNN_SMALL_CAPACITY} raised the creations to {section.figure(f'{small}: oneDNN primitives created').median:.0f}."
    )

    growth = {name: section.figure(f"{name}: anonymous RSS growth, first to last piece") for name in (unset, gateway, small)}
    last = {name: section.figure(f"{name}: RSS after the last piece") for name in (gateway, small)}
    findings.append(
        f"From the first to the last piece, anonymous RSS changed by {_signed(growth[unset].median)} MiB with the capacity "
        f"unset, {_signed(growth[gateway].median)} MiB at {gateway} and {_signed(growth[small].median)} MiB at {small} "
        f"(medians). RSS after the last piece differs from 'capacity unset' by {_signed(_median_change(last[gateway]))} MiB at "
        f"{gateway} and {_signed(_median_change(last[small]))} MiB at {small} (medians of per-round differences over "
        f"{len(rounds)} rounds)."
    )
    return findings


def _median_change(figure: Figure) -> float:
    return median([value - base for value, base in zip(figure.values, figure.reference_values)])


def _signed(mib: float) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, which prints as +0.0.
    return f"{round(mib, 1) + 0.0:+.1f}"


# -- figures, fork servers and rounds -------------------------------------------------


def _figures(names: list[str], rounds: Rounds, metrics_of: Callable[[list[dict[str, Any]]], dict[str, Metric]]) -> list[Figure]:
    """Build every configuration's figures, with the first configuration as the reference of the others."""
    reference = names[0]
    reference_metrics = metrics_of([results[reference] for results in rounds])
    figures = []
    for name in names:
        metrics = reference_metrics if name == reference else metrics_of([results[name] for results in rounds])
        for label, metric in metrics.items():
            base = reference_metrics.get(label) if name != reference else None
            figures.append(Figure(
                f"{name}: {label}", metric.unit, metric.values,
                reference if base else "", base.values if base else [], better=metric.better,
            ))
    return figures


def _server_argv(context: BenchContext) -> list[str]:
    return [context.python, "-m", WORKER_MODULE, "--models-dir", str(context.models_dir), "--audio", str(context.audio_path)]


def _command(context: BenchContext, configuration: Configuration, request: dict[str, Any]) -> str:
    """Return the shell line that runs one round of ``request`` under ``configuration``."""
    return f"printf '%s\\n' {shlex.quote(json.dumps(request))} | {configuration.command(_server_argv(context))}"


class ForkServer:
    """A running :mod:`soak.bench.allocator_worker` under one configuration, which forks one child per request."""

    def __init__(self, context: BenchContext, configuration: Configuration, log_name: str):
        self.configuration = configuration
        self.child = JsonLineChild(
            f"the fork server for configuration {configuration.name!r}", _server_argv(context), context.log_path(log_name),
            env=configuration.environment({**os.environ, **context.extra_env}), cwd=context.work_dir,
        )

    @property
    def log_path(self) -> Path:
        return self.child.log_path

    def start(self) -> None:
        self.child.start()

    def wait_ready(self) -> None:
        self.child.read(READY_TIMEOUT_S, f"{self.child.name} while it imported torch and FunASR")

    def measure(self, request: dict[str, Any], round_index: int) -> dict[str, Any]:
        """Run ``request`` in a fresh child and return its result, or raise BenchError that names the configuration."""
        description = f"the {request['measurement']} child for configuration {self.configuration.name!r} (round {round_index + 1})"
        self.child.send(request)
        child_pid = int(self.child.read(READY_TIMEOUT_S, description)["child_pid"])

        try:
            reply = self.child.read(CHILD_TIMEOUT_S, description)
        except BenchError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child_pid, signal.SIGKILL)
            raise
        if reply["exit_status"] != 0 or reply["result"] is None:
            raise BenchError(
                f"{description} failed with exit status {reply['exit_status']}; last lines of {self.log_path}:\n{self.child.log_tail()}"
            )
        return dict(reply["result"])

    def stop(self) -> None:
        """Close the server's stdin so that it exits; kill it by PID if it has not exited within STOP_TIMEOUT_S."""
        self.child.stop(STOP_TIMEOUT_S)


def run_rounds(context: BenchContext, measurement: str, configurations: list[Configuration], request: dict[str, Any]) -> Rounds:
    """Run ``request`` once per configuration and round, one child at a time, and return each round's results by configuration."""
    rounds: Rounds = [{} for _ in range(context.rounds)]
    context.work_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        servers = {}
        for index, configuration in enumerate(configurations):
            server = ForkServer(context, configuration, f"allocator-{measurement}-{index}")
            stack.callback(server.stop)
            server.start()
            servers[configuration.name] = server
        # The servers import torch and FunASR side by side; each is waited for in turn.
        for server in servers.values():
            server.wait_ready()

        logger.info("Allocator benchmark %s: %d configurations x %d rounds.", measurement, len(configurations), context.rounds)
        for round_index in range(context.rounds):
            order = configurations if round_index % 2 == 0 else configurations[::-1]
            for configuration in order:
                rounds[round_index][configuration.name] = servers[configuration.name].measure(request, round_index)
            logger.info("Allocator benchmark %s: round %d of %d done.", measurement, round_index + 1, context.rounds)
    return rounds
