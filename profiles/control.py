"""Coordination that makes a profile behave the same on one Locust process or many.

A profile plans a fixed number of requests (or sessions) and stops the test
after the last one. In Locust's distributed mode every Locust worker runs its
own users. So the plan lives in one place, the process that owns the test
(the Locust master, or the only process), and the Locust workers request
each index from it over Locust's custom messages:

- ``RequestBudget.take()`` returns the next index, or ``None`` when every
  planned index was handed out. A budget with a pace also returns the wall
  time at which that index is due.
- ``RequestBudget.complete()`` reports that one index finished, whatever its
  outcome. After the last one the owner runs the profile's ``after_load``
  step, if it has one, and then stops the test.

``request_stop`` ends the test from any process: headless runs quit, runs in
the web UI stop and keep the UI open.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

logger = logging.getLogger(__name__)

STOP_MESSAGE = "soak_stop"
# A Locust worker waits this long for the owner to hand out an index before it gives up on the request.
TAKE_TIMEOUT_S = 30.0


def owns_the_test(environment: Environment) -> bool:
    """Return whether this process runs the test's plan: the Locust master, or the only Locust process."""
    return not isinstance(environment.runner, WorkerRunner)


def request_stop(environment: Environment, reason: str) -> None:
    """Stop the test in every Locust process; safe to call from a user's own greenlet."""
    runner = environment.runner
    if runner is None:
        return
    if isinstance(runner, WorkerRunner):
        runner.send_message(STOP_MESSAGE, {"reason": reason})
        return

    logger.info("Stopping the test: %s", reason)
    options = environment.parsed_options
    headless = options is None or bool(getattr(options, "headless", True))
    # quit() and stop() kill every user greenlet, the caller's included, so they run in their own greenlet.
    gevent.spawn(runner.quit if headless else runner.stop)


def _on_stop_message(environment: Environment, msg: Any, **_: Any) -> None:
    request_stop(environment, (msg.data or {}).get("reason", "a Locust worker asked to stop"))


@events.init.add_listener
def _register_stop_message(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(STOP_MESSAGE, _on_stop_message)


@dataclass(frozen=True)
class Grant:
    """One planned index and, for a paced budget, the wall time (Unix seconds) at which it is due."""

    index: int
    due_s: float | None = None


class _Ledger:
    """The owner's counts: how many indices were handed out and how many finished."""

    def __init__(self, planned: int, interval_s: float | None) -> None:
        self.planned = planned
        self.interval_s = interval_s
        self.reset()

    def reset(self) -> None:
        self.started_s = time.time()
        self.handed_out = 0
        self.completed = 0

    def take(self) -> Grant | None:
        if self.handed_out >= self.planned:
            return None
        index = self.handed_out
        self.handed_out += 1
        due_s = self.started_s + index * self.interval_s if self.interval_s else None
        return Grant(index, due_s)

    def complete(self) -> bool:
        """Count one finished index; return True when it was the last planned one."""
        self.completed += 1
        return self.completed == self.planned


class RequestBudget:
    """Hands out the indices ``0 .. planned - 1`` across every user and Locust process, then stops the test.

    ``interval_s`` paces the plan: index ``i`` is due ``i * interval_s``
    seconds after the test started. ``after_load`` runs in the owning process
    after the last index finished (for example to watch the gateway recover),
    before the test stops. It must be bounded in time.
    """

    def __init__(
        self,
        name: str,
        planned: int,
        *,
        interval_s: float | None = None,
        after_load: Callable[[Environment], None] | None = None,
    ) -> None:
        self.name = name
        self.planned = planned
        self.after_load = after_load
        self.environment: Environment | None = None
        self._ledger = _Ledger(planned, interval_s)
        self._tickets = itertools.count()
        self._pending: dict[int, AsyncResult] = {}
        self._finisher: gevent.Greenlet | None = None
        events.init.add_listener(self._attach)
        events.test_start.add_listener(self._on_test_start)
        events.test_stop.add_listener(self._on_test_stop)

    @property
    def started_s(self) -> float:
        return self._ledger.started_s

    @property
    def completed(self) -> int:
        """Finished indices; counted only in the owning process."""
        return self._ledger.completed

    def take(self) -> Grant | None:
        """Return the next index (and when it is due), or ``None`` once every planned index was handed out."""
        runner = self.environment.runner if self.environment else None
        if not isinstance(runner, WorkerRunner):
            return self._ledger.take()

        ticket = next(self._tickets)
        reply = AsyncResult()
        self._pending[ticket] = reply
        runner.send_message(self._message("take"), {"ticket": ticket})
        try:
            data = reply.get(timeout=TAKE_TIMEOUT_S)
        except gevent.Timeout:
            logger.error("The Locust master did not hand out a %s index within %.0f s; this user stops.", self.name, TAKE_TIMEOUT_S)
            return None
        finally:
            self._pending.pop(ticket, None)
        if data.get("index") is None:
            return None
        return Grant(data["index"], data.get("due_s"))

    def complete(self) -> None:
        """Report that one handed-out index finished, whatever its outcome."""
        runner = self.environment.runner if self.environment else None
        if isinstance(runner, WorkerRunner):
            runner.send_message(self._message("done"))
            return
        self._count_completion()

    def _count_completion(self) -> None:
        if not self._ledger.complete():
            return
        logger.info("All %d planned %s requests finished.", self.planned, self.name)
        self._finisher = gevent.spawn(self._finish)

    def _finish(self) -> None:
        if self.after_load is not None and self.environment is not None:
            try:
                self.after_load(self.environment)
            except Exception:
                logger.exception("The %s profile's step after the load failed; stopping the test anyway.", self.name)
        if self.environment is not None:
            request_stop(self.environment, f"all {self.planned} planned {self.name} requests finished")

    def _message(self, kind: str) -> str:
        return f"soak_{self.name}_{kind}"

    def _attach(self, environment: Environment, **_: Any) -> None:
        self.environment = environment
        runner = environment.runner
        if isinstance(runner, MasterRunner):
            runner.register_message(self._message("take"), self._on_take)
            runner.register_message(self._message("done"), self._on_done)
        elif isinstance(runner, WorkerRunner):
            runner.register_message(self._message("grant"), self._on_grant)

    def _on_take(self, environment: Environment, msg: Any, **_: Any) -> None:
        grant = self._ledger.take()
        reply = {"ticket": msg.data["ticket"], "index": None, "due_s": None}
        if grant is not None:
            reply.update(index=grant.index, due_s=grant.due_s)
        environment.runner.send_message(self._message("grant"), reply, client_id=msg.node_id)

    def _on_done(self, environment: Environment, msg: Any, **_: Any) -> None:
        self._count_completion()

    def _on_grant(self, environment: Environment, msg: Any, **_: Any) -> None:
        reply = self._pending.get(msg.data["ticket"])
        if reply is not None:
            reply.set(msg.data)

    def _on_test_start(self, environment: Environment, **_: Any) -> None:
        if owns_the_test(environment):
            self._ledger.reset()

    def _on_test_stop(self, environment: Environment, **_: Any) -> None:
        finisher = self._finisher
        if finisher is not None and not finisher.dead and gevent.getcurrent() is not finisher:
            finisher.kill(block=False)
        self._finisher = None


def wait_until(due_s: float | None) -> None:
    """Sleep until the wall time ``due_s`` (no-op for ``None`` or a time in the past)."""
    if due_s is None:
        return
    delay_s = due_s - time.time()
    if delay_s > 0:
        gevent.sleep(delay_s)
