"""schemathesis against the gateway's OpenAPI schema: no 5xx, no crash, no growth.

Each operation gets a bounded number of generated requests, both valid and
invalid for the schema. The default run sends up to 25 per operation, and
the ``soak`` variant up to ten times as many. The gateway has debug endpoints on, so those are fuzzed too.
"""

from __future__ import annotations

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, strategies

from tests.reliability.conftest import assert_at_rest, rss_baseline, wait_until

REQUEST_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def gateway(module_gateway):
    server = module_gateway(
        "--debug-endpoints", "--session-ttl-s", "1", "--sweep-interval-s", "0.2", "--max-upload-bytes", "2000000",
    )
    return server, rss_baseline(server)


def cases_of(operation):
    """Requests that fit the schema and requests that break it, mixed."""
    return strategies.one_of(
        operation.as_strategy(generation_mode=mode) for mode in schemathesis.GenerationMode
    )


def fuzz_every_operation(server, max_examples: int) -> dict[str, int]:
    """Send generated requests to every operation; return the number sent per operation."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    sent: dict[str, int] = {}
    failures: list[str] = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            sent[label] = 0

            @hypothesis.settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=cases_of(operation))
            def call(case) -> None:
                response = case.call(base_url=server.url, session=session, timeout=REQUEST_TIMEOUT_S)
                sent[label] += 1
                if response.status_code >= 500 and response.status_code != 503:
                    failures.append(f"{label}: HTTP {response.status_code} for {case.as_curl_command()}: {response.text[:300]}")
                content_type = response.headers.get("content-type") or [""]
                if response.status_code >= 400 and content_type[0].startswith("application/json"):
                    body = response.json()
                    if "error" not in body or {"code", "message"} - set(body["error"]):
                        failures.append(f"{label}: HTTP {response.status_code} without the error body: {response.text[:300]}")

            call()
    assert not failures, "\n".join(failures[:20])
    return sent


@pytest.mark.parametrize("max_examples", [25, pytest.param(250, marks=pytest.mark.soak)])
def test_schema_fuzz_no_server_errors(gateway, max_examples):
    server, baseline = gateway

    sent = fuzz_every_operation(server, max_examples)

    assert len(sent) >= 12, sent
    assert all(count >= 1 for count in sent.values()), sent
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
    # Fuzzed sessions expire after the 1 s TTL; wait for the sweeper before the at-rest check.
    wait_until(lambda: server.status()["sessions_open"] == 0, message="fuzzed sessions swept")
    assert_at_rest(server, baseline, f"schemathesis, {max_examples} examples per operation", requests_sent=sum(sent.values()))
