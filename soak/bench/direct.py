"""The parent side of :mod:`soak.bench.direct_worker`: start it, send batches, stop it."""

from __future__ import annotations

import contextlib
import json
import logging
import select
import subprocess
import time
from typing import Any, Literal

from soak.bench.context import BenchContext, BenchError
from soak.bench.load import Batch

logger = logging.getLogger(__name__)

Pipeline = Literal["vad", "plain"]

READY_TIMEOUT_S = 180.0
BATCH_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0


class DirectWorker:
    """A child process that runs direct ``AutoModel.generate()`` batches on request."""

    def __init__(self, context: BenchContext):
        self.context = context
        self.log_path = context.log_path("direct-worker")
        self.command = [
            context.python, "-m", "soak.bench.direct_worker",
            "--models-dir", str(context.models_dir), "--model", context.model, "--audio", str(context.audio_path),
        ]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> DirectWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                cwd=self.context.work_dir, start_new_session=True,
            )
        logger.info("Started the direct worker, PID %d.", self.process.pid)
        self._read_line(READY_TIMEOUT_S, "loading the models")

    def run(self, pipeline: Pipeline, concurrency: int, requests: int) -> Batch:
        """Run one batch of direct calls; return its latencies and wall time."""
        if self.process is None or self.process.stdin is None:
            raise BenchError("the direct worker has not been started")
        try:
            self.process.stdin.write(json.dumps({"pipeline": pipeline, "concurrency": concurrency, "requests": requests}) + "\n")
            self.process.stdin.flush()
        except OSError as error:
            raise BenchError(
                f"the direct worker (PID {self.process.pid}) is gone ({error}; exit status {self.process.poll()}); "
                f"last lines of {self.log_path}:\n{self.log_path.read_text(errors='replace')[-2000:]}"
            ) from None
        reply = self._read_line(BATCH_TIMEOUT_S, f"a batch of {requests} {pipeline} calls")
        return Batch(list(reply["latencies_s"]), float(reply["wall_s"]))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("The direct worker (PID %d) did not exit on end of input; sending SIGKILL.", self.process.pid)
            self.process.kill()
            self.process.wait()

    def _read_line(self, timeout_s: float, doing: str) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                if line:
                    return json.loads(line)
            if self.process.poll() is not None:
                break
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise BenchError(
            f"the direct worker stopped or took over {timeout_s:.0f} s while {doing} "
            f"(exit status {self.process.poll()}); last lines of {self.log_path}:\n{tail}"
        )
