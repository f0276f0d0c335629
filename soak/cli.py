"""Command line: ``soak run``, ``soak compare``, ``soak gate``, ``soak media``, ``soak report`` and ``soak bench``.

Exit status: 0 the run (or comparison) passed, 1 a criterion failed or could
not be decided, 2 the run could not be carried out (or the command was
invalid). Arguments after ``--`` go to Locust unchanged.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from soak import __version__
from soak.baseline import (
    DEFAULT_TOLERANCE,
    BaselineError,
    Tolerance,
    compare_with_baseline,
    figure_tolerances_text,
    load_baseline,
    parse_tolerances,
)
from soak.errors import SoakError
from soak.evaluate import evaluate_run
from soak.report import format_comparison, format_run, write_run_outputs
from soak.results import EXIT_ERROR, RunResult
from soak.rundir import MANIFEST, REPORT, RunFolder
from soak.bench.runner import DEFAULT_PAGE, DEFAULT_WORK_DIR, SECTION_MODULES, run_bench
from soak.gate import GATE_PROFILES, run_gate
from soak.media import write_media
from soak.run_options import LEAK_NAMES, add_run_options, leaks_value, settings_from
from soak.runner import DEFAULT_RUNS_DIR, run_comparison, run_once, write_comparison
from soak.settings import DEFAULT_AUDIO, PROFILES

logger = logging.getLogger("soak")

# More rounds than this would run for hours; the page's medians need 5.
MAX_ROUNDS = 50


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soak",
        description="Run load profiles against the gateway, sample its memory and judge the run against exit criteria.",
    )
    parser.add_argument("--version", action="version", version=f"soak {__version__}")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"), help="log level (default info)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run one profile against a gateway that soak starts, or one already running (--target)",
        description="Prepare the models and audio, start the gateway (or use the one at --target), run the profile "
        "with Locust, stop everything and write the run folder. Arguments after -- go to Locust.",
    )
    run.add_argument("profile", choices=PROFILES, help="load profile")
    run.add_argument("--leaks", default="none", type=leaks_value, help="leak switches for the gateway: none, all or a comma list of "
                     f"{', '.join(LEAK_NAMES)} (default none)")
    add_run_options(run, DEFAULT_RUNS_DIR)

    compare = commands.add_parser(
        "compare",
        help="run a profile with leaks on, then with none, and compare",
        description="Run the profile with --leaks (all by default), then with --leaks none, into one comparison "
        "folder. Exit 0 only when the fixed run passes and the leaky run fails.",
    )
    compare.add_argument("profile", choices=PROFILES, help="load profile")
    compare.add_argument("--leaks", default="all", type=leaks_value,
                         help=f"leak switches of the leaky run: all or a comma list of {', '.join(LEAK_NAMES)} (default all)")
    add_run_options(compare, DEFAULT_RUNS_DIR)

    gate = commands.add_parser(
        "gate",
        help="the CI gate: every profile on the fixed gateway, plus the leaky memory reference",
        description="Run the memory comparison (leaky reference and fixed) and the workers, sessions, soak and "
        "patterns profiles on the fixed gateway, with settings small enough for CI, into one gate folder. "
        "Exit 0 only when every fixed run passes and the leaky reference fails.",
    )
    gate.add_argument("--out", type=Path, default=None, help=f"gate folder, empty or new (default: a new folder under {DEFAULT_RUNS_DIR})")
    gate.add_argument("--profiles", default=",".join(GATE_PROFILES), type=gate_profiles_value,
                      help=f"comma list of the gate's parts to run (default {','.join(GATE_PROFILES)})")
    gate.add_argument("--model", default=None, help="model preset (default paraformer-50mb)")
    gate.add_argument("--models-dir", type=Path, default=None, help="models folder (default: the gateway's default)")
    gate.add_argument("--criteria", type=Path, default=None, help="criteria TOML file (default: the built-in criteria)")
    gate.add_argument("--requests", type=int, default=None, help="memory: requests per run (default 60)")
    gate.add_argument("--compress", type=float, default=None, help="soak: time compression (default 120: 8 simulated hours in 4 minutes)")

    media = commands.add_parser(
        "media",
        help="write the audio files the profiles send into a gateway's media root",
        description="Copy the speech fixture into DIR and write its long and varying-length variants, so that a "
        "gateway started by hand with --media-root DIR serves what the profiles send.",
    )
    media.add_argument("folder", type=Path, metavar="DIR", help="the gateway's media root")

    report = commands.add_parser(
        "report",
        help="judge saved runs again and render their reports",
        description="Judge run or comparison folders again from their saved data and rewrite summary.json, "
        "junit.xml and report.html. No gateway is needed.",
    )
    report.add_argument("folders", nargs="+", type=Path, metavar="DIR", help="run folder or comparison folder")
    report.add_argument("--criteria", type=Path, default=None, help="criteria TOML file (default: the one the run used)")
    report.add_argument("--baseline", type=Path, default=None, metavar="SUMMARY",
                        help="summary.json of a reference run, such as one under reports/baselines/; a figure worse "
                        "than the baseline's by more than the tolerance makes the report exit 1")
    report.add_argument("--tolerance", action="append", default=[], metavar="PERCENT|KEY=PERCENT",
                        help="allowed worsening against the baseline, in percent of the baseline value or of the "
                        f"criterion's limit when that is larger (default {DEFAULT_TOLERANCE * 100:g}, and "
                        f"{figure_tolerances_text()}); KEY=PERCENT sets one figure, such as rss_after_profile=10; "
                        "repeatable")
    bench = commands.add_parser(
        "bench",
        help="benchmark the gateway against direct FunASR calls and funasr-server, and the harness's own costs",
        description="Start the gateway, funasr-server and a direct-call worker on loopback, measure each section "
        "group over alternating rounds, and write the Markdown page and the raw JSON. Exit 1 when a group could "
        "not be measured.",
    )
    bench.add_argument("--sections", default=",".join(SECTION_MODULES), type=bench_groups_value,
                       help=f"comma list of section groups to run (default {','.join(SECTION_MODULES)})")
    bench.add_argument("--rounds", type=rounds_value, default=5, help=f"alternating rounds per figure, 1 to {MAX_ROUNDS} (default 5)")
    bench.add_argument("--model", default="paraformer-50mb", help="model preset (default paraformer-50mb)")
    bench.add_argument("--models-dir", type=path_value, default=None, help="models folder (default: the gateway's default)")
    bench.add_argument("--out", type=path_value, default=DEFAULT_PAGE, help=f"Markdown page to write (default {DEFAULT_PAGE})")
    bench.add_argument("--json", type=path_value, default=None, help="raw JSON to write (default: the page's path with .json)")
    bench.add_argument("--work-dir", type=path_value, default=DEFAULT_WORK_DIR,
                       help=f"folder for server logs and generated inputs (default {DEFAULT_WORK_DIR})")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    own_args, locust_args = split_locust_args(argv)
    args = build_parser().parse_args(own_args)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO, which would bury the run's own log under status reads.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    try:
        if args.command == "media":
            written = write_media(DEFAULT_AUDIO, args.folder)
            print(f"Wrote {len(written)} audio files to {args.folder}: {', '.join(written)}")
            return 0
        if args.command == "gate":
            return run_gate(args.out, args.profiles, model=args.model, models_dir=args.models_dir,
                            criteria_path=args.criteria, requests=args.requests, compress=args.compress, locust_args=locust_args)
        if args.command == "bench":
            return run_bench(
                groups=args.sections, rounds=args.rounds, model=args.model, models_dir=args.models_dir, page_path=args.out,
                json_path=args.json or args.out.with_suffix(".json"), work_dir=args.work_dir,
                command_line=shlex.join(["soak", *own_args]),
            )
        if args.command == "report":
            return report(args.folders, args.criteria, args.baseline, args.tolerance)
        settings = settings_from(args, locust_args)
        if args.command == "run":
            folder, result = run_once(settings, out=args.out)
            print(format_run(result, report_path=str(folder.file(REPORT))))
            return result.exit_code
        folder, comparison = run_comparison(replace(settings, leaks="none"), out=args.out, leaky_leaks=args.leaks)
        print(format_comparison(comparison, report_path=str(folder.file(REPORT))))
        return comparison.exit_code
    except SoakError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("soak: interrupted; every process soak started was stopped.", file=sys.stderr)
        return EXIT_ERROR
    except Exception:
        # A bug, not a verdict: exit 2 so that CI does not read it as a failed criterion.
        logger.exception("soak failed with an unexpected error")
        return EXIT_ERROR


def report(
    folders: list[Path], criteria_path: Path | None, baseline_path: Path | None = None, tolerances: list[str] | None = None
) -> int:
    """Judge each folder again and rewrite its outputs; return the worst exit status.

    With ``baseline_path``, each run (a comparison's fixed run) is also compared with that summary.
    """
    baseline = None
    if baseline_path is not None:
        baseline = BaselineReference(baseline_path, load_baseline(baseline_path), parse_tolerances(tolerances or []))
    elif tolerances:
        raise BaselineError("--tolerance applies only to a comparison with a baseline, so pass --baseline SUMMARY as well.")

    exit_codes = []
    for path in folders:
        folder = RunFolder(path)
        kind = folder.read_json(MANIFEST).get("kind", "run")
        if kind == "comparison":
            leaky = rerender_run(RunFolder(path / "leaky"), criteria_path)
            fixed = rerender_run(RunFolder(path / "fixed"), criteria_path, baseline)
            comparison = write_comparison(folder, leaky, fixed)
            print(format_comparison(comparison, report_path=str(path / REPORT)))
            exit_codes.append(comparison.exit_code)
        else:
            result = rerender_run(folder, criteria_path, baseline)
            print(format_run(result, report_path=str(path / REPORT)))
            exit_codes.append(result.exit_code)
    return max(exit_codes)


@dataclass(frozen=True)
class BaselineReference:
    """The baseline summary that ``soak report --baseline`` compares runs with."""

    path: Path
    summary: dict
    tolerance: Tolerance


def rerender_run(folder: RunFolder, criteria_path: Path | None, baseline: BaselineReference | None = None) -> RunResult:
    result = evaluate_run(folder, criteria_path)
    if baseline is not None:
        result.baseline = compare_with_baseline(result.to_summary(), baseline.summary, baseline.path, baseline.tolerance)
    write_run_outputs(folder, result)
    return result


def split_locust_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split at the first ``--``: soak's own arguments before it, Locust's after it."""
    if "--" not in argv:
        return argv, []
    position = argv.index("--")
    return argv[:position], argv[position + 1 :]


def comma_list_value(text: str, allowed: Iterable[str], what: str) -> list[str]:
    """Split a comma list and check each name against ``allowed``; raise ArgumentTypeError naming them."""
    allowed = list(allowed)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"invalid {what} {text[:80]!r}: use a comma list of {', '.join(allowed)}")
    return names


def bench_groups_value(text: str) -> list[str]:
    return comma_list_value(text, SECTION_MODULES, "section groups")


def path_value(text: str) -> Path:
    """Accept a non-empty path without control characters (a newline would break the page's links)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("invalid path '': give a file or folder name")
    if any(ord(character) < 32 for character in text):
        raise argparse.ArgumentTypeError(f"invalid path {text[:80]!r}: it contains control characters; use a plain name")
    return Path(text)


def rounds_value(text: str) -> int:
    try:
        rounds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid rounds {text[:40]!r}: use a whole number from 1 to {MAX_ROUNDS}") from None
    if not 1 <= rounds <= MAX_ROUNDS:
        raise argparse.ArgumentTypeError(f"rounds must be from 1 to {MAX_ROUNDS}, got {text[:40]}; the page's medians need 5 or more")
    return rounds


def gate_profiles_value(text: str) -> list[str]:
    return comma_list_value(text, GATE_PROFILES, "gate parts")
