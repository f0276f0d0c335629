"""Compare the gateway at an earlier git revision with the working tree: throughput and status under saturation.

Run as ``python -m soak.bench.ab --before REV``. The earlier revision is
checked out into a temporary git worktree and served with ``PYTHONPATH``
pointing at it, and the working tree's gateway with ``PYTHONPATH`` pointing
at this repository. Both serve
the same model with the same settings, and every round measures both, in
an order that alternates, so the before and after figures of a fix come
from one run on one machine state. The worktree is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from soak.bench.context import BenchContext, BenchError, BenchServer, gateway_server, running
from soak.bench.figures import Figure, Section, median, percentile
from soak.bench.load import StatusPoller, closed_loop
from soak.bench.page import format_value
from soak.bench.runner import check_writable, git_revision
from soak.processes import stop_signals_raise_keyboard_interrupt
from soak.bench.throughput import GATEWAY_WORKERS, REQUESTS_PER_BATCH, SATURATION_CONCURRENCY, SATURATION_REQUESTS, STATUS_INTERVAL_S
from soak.models import PRESET_SIZES
from soak.settings import DEFAULT_AUDIO, REPO_ROOT

logger = logging.getLogger(__name__)

GIT_TIMEOUT_S = 60.0
AB_CONCURRENCIES = (1, 8)
# Sequential requests cycling the model and its copies, more than the cache bound, so models load and unload.
CYCLING_REQUESTS = 10
# The gateway's default cache bound, which both gateways run with.
CACHE_MAX_MODELS = 3
DEFAULT_WORK_DIR = REPO_ROOT / "reports" / "runs" / "bench-ab"


def resolve_revision(revision: str) -> str:
    """Return the commit hash that ``revision`` names in this repository; raise BenchError when it names none."""
    if not revision or revision.startswith("-"):
        raise BenchError(f"--before {revision[:80]!r} is not a revision; pass a commit, tag or branch of this repository")
    completed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
    )
    if completed.returncode != 0:
        raise BenchError(f"--before {revision[:80]!r} names no commit of {REPO_ROOT}; pass a commit, tag or branch (git log --oneline)")
    return completed.stdout.strip()


@contextlib.contextmanager
def worktree(commit: str, parent: Path) -> Iterator[Path]:
    """Check out ``commit`` into a new git worktree under ``parent``; remove it on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="before-", dir=parent))
    folder.rmdir()
    completed = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(folder), commit],
        capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
    )
    if completed.returncode != 0:
        raise BenchError(f"cannot check out commit {commit}: {completed.stderr.strip()}")
    if not (folder / "gateway" / "__main__.py").is_file():
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True, timeout=GIT_TIMEOUT_S)
        raise BenchError(f"commit {commit} has no gateway package to serve; pass a revision of the gateway to compare with")
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True, timeout=GIT_TIMEOUT_S)


def measure(server: BenchServer, audio: bytes, names: list[str]) -> dict[str, float]:
    """Return throughput at each concurrency, and status percentiles under saturation and while models load and unload."""
    model = names[0]
    figures = {}
    for concurrency in AB_CONCURRENCIES:
        batch = closed_loop(server, audio, concurrency=concurrency, requests=REQUESTS_PER_BATCH, model_for=lambda index: model)
        figures[f"throughput_c{concurrency}"] = batch.throughput_per_s
    with StatusPoller(server, STATUS_INTERVAL_S, max_duration_s=600.0) as poller:
        closed_loop(server, audio, concurrency=SATURATION_CONCURRENCY, requests=SATURATION_REQUESTS, model_for=lambda index: model)
    figures["status_p50_s"] = percentile(poller.latencies_s, 0.50)
    figures["status_p99_s"] = percentile(poller.latencies_s, 0.99)
    with StatusPoller(server, STATUS_INTERVAL_S, max_duration_s=600.0) as poller:
        closed_loop(
            server, audio, concurrency=1, requests=CYCLING_REQUESTS,
            model_for=lambda index: names[index % len(names)], prompt_for=lambda index: f"hot{index}",
        )
    figures["cycling_status_p99_s"] = percentile(poller.latencies_s, 0.99)
    figures["cycling_status_max_s"] = max(poller.latencies_s, default=float("nan"))
    return figures


def compare(context: BenchContext, revision: str) -> Section:
    """Measure the gateway at ``revision`` (reference) and the working tree's, alternating over the rounds."""
    names = context.model_copies()
    if len(names) <= CACHE_MAX_MODELS:
        raise BenchError(
            f"{context.models_dir} has {len(names)} identities of {context.model} ({', '.join(names) or 'none'}); cycling "
            f"past the cache bound of {CACHE_MAX_MODELS} needs {CACHE_MAX_MODELS + 1}: run `gateway models prepare --size "
            f"{PRESET_SIZES.get(context.model, 'SIZE')} --copies 4 --models-dir {context.models_dir}`"
        )
    commit = resolve_revision(revision)
    audio = context.audio_path.read_bytes()
    rounds: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with worktree(commit, context.work_dir) as before_tree, contextlib.ExitStack() as stack:
        servers = {
            "before": stack.enter_context(running(gateway_server(
                context, "gateway-before", workers=GATEWAY_WORKERS, env={"PYTHONPATH": str(before_tree)},
            ))),
            "after": stack.enter_context(running(gateway_server(
                context, "gateway-after", workers=GATEWAY_WORKERS, env={"PYTHONPATH": str(REPO_ROOT)},
            ))),
        }
        for server in servers.values():
            closed_loop(server, audio, concurrency=2, requests=2, model_for=lambda index: context.model)
        logger.info("Both gateways are ready; measuring %d rounds.", context.rounds)
        for round_index in range(context.rounds):
            for side in ("before", "after") if round_index % 2 == 0 else ("after", "before"):
                rounds[side].append(measure(servers[side], audio, names))
            logger.info("A/B round %d of %d done.", round_index + 1, context.rounds)

    figures = []
    for key, label, unit in (
        *((f"throughput_c{c}", f"throughput at concurrency {c}", "requests/s") for c in AB_CONCURRENCIES),
        ("status_p50_s", "GET /v1/status under saturation: p50", "s"),
        ("status_p99_s", "GET /v1/status under saturation: p99", "s"),
        ("cycling_status_p99_s", "GET /v1/status while models load and unload: p99", "s"),
        ("cycling_status_max_s", "GET /v1/status while models load and unload: max", "s"),
    ):
        figures.append(Figure(
            f"after: {label}", unit, [reading[key] for reading in rounds["after"]],
            f"before ({revision})", [reading[key] for reading in rounds["before"]],
        ))
    return Section(
        key="ab", title=f"The gateway at {revision} ({commit[:12]}) against the working tree", method=(
            f"{context.rounds} rounds, both gateways up for the whole run, the order alternating per round; "
            f"{REQUESTS_PER_BATCH} requests per throughput batch, status read every {STATUS_INTERVAL_S * 1000:.0f} ms while "
            f"{SATURATION_CONCURRENCY} clients send {SATURATION_REQUESTS} transcriptions, and while one client sends "
            f"{CYCLING_REQUESTS} requests that cycle the model and its copies past the cache bound of 3."
        ), figures=figures, raw=rounds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak.bench.ab", description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, metavar="REV", help="git revision of the reference gateway")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds, 1 to 50 (default 5)")
    parser.add_argument("--model", default="paraformer-50mb", help="prepared model preset (default paraformer-50mb)")
    parser.add_argument("--models-dir", type=Path, required=True,
                        help="folder with the model and 4 copies (gateway models prepare --size 50mb --copies 4)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON to this file")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"folder for the server logs (default: a new folder under {DEFAULT_WORK_DIR})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not 1 <= args.rounds <= 50:
        parser.error(f"--rounds must be from 1 to 50, got {args.rounds}")
    if not args.models_dir.is_dir():
        parser.error(f"--models-dir {str(args.models_dir)!r} is not a folder; prepare one with gateway models prepare --models-dir DIR")
    if args.json is not None and args.json.is_dir():
        parser.error(f"--json {str(args.json)!r} is a folder; give a file path")

    work_dir = args.work_dir or DEFAULT_WORK_DIR / time.strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        context = BenchContext(
            models_dir=args.models_dir, model=args.model, audio_path=DEFAULT_AUDIO, media_dir=work_dir,
            work_dir=work_dir, rounds=args.rounds,
        )
        if args.json is not None:
            check_writable(args.json, "--json")
        with stop_signals_raise_keyboard_interrupt():
            section = compare(context, args.before)
    except (BenchError, OSError) as error:
        print(f"soak.bench.ab: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak.bench.ab: interrupted; both gateways were stopped and the worktree removed.", file=sys.stderr)
        return 2
    section.duration_s = time.monotonic() - started

    for figure in section.figures:
        print(
            f"{figure.label}: {format_value(figure.median, figure.unit)} "
            f"(before {format_value(median(figure.reference_values), figure.unit)}; "
            f"ratio {figure.ratio_median:.2f}, rounds {figure.ratio_spread[0]:.2f} to {figure.ratio_spread[1]:.2f})"
        )
    print(f"{args.rounds} rounds in {section.duration_s:.0f} s; server logs in {work_dir}")
    if args.json:
        document = {
            "before": args.before, "before_commit": resolve_revision(args.before), "after": git_revision(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **section.to_json(),
        }
        try:
            args.json.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        except OSError as error:
            print(f"soak.bench.ab: error: cannot write {args.json}: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
