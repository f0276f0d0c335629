"""Memory profile: transcriptions with new request options each time, over several model identities.

Each request sends unique hotwords (``hot<index>``), so a model cache keyed
by request options loads a new instance every time, while a cache keyed by
model identity only sees the identities. The requests cycle through more
model identities than the cache bound, so a bounded cache has to evict.

Settings (environment variables, all optional):

- ``SOAK_REQUESTS``: number of requests in total, over all users (default 30).
- ``SOAK_MODELS``: comma-separated model names to cycle through (default:
  none, so each request uses the gateway's default model).
- ``SOAK_AUDIO_URL``: ``audio_url`` sent, a path under the gateway's media
  root (default ``speech.wav``).
- ``SOAK_PAUSE_S``: pause after each request of a user, in seconds (default
  0.5). It leaves the sampler time to read the gateway between requests.
- ``SOAK_REQUEST_TIMEOUT_S``: client timeout per request, in seconds
  (default 360, above the gateway's 300 s task timeout so that the gateway's
  504 arrives first).

After the last request completes the profile stops Locust. Locust's
``--run-time`` bounds the run in wall-clock time.
"""

from __future__ import annotations

import itertools
import logging

import gevent
from locust import HttpUser, constant, task
from locust.exception import StopUser

from profiles.common import configuration_id, env_float, env_int, env_list, env_str

logger = logging.getLogger(__name__)

REQUESTS = env_int("SOAK_REQUESTS", 30)
MODELS = env_list("SOAK_MODELS")
AUDIO_URL = env_str("SOAK_AUDIO_URL", "speech.wav")
PAUSE_S = env_float("SOAK_PAUSE_S", 0.5)
REQUEST_TIMEOUT_S = env_float("SOAK_REQUEST_TIMEOUT_S", 360.0, minimum=1.0)

# Shared by all users of this Locust process. gevent switches greenlets only
# at I/O, so next() on these counters needs no lock.
_next_index = itertools.count()
_completed = itertools.count(1)


class MemoryProfileUser(HttpUser):
    wait_time = constant(PAUSE_S)

    @task
    def transcribe(self) -> None:
        index = next(_next_index)
        if index >= REQUESTS:
            raise StopUser()

        model = MODELS[index % len(MODELS)] if MODELS else None
        options = {"hotwords": [f"hot{index}"]}
        payload: dict[str, object] = {"audio_url": AUDIO_URL, **options}
        if model is not None:
            payload["model"] = model

        context = {"index": index, "model": model, "config_id": configuration_id(model, options)}
        self.client.post(
            "/v1/responses",
            json=payload,
            name="POST /v1/responses",
            timeout=REQUEST_TIMEOUT_S,
            context=context,
        )

        if next(_completed) >= REQUESTS:
            logger.info("All %d requests completed; stopping Locust.", REQUESTS)
            # quit() kills every user greenlet, this one included, so it runs in its own greenlet.
            gevent.spawn(self.environment.runner.quit)
