"""The runner: prepare models and audio, start (or find) the gateway, sample it, run Locust, stop everything, judge.

One ``Runner`` carries out one run of one profile into one run folder.
Whatever happens, the ``finally`` block stops the sampler, the snapshot
collector, Locust and a gateway the runner started, each bounded in time,
and writes the manifest. After success, a failed step, Ctrl+C or SIGTERM
the run folder also gets its summary, junit.xml and report.html; an
unexpected exception propagates after the cleanup.

The runner never imports the gateway, torch or funasr: the gateway runs as
``python -m gateway`` and Locust as ``python -m locust``, each in its own
process group. With ``--target`` it starts no gateway and stops none.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from soak import plans
from soak.allocator import allocator_env
from soak.diagnosis import DIAGNOSIS, SNAPSHOTS_DIR
from soak.errors import SoakError
from soak.evaluate import evaluate_run
from soak.loadgen import locust_command, locust_env, usage_summary
from soak.manifest import build_manifest, hash_model_files, sha256_file
from soak.media import write_media
from soak.models import prepare_models
from soak.processes import ManagedProcess, free_port, ignore_stop_signals, stop_signals_raise_keyboard_interrupt
from soak.report import write_comparison_outputs, write_run_outputs
from soak.results import ComparisonResult, RunResult
from soak.rundir import GATEWAY_LOG, MANIFEST, REQUESTS, SAMPLES, JsonlWriter, RunFolder
from soak.sampler import ProcessTreeSource, Sampler, SampleSource, StatusSource
from soak.settings import REPO_ROOT, RunSettings, RunTimes
from soak.snapshots import SnapshotCollector, start_tracing
from soak.target import ExternalGateway, Gateway, StartedGateway, read_status, wait_until_ready

logger = logging.getLogger(__name__)

DEFAULT_RUNS_DIR = REPO_ROOT / "reports" / "runs"

# Locust gets this long past its own --run-time to write its CSV and HTML files.
LOCUST_EXIT_GRACE_S = 30.0
LOCUST_STOP_TIMEOUT_S = 10.0
# GET /v1/debug/memory walks every object reachable from the gateway's
# module-level containers. With tracemalloc on it also takes a snapshot,
# which took 9 s for a 230 MB traced heap on a 2-core machine.
DIAGNOSIS_TIMEOUT_S = 60.0


class RunError(SoakError):
    """A step of the run failed, so the run could not be carried out (exit status 2)."""


class Runner:
    """Carries out one run into one run folder."""

    def __init__(self, settings: RunSettings, folder: RunFolder) -> None:
        self.settings = settings
        self.folder = folder
        self.times = RunTimes()
        self.gateway: Gateway | None = None
        self.locust: ManagedProcess | None = None
        self.sampler: Sampler | None = None
        self.snapshots: SnapshotCollector | None = None
        self._samples_writer: JsonlWriter | None = None
        self._models_dir: Path | None = None
        self.manifest: dict[str, Any] = {}
        self._stopping = False

    @property
    def url(self) -> str | None:
        return self.gateway.url if self.gateway else None

    def run(self) -> RunResult:
        """Carry out the run and write every output; KeyboardInterrupt is re-raised after the outputs.

        A failed step is recorded as the run's error (verdict ERROR, exit status 2).
        """
        interrupted = False
        error: str | None = None
        with stop_signals_raise_keyboard_interrupt():
            try:
                self.settings.validate()
                self.settings = plans.resolve(self.settings)
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

        identities = self._prepare_models() if settings.starts_gateway else []
        self._prepare_media()

        self._start_gateway()
        self.times.ready_s = wait_until_ready(self.gateway, settings.ready_timeout_s)
        logger.info("Gateway ready after %.1f s.", self.times.ready_s - self.times.started_s)
        status = read_status(self.gateway.url)
        identities = self._check_gateway_status(status, identities)

        self._start_tracing_and_snapshots()
        self._start_sampler()
        self._run_locust(identities, status)
        logger.info("Sampling %.1f s more so that the end of the run is measured at rest.", settings.settle_s)
        time.sleep(settings.settle_s)

    def _prepare_models(self) -> list[str]:
        settings = self.settings
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
        self._models_dir = prepared.models_dir
        return identities

    def _prepare_media(self) -> None:
        long_files, varying_files = plans.media_needs(self.settings)
        written = write_media(self.settings.audio_path, self.folder.media_dir, long_files=long_files, varying_files=varying_files)
        speech = self.folder.media_dir / written[0]
        self.manifest["audio"] = {
            "source": str(self.settings.audio_path),
            "audio_url": speech.name,
            "sha256": sha256_file(speech),
            "size_bytes": speech.stat().st_size,
            "files": {name: (self.folder.media_dir / name).stat().st_size for name in written},
        }

    def _start_gateway(self) -> None:
        settings = self.settings
        if not settings.starts_gateway:
            self.gateway = ExternalGateway(settings.target_url, settings.target_pid)
            self.gateway.start()
            self.manifest["allocator"] = {"allocator": "unknown (a gateway the runner did not start)"}
            self.manifest["target"] = self.gateway.manifest()
            return

        url = f"http://127.0.0.1:{free_port()}"
        command = [
            *settings.gateway_command,
            "serve",
            "--host", "127.0.0.1",
            "--port", url.rsplit(":", 1)[1],
            "--model", settings.model,
            "--models-dir", str(self._models_dir),
            "--media-root", str(self.folder.media_dir),
            "--cache-max-models", str(settings.cache_max_models),
            "--leaks", settings.leaks,
            "--log-level", "info",
            # For the memory diagnosis, the session listing and tracemalloc snapshots (loopback clients only).
            "--debug-endpoints",
            *plans.gateway_args(settings),
            *settings.gateway_args,
        ]
        env, self.manifest["allocator"] = allocator_env(settings.allocator, settings.malloc_arena_max, dict(os.environ))
        self.gateway = StartedGateway(url, command, self.folder.file(GATEWAY_LOG), env, REPO_ROOT)
        self.gateway.start()
        self.manifest["target"] = self.gateway.manifest()

    def _check_gateway_status(self, status: dict[str, Any], identities: list[str]) -> list[str]:
        """Record the status at readiness and return the model identities the profile may use."""
        target = self.manifest["target"]
        target["gateway_version"] = status.get("version")
        target["status_at_ready"] = status
        available = status.get("models_available") or []

        if not self.settings.starts_gateway:
            identities = self._target_identities(status)
        missing = [name for name in identities if name not in available]
        if missing:
            raise RunError(
                f"the gateway does not serve {', '.join(missing)} (it serves {', '.join(available) or 'nothing'}); "
                "check --models-dir"
            )

        limit = status.get("models_cache_limit")
        if limit is not None and limit != self.settings.cache_max_models:
            if self.settings.starts_gateway:
                logger.warning(
                    "The gateway reports a cache bound of %s, not the %d this run passed; the criteria use %d.",
                    limit, self.settings.cache_max_models, self.settings.cache_max_models,
                )
            else:
                self.settings = replace(self.settings, cache_max_models=int(limit))
                self.manifest["settings"] = self.settings.to_manifest()
        return identities

    def _target_identities(self, status: dict[str, Any]) -> list[str]:
        """Pick a target's model identities: --model (or the model it has loaded) first, then its copies and others."""
        available = list(status.get("models_available") or [])
        cached = list(status.get("cached_identities") or [])
        if self.settings.model in available:
            default = self.settings.model
        elif cached:
            default = cached[0]
        elif available:
            default = available[0]
        else:
            default = self.settings.model
        identities = [default] + [name for name in available if name != default and name.startswith(default)]
        if self.settings.profile == "memory":
            limit = status.get("models_cache_limit") or self.settings.cache_max_models
            needed = int(limit) + 2
            if len(identities) < needed:
                identities += [name for name in available if name not in identities]
            if len(identities) < needed:
                raise RunError(
                    f"the memory profile needs {needed} model identities (the cache bound {limit} plus 2, so that the "
                    f"cache has to evict), but the gateway at {self.url} serves {len(available)}; start it with a "
                    "models folder prepared by `gateway models prepare --copies 4`"
                )
            identities = identities[:needed]
        self.settings = replace(self.settings, model=default)
        self.manifest["settings"] = self.settings.to_manifest()
        self.manifest["model_identities"] = identities
        self.manifest["models"] = {name: {"instance_bytes": self._target_model_bytes(name)} for name in identities}
        return identities

    def _target_model_bytes(self, name: str) -> int | None:
        """Return a target model's instance size: --model-bytes, or the preset marker in the models folder."""
        if self.settings.model_bytes is not None:
            return self.settings.model_bytes
        models_dir = self.settings.models_dir or (Path(os.environ["GATEWAY_MODELS_DIR"]) if os.environ.get("GATEWAY_MODELS_DIR") else None)
        if models_dir is None:
            return None
        try:
            return int(json.loads((models_dir / name / "preset.json").read_text(encoding="utf-8"))["instance_bytes"])
        except (OSError, ValueError, KeyError):
            return None

    def _start_tracing_and_snapshots(self) -> None:
        settings = self.settings
        if not settings.tracemalloc_frames:
            return
        if not settings.starts_gateway:
            try:
                started = start_tracing(self.url, settings.tracemalloc_frames)
            except httpx.HTTPError as exc:
                raise RunError(
                    f"could not start tracemalloc on the gateway at {self.url} ({exc}); it must run with "
                    "--debug-endpoints and accept this host as a loopback client or its debug token"
                ) from None
            self.manifest["target"]["tracemalloc_started"] = started
        self.snapshots = SnapshotCollector(self.url, self.folder.file(SNAPSHOTS_DIR), settings.snapshot_interval_s)
        self.snapshots.start()

    def _start_sampler(self) -> None:
        writer = self.folder.jsonl_writer(SAMPLES)
        pid = self.gateway.pid
        sources: list[SampleSource] = [StatusSource(self.url, rss_from_status=pid is None)]
        if pid is not None:
            sources.insert(0, ProcessTreeSource(pid))
        self.sampler = Sampler(
            sources,
            writer.write,
            interval_s=self.settings.sample_interval_s,
            trigger_path=self.folder.file(REQUESTS) if plans.samples_after_requests(self.settings) else None,
        )
        self._samples_writer = writer
        self.sampler.start()

    def _run_locust(self, identities: list[str], status: dict[str, Any]) -> None:
        settings = self.settings
        plan = plans.locust_plan(settings, identities, status, self.folder.media_dir)
        command = locust_command(settings, plan, self.url, self.folder)
        self.locust = ManagedProcess("locust", command, self.folder.locust_dir / "locust.log", env=locust_env(plan, self.folder), cwd=REPO_ROOT)
        self.times.load_started_s = time.time()
        try:
            self.locust.start()
        except OSError as exc:
            raise RunError(f"could not start Locust ({' '.join(command)}): {exc}") from None
        self.manifest["locust"] = {"command": command, "pid": self.locust.pid, "profile_env": plan.env}

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
        """Stop the sampler, the snapshots, Locust and the gateway; each step is bounded in time and runs once."""
        if self._stopping:
            return
        self._stopping = True
        with ignore_stop_signals():
            if self.sampler is not None:
                self.sampler.stop()
            if self._samples_writer is not None:
                self._samples_writer.close()

            if self.snapshots is not None:
                self.snapshots.stop()
                self.manifest["snapshots"] = self.snapshots.manifest()

            if self.locust is not None:
                self.locust.stop(timeout_s=LOCUST_STOP_TIMEOUT_S)
                usage = usage_summary(self.folder, self.locust.log_tail(chars=1_000_000))
                self.manifest.setdefault("locust", {}).update(usage)
                if usage["cpu_saturated"]:
                    logger.warning("The load generator was CPU-saturated (peak %s %% of a core); the report flags it.", usage["cpu_percent_max"])

            # After the sampler's final sample, so that the walk's own
            # allocations stay out of the RSS that the criteria judge.
            if self.gateway is not None and self.gateway.exit_status() is None and self.times.load_started_s is not None:
                self._fetch_diagnosis()

            if self.gateway is not None:
                self.manifest["gateway"] = self.gateway.stop(timeout_s=self.settings.stop_timeout_s)

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
    folder = RunFolder.at(out) if out else RunFolder.create(runs_dir, settings.run_label, settings.leaks)
    logger.info("Run folder: %s", folder.path)
    return folder, Runner(settings, folder).run()


def run_comparison(
    settings: RunSettings, out: Path | None = None, runs_dir: Path = DEFAULT_RUNS_DIR, leaky_leaks: str = "all"
) -> tuple[RunFolder, ComparisonResult]:
    """Run the profile with leaks on (``leaky_leaks``, all by default), then with none, and judge them together.

    Both run folders live inside one comparison folder, as ``leaky/`` and ``fixed/``.
    """
    folder = RunFolder.at(out) if out else RunFolder.create(runs_dir, settings.run_label, "compare")
    logger.info("Comparison folder: %s", folder.path)
    folder.write_json(
        MANIFEST,
        {
            "kind": "comparison",
            "profile": settings.profile,
            "settings": settings.to_manifest(),
            "leaky_leaks": leaky_leaks,
            "runs": {"leaky": "leaky", "fixed": "fixed"},
        },
    )

    leaky = Runner(replace(settings, leaks=leaky_leaks), RunFolder.at(folder.path / "leaky")).run()
    fixed = Runner(replace(settings, leaks="none"), RunFolder.at(folder.path / "fixed")).run()
    return folder, write_comparison(folder, leaky, fixed)


def write_comparison(folder: RunFolder, leaky: RunResult, fixed: RunResult) -> ComparisonResult:
    comparison = ComparisonResult(profile=fixed.profile, comparison_dir=folder.path.name, leaky=leaky, fixed=fixed)
    write_comparison_outputs(folder, comparison, run_links={"leaky": "leaky/report.html", "fixed": "fixed/report.html"})
    return comparison
