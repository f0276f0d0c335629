"""The runner: prepare models, start the gateway, sample it, run Locust, stop everything, judge.

One ``Runner`` carries out one run into one run folder. Whatever happens,
the ``finally`` block stops the sampler, Locust and the gateway, each
bounded in time, and writes the manifest. After success, a failed step,
Ctrl+C or SIGTERM the run folder also gets its summary, junit.xml and
report.html; an unexpected exception propagates after the cleanup.

The runner never imports the gateway, torch or funasr: the gateway runs as
``python -m gateway`` and Locust as ``python -m locust``, each in its own
process group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from soak.diagnosis import DIAGNOSIS
from soak.errors import SoakError
from soak.evaluate import evaluate_run
from soak.manifest import build_manifest, hash_model_files, sha256_file
from soak.models import prepare_models
from soak.processes import ManagedProcess, ignore_stop_signals, stop_signals_raise_keyboard_interrupt
from soak.report import write_comparison_outputs, write_run_outputs
from soak.results import ComparisonResult, RunResult
from soak.rundir import GATEWAY_LOG, MANIFEST, REQUESTS, SAMPLES, JsonlWriter, RunFolder
from soak.sampler import ProcessTreeSource, Sampler, StatusSource
from soak.settings import REPO_ROOT, RunSettings, RunTimes

logger = logging.getLogger(__name__)

PROFILES_DIR = REPO_ROOT / "profiles"
DEFAULT_RUNS_DIR = REPO_ROOT / "reports" / "runs"

READY_POLL_S = 0.25
HTTP_TIMEOUT_S = 2.0
# Locust gets this long past its own --run-time to write its CSV and HTML files.
LOCUST_EXIT_GRACE_S = 30.0
# GET /v1/debug/memory walks every object reachable from the gateway's
# module-level containers; with tracemalloc on it also takes a snapshot,
# which took 9 s for a 230 MB traced heap on a 2-core machine.
DIAGNOSIS_TIMEOUT_S = 60.0
CPU_WARNING_TEXT = "CPU usage above"


class RunError(SoakError):
    """A step of the run failed, so the run could not be carried out (exit status 2)."""


class Runner:
    """Carries out one run into one run folder."""

    def __init__(self, settings: RunSettings, folder: RunFolder) -> None:
        self.settings = settings
        self.folder = folder
        self.times = RunTimes()
        self.url: str | None = None
        self.gateway: ManagedProcess | None = None
        self.locust: ManagedProcess | None = None
        self.sampler: Sampler | None = None
        self._samples_writer: JsonlWriter | None = None
        self.manifest: dict[str, Any] = {}
        self._stopping = False

    def run(self) -> RunResult:
        """Carry out the run and write every output; KeyboardInterrupt is re-raised after the outputs.

        A failed step is recorded as the run's error (verdict ERROR, exit status 2).
        """
        interrupted = False
        error: str | None = None
        with stop_signals_raise_keyboard_interrupt():
            try:
                self.settings.validate()
                self._carry_out()
            except SoakError as exc:
                error = str(exc)
                logger.error("Run failed: %s", error)
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.exception("Run failed on a file or process operation")
            except KeyboardInterrupt:
                interrupted = True
                error = "the run was interrupted (SIGINT or SIGTERM) before it finished"
                logger.warning("Interrupted; stopping the sampler, Locust and the gateway.")
            finally:
                self._stop_everything()
                self.times.ended_s = time.time()
                self._write_manifest(error)

        result = evaluate_run(self.folder, self.settings.criteria_path)
        write_run_outputs(self.folder, result)
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _carry_out(self) -> None:
        settings = self.settings
        self.manifest = build_manifest(settings.to_manifest(), REPO_ROOT)

        prepared = prepare_models(
            list(settings.gateway_command),
            settings.model,
            settings.model_copies,
            settings.models_dir,
            settings.prepare_timeout_s,
            self.folder.file("prepare.log"),
        )
        identities = [settings.model] + [f"{settings.model}-copy{number}" for number in range(1, settings.model_copies + 1)]
        missing = [name for name in identities if name not in prepared.models]
        if missing:
            raise RunError(f"models prepare did not report {', '.join(missing)}; see {self.folder.file('prepare.log')}")
        self.manifest["models_dir"] = str(prepared.models_dir)
        self.manifest["model_identities"] = identities
        self.manifest["models"] = {
            name: {
                "path": prepared.models[name]["path"],
                "instance_bytes": prepared.models[name]["instance_bytes"],
                "sha256": hash_model_files(Path(prepared.models[name]["path"])),
            }
            for name in identities
        }
        media_audio = self.folder.media_dir / settings.audio_path.name
        shutil.copyfile(settings.audio_path, media_audio)
        self.manifest["audio"] = {
            "source": str(settings.audio_path),
            "audio_url": media_audio.name,
            "sha256": sha256_file(media_audio),
            "size_bytes": media_audio.stat().st_size,
        }

        self._start_gateway(prepared.models_dir)
        self._wait_until_ready()
        self._check_gateway_status(identities)

        self._start_sampler()
        self._run_locust(identities, media_audio.name)
        logger.info("Sampling %.1f s more so that the end of the run is measured at rest.", settings.settle_s)
        time.sleep(settings.settle_s)

    def _start_gateway(self, models_dir: Path) -> None:
        settings = self.settings
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            *settings.gateway_command,
            "serve",
            "--host", "127.0.0.1",
            "--port", str(port),
            "--model", settings.model,
            "--models-dir", str(models_dir),
            "--media-root", str(self.folder.media_dir),
            "--cache-max-models", str(settings.cache_max_models),
            "--leaks", settings.leaks,
            "--log-level", "info",
            # For GET /v1/debug/memory at the end of the load (loopback clients only).
            "--debug-endpoints",
            *settings.gateway_args,
        ]
        env = dict(os.environ)
        if settings.malloc_arena_max is not None:
            env["MALLOC_ARENA_MAX"] = str(settings.malloc_arena_max)
        self.manifest["allocator"] = {
            "MALLOC_ARENA_MAX": env.get("MALLOC_ARENA_MAX"),
            "LD_PRELOAD": env.get("LD_PRELOAD"),
        }

        self.gateway = ManagedProcess("gateway", command, self.folder.file(GATEWAY_LOG), env=env, cwd=REPO_ROOT)
        try:
            self.gateway.start()
        except OSError as exc:
            raise RunError(f"could not start the gateway ({' '.join(command)}): {exc}") from None
        self.manifest["target"] = {"url": self.url, "pid": self.gateway.pid, "command": command}

    def _wait_until_ready(self) -> None:
        timeout_s = self.settings.ready_timeout_s
        logger.info("Waiting up to %.0f s for %s/readyz.", timeout_s, self.url)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S, trust_env=False) as client:
            while time.monotonic() < deadline:
                exit_status = self.gateway.poll()
                if exit_status is not None:
                    raise RunError(
                        f"the gateway exited with status {exit_status} before it was ready; "
                        f"last lines of {self.gateway.log_path}:\n{self.gateway.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get("/readyz").status_code == 200:
                        self.times.ready_s = time.time()
                        logger.info("Gateway ready after %.1f s.", self.times.ready_s - self.times.started_s)
                        return
                time.sleep(READY_POLL_S)
        raise RunError(
            f"the gateway was not ready within {timeout_s:.0f} s (raise --ready-timeout-s if it loads slowly); "
            f"last lines of {self.gateway.log_path}:\n{self.gateway.log_tail()}"
        )

    def _check_gateway_status(self, identities: list[str]) -> None:
        try:
            response = httpx.get(f"{self.url}/v1/status", timeout=HTTP_TIMEOUT_S, trust_env=False)
            response.raise_for_status()
            status = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RunError(f"GET {self.url}/v1/status failed after readiness: {exc}") from None

        self.manifest["target"]["gateway_version"] = status.get("version")
        self.manifest["target"]["status_at_ready"] = status
        available = status.get("models_available") or []
        missing = [name for name in identities if name not in available]
        if missing:
            raise RunError(
                f"the gateway does not serve {', '.join(missing)} (it serves {', '.join(available) or 'nothing'}); "
                "check --models-dir"
            )
        limit = status.get("models_cache_limit")
        if limit is not None and limit != self.settings.cache_max_models:
            logger.warning(
                "The gateway reports a cache bound of %s, not the %d this run passed; the criteria use %d.",
                limit, self.settings.cache_max_models, self.settings.cache_max_models,
            )

    def _start_sampler(self) -> None:
        writer = self.folder.jsonl_writer(SAMPLES)
        sources = [ProcessTreeSource(self.gateway.pid), StatusSource(self.url)]
        self.sampler = Sampler(
            sources,
            writer.write,
            interval_s=self.settings.sample_interval_s,
            trigger_path=self.folder.file(REQUESTS),
        )
        self._samples_writer = writer
        self.sampler.start()

    def _run_locust(self, identities: list[str], audio_url: str) -> None:
        settings = self.settings
        locust_dir = self.folder.locust_dir
        command = [
            *settings.locust_command,
            "-f", str(PROFILES_DIR / f"{settings.profile}.py"),
            "--headless",
            "--host", self.url,
            "-u", str(settings.users),
            "-r", str(settings.users),
            "--run-time", f"{int(settings.timeout_s)}s",
            "--csv", str(locust_dir / "stats"),
            "--html", str(locust_dir / "report.html"),
            "--only-summary",
            *settings.locust_args,
        ]
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
            "SOAK_REQUESTS": str(settings.requests),
            "SOAK_MODELS": ",".join(identities),
            "SOAK_AUDIO_URL": audio_url,
            "SOAK_PAUSE_S": str(settings.pause_s),
            "SOAK_REQUESTS_LOG": str(self.folder.file(REQUESTS)),
        }
        self.locust = ManagedProcess("locust", command, locust_dir / "locust.log", env=env, cwd=REPO_ROOT)
        self.times.load_started_s = time.time()
        try:
            self.locust.start()
        except OSError as exc:
            raise RunError(f"could not start Locust ({' '.join(command)}): {exc}") from None
        self.manifest["locust"] = {"command": command, "pid": self.locust.pid}

        exit_status = self.locust.wait(settings.timeout_s + LOCUST_EXIT_GRACE_S)
        self.times.load_ended_s = time.time()
        if exit_status is None:
            raise RunError(
                f"Locust was still running {LOCUST_EXIT_GRACE_S:.0f} s after its {settings.timeout_s:.0f} s run time; "
                f"last lines of {self.locust.log_path}:\n{self.locust.log_tail()}"
            )
        self.manifest["locust"]["exit_code"] = exit_status
        if not self.folder.read_jsonl(REQUESTS):
            raise RunError(
                f"Locust exited with status {exit_status} without completing a request; "
                f"last lines of {self.locust.log_path}:\n{self.locust.log_tail()}"
            )

    def _stop_everything(self) -> None:
        """Stop the sampler, Locust and the gateway; each step is bounded in time and runs once."""
        if self._stopping:
            return
        self._stopping = True
        with ignore_stop_signals():
            if self.sampler is not None:
                self.sampler.stop()
            if self._samples_writer is not None:
                self._samples_writer.close()

            if self.locust is not None:
                self.locust.stop(timeout_s=10.0)
                log = self.locust.log_tail(chars=1_000_000)
                self.manifest.setdefault("locust", {})["cpu_warning"] = CPU_WARNING_TEXT in log

            # After the sampler's final sample, so that the walk's own
            # allocations stay out of the RSS that the criteria judge.
            if self.gateway is not None and self.gateway.poll() is None and self.times.load_started_s is not None:
                self._fetch_diagnosis()

            if self.gateway is not None:
                exited_before_stop = self.gateway.poll() is not None
                outcome = self.gateway.stop(timeout_s=self.settings.stop_timeout_s)
                self.manifest["gateway"] = {
                    "exit_code": self.gateway.process.returncode if self.gateway.process else None,
                    "stopped_by": outcome,
                    "exited_before_stop": exited_before_stop,
                }

    def _fetch_diagnosis(self) -> None:
        """Save GET /v1/debug/memory as diagnosis.json; a failure is recorded, never raised."""
        url = f"{self.url}/v1/debug/memory"
        try:
            response = httpx.get(url, timeout=DIAGNOSIS_TIMEOUT_S, trust_env=False)
            response.raise_for_status()
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            logger.warning("GET %s failed, so the report will have no retention paths: %s", url, exc)
            self.manifest["diagnosis"] = {"file": None, "error": f"GET /v1/debug/memory failed: {exc}"}
            return

        self.folder.write_json(DIAGNOSIS, payload)
        self.manifest["diagnosis"] = {"file": DIAGNOSIS, "error": None}
        logger.info("Saved the gateway's memory diagnosis to %s.", self.folder.file(DIAGNOSIS))

    def _write_manifest(self, error: str | None) -> None:
        if not self.manifest:
            self.manifest = {"profile": self.settings.profile, "settings": self.settings.to_manifest()}
        self.manifest["kind"] = "run"
        self.manifest["times"] = self.times.to_manifest()
        self.manifest["error"] = error
        self.folder.write_json(MANIFEST, self.manifest)


def run_once(
    settings: RunSettings, out: Path | None = None, runs_dir: Path = DEFAULT_RUNS_DIR
) -> tuple[RunFolder, RunResult]:
    """Carry out one run into ``out`` or a new timestamped folder under ``runs_dir``."""
    folder = RunFolder.at(out) if out else RunFolder.create(runs_dir, settings.profile, settings.leaks)
    logger.info("Run folder: %s", folder.path)
    return folder, Runner(settings, folder).run()


def run_comparison(
    settings: RunSettings, out: Path | None = None, runs_dir: Path = DEFAULT_RUNS_DIR
) -> tuple[RunFolder, ComparisonResult]:
    """Run the profile with every leak on, then with none, and judge them together.

    Both run folders live inside one comparison folder, as ``leaky/`` and ``fixed/``.
    """
    folder = RunFolder.at(out) if out else RunFolder.create(runs_dir, settings.profile, "compare")
    logger.info("Comparison folder: %s", folder.path)
    folder.write_json(
        MANIFEST,
        {
            "kind": "comparison",
            "profile": settings.profile,
            "settings": settings.to_manifest(),
            "runs": {"leaky": "leaky", "fixed": "fixed"},
        },
    )

    leaky = Runner(replace(settings, leaks="all"), RunFolder.at(folder.path / "leaky")).run()
    fixed = Runner(replace(settings, leaks="none"), RunFolder.at(folder.path / "fixed")).run()
    return folder, write_comparison(folder, leaky, fixed)


def write_comparison(folder: RunFolder, leaky: RunResult, fixed: RunResult) -> ComparisonResult:
    comparison = ComparisonResult(profile=fixed.profile, comparison_dir=folder.path.name, leaky=leaky, fixed=fixed)
    write_comparison_outputs(folder, comparison, run_links={"leaky": "leaky/report.html", "fixed": "fixed/report.html"})
    return comparison


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
