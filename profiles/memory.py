"""Memory profile: transcriptions with new request options each time, over several model identities.

Each request sends unique hotwords (``hot<index>``), so a model cache keyed
by request options loads a new instance every time, while a cache keyed by
model identity loads each identity once. The requests cycle through more
model identities than the cache bound, so a bounded cache has to evict.

Two variants, chosen by the number of users:

- sequential (1 user): one request at a time, with a pause after each so
  that the sampler can read the gateway between requests.
- overlapping (several users, ``soak run memory --variant overlapping``):
  requests overlap, so several model identities are loaded, leased and
  evicted at the same time. The incident's leak showed mainly under such
  concurrent, overlapping sessions.

Settings (environment variables, all optional):

- ``SOAK_REQUESTS``: number of requests in total, over all users and Locust
  processes (default 30).
- ``SOAK_MODELS``: comma-separated model names to cycle through (default:
  none, so each request uses the gateway's default model).
- ``SOAK_AUDIO_URL``: ``audio_url`` sent, a path under the gateway's media
  root (default ``speech.wav``).
- ``SOAK_PAUSE_S``: pause after each request of a user, in seconds (default
  0.5).
- ``SOAK_REQUEST_TIMEOUT_S``: client timeout per request, in seconds
  (default 360, above the gateway's 300 s task timeout so that the gateway's
  504 arrives first).

After the last request completes the profile stops Locust. Locust's
``--run-time`` bounds the run in wall-clock time.
"""

from __future__ import annotations

from locust import HttpUser, constant, task
from locust.exception import StopUser

from profiles import webui  # noqa: F401  (adds the Gateway tab to the web UI)
from profiles.common import configuration_id, env_float, env_int, env_list, env_str
from profiles.control import RequestBudget

REQUESTS = env_int("SOAK_REQUESTS", 30)
MODELS = env_list("SOAK_MODELS")
AUDIO_URL = env_str("SOAK_AUDIO_URL", "speech.wav")
PAUSE_S = env_float("SOAK_PAUSE_S", 0.5)
REQUEST_TIMEOUT_S = env_float("SOAK_REQUEST_TIMEOUT_S", 360.0, minimum=1.0)

budget = RequestBudget("memory", REQUESTS)


class MemoryProfileUser(HttpUser):
    wait_time = constant(PAUSE_S)

    @task
    def transcribe(self) -> None:
        grant = budget.take()
        if grant is None:
            raise StopUser()

        index = grant.index
        model = MODELS[index % len(MODELS)] if MODELS else None
        options = {"hotwords": [f"hot{index}"]}
        payload: dict[str, object] = {"audio_url": AUDIO_URL, **options}
        if model is not None:
            payload["model"] = model

        context = {"index": index, "model": model, "config_id": configuration_id(model, options)}
        try:
            self.client.post(
                "/v1/responses",
                json=payload,
                name="POST /v1/responses",
                timeout=REQUEST_TIMEOUT_S,
                context=context,
            )
        finally:
            budget.complete()
