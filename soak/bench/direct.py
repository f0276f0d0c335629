"""The parent side of :mod:`soak.bench.direct_worker`: start it, send batches, stop it."""

from __future__ import annotations

import logging
import os
from typing import Literal

from soak.bench.children import JsonLineChild
from soak.bench.context import BenchContext
from soak.bench.load import Batch

logger = logging.getLogger(__name__)

Pipeline = Literal["vad", "plain"]

READY_TIMEOUT_S = 180.0
BATCH_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 10.0


class DirectWorker:
    """A child process that runs direct ``AutoModel.generate()`` batches on request."""

    def __init__(self, context: BenchContext):
        command = [
            context.python, "-m", "soak.bench.direct_worker",
            "--models-dir", str(context.models_dir), "--model", context.model, "--audio", str(context.audio_path),
        ]
        self.child = JsonLineChild(
            "the direct worker", command, context.log_path("direct-worker"), env={**os.environ, **context.extra_env}, cwd=context.work_dir,
        )

    def __enter__(self) -> DirectWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        self.child.start()
        self.child.read(READY_TIMEOUT_S, "loading the models")

    def run(self, pipeline: Pipeline, concurrency: int, requests: int) -> Batch:
        """Run one batch of direct calls; return its latencies and wall time."""
        self.child.send({"pipeline": pipeline, "concurrency": concurrency, "requests": requests})
        reply = self.child.read(BATCH_TIMEOUT_S, f"a batch of {requests} {pipeline} calls")
        return Batch(list(reply["latencies_s"]), float(reply["wall_s"]))

    def stop(self) -> None:
        self.child.stop(STOP_TIMEOUT_S)
