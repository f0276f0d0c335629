"""audio_url as a URL: the allowlist, resolved addresses, redirects and download limits.

Every network case runs against loopback listeners this module starts. A
rejected URL must cause no connection, so each case checks the listeners'
accepted-connection counts before and after.
"""

from __future__ import annotations

import httpx
import pytest

from gateway.errors import ForbiddenPathError, SettingsError
from gateway.url_allowlist import UrlAllowlist, parse_allowlist
from tests.reliability.conftest import SPEECH_WAV, assert_at_rest, rss_baseline
from tests.reliability.listeners import LoopbackListener, Reply, SeenRequest
from tests.servers import free_port

MAX_UPLOAD_BYTES = 1_000_000
DOWNLOAD_TIMEOUT_S = 3
# A port that was free when the module loaded; nothing listens there.
CLOSED_PORT = free_port()


# -- the allowlist on its own --------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("media.example.com", ("media.example.com",)),
        ("Media.Example.COM.:8443", ("media.example.com:8443",)),
        ("192.0.2.10:80, [2001:DB8::1]:9000", ("192.0.2.10:80", "[2001:db8::1]:9000")),
        ("a.example,a.example", ("a.example",)),
    ],
)
def test_allowlist_parses_entries(value, expected):
    assert parse_allowlist(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("http://media.example.com", "leave out the scheme"),
        ("media.example.com/path", "leave out the scheme"),
        ("user@media.example.com", "leave out the scheme"),
        ("media.example.com:0", "invalid port"),
        ("media.example.com:99999", "invalid port"),
        ("media.example.com:", "invalid port"),
        ("2130706433", "dotted decimal"),
        ("0x7f.0.0.1", "dotted decimal"),
        ("[::1", "unclosed"),
        ("[fe80::1%eth0]", "zone id"),
        ("bad_name.example", "invalid host name"),
        ("ünicode.example", "punycode"),
        ("example.123", "last label is a number"),
    ],
)
def test_allowlist_rejects_bad_entries(value, fragment):
    with pytest.raises(SettingsError, match="url allowlist") as caught:
        parse_allowlist(value)
    assert fragment in caught.value.message


ALLOWLIST = UrlAllowlist(("media.example.com", "192.0.2.10:8080", "[2001:db8::1]:9000"))


@pytest.mark.parametrize(
    "url",
    [
        "http://media.example.com/a.wav",
        "https://media.example.com/a.wav",
        "http://MEDIA.example.com./a.wav",
        "http://media.example.com:80/a.wav",
        "http://192.0.2.10:8080/a.wav",
        "http://[2001:db8:0:0::1]:9000/a.wav",
        "http://media.example.com",
    ],
)
def test_url_on_allowlist_passes(url):
    target = ALLOWLIST.check_url(url)

    assert target.host in ("media.example.com", "192.0.2.10", "2001:db8::1")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://media.example.com:8080/a.wav", "not on the URL allowlist"),
        ("https://192.0.2.10/a.wav", "not on the URL allowlist"),
        ("http://other.example.com/a.wav", "not on the URL allowlist"),
        ("http://evil-media.example.com/a.wav", "not on the URL allowlist"),
        ("http://media.example.com.evil.test/a.wav", "not on the URL allowlist"),
        ("http://3221225994:8080/a.wav", "dotted decimal"),
        ("http://0xc000020a:8080/a.wav", "dotted decimal"),
        ("http://0300.0.2.10:8080/a.wav", "dotted decimal"),
        ("http://192.0.522:8080/a.wav", "dotted decimal"),
        ("http://192.0.2.10.:8080/a.wav", "dotted decimal"),
        ("http://[::ffff:192.0.2.10]:8080/a.wav", "not on the URL allowlist"),
        ("http://[2001:db8::1%25eth0]:9000/a.wav", "zone id"),
        ("http://media.example.com@other.example.com/a.wav", "user information"),
        ("http://user:secret@media.example.com/a.wav", "user information"),
        ("http://media.example.com\\@other.example.com/a.wav", "backslash"),
        ("http://media.example.com /a.wav", "whitespace"),
        ("http://media%2eexample.com/a.wav", "percent-encoded"),
        ("http://médiä.example.com/a.wav", "punycode"),
        ("http://media.example.com:notaport/a.wav", "invalid port"),
        ("http:///a.wav", "no host"),
        ("ftp://media.example.com/a.wav", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://media.example.com/", "scheme 'gopher'"),
        ("//media.example.com/a.wav", "not an absolute"),
    ],
)
def test_url_off_allowlist_rejected(url, fragment):
    with pytest.raises(ForbiddenPathError) as caught:
        ALLOWLIST.check_url(url)

    assert caught.value.code == "url_not_allowed"
    assert fragment in caught.value.message, caught.value.message


def test_empty_allowlist_rejects_every_url():
    with pytest.raises(ForbiddenPathError, match="--url-allowlist"):
        UrlAllowlist(()).check_url("http://media.example.com/a.wav")


@pytest.mark.parametrize(
    ("addresses", "allowed"),
    [
        (["93.184.215.14"], True),
        (["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], True),
        (["127.0.0.1"], False),
        (["93.184.215.14", "10.0.0.5"], False),
        (["169.254.169.254"], False),
        (["::1"], False),
        (["::ffff:127.0.0.1"], False),
        (["::ffff:93.184.215.14"], True),
        (["0.0.0.0"], False),
        (["224.0.0.1"], False),
        (["100.64.0.1"], False),
        (["fd00::1"], False),
    ],
)
def test_resolved_addresses_of_allowed_name(addresses, allowed):
    import ipaddress

    target = ALLOWLIST.check_url("http://media.example.com/a.wav")
    resolved = [ipaddress.ip_address(address) for address in addresses]

    if allowed:
        assert ALLOWLIST.check_addresses(target, resolved)
    else:
        with pytest.raises(ForbiddenPathError, match="non-public address"):
            ALLOWLIST.check_addresses(target, resolved)


def test_listed_private_address_may_be_reached():
    import ipaddress

    allowlist = UrlAllowlist(("storage.internal:9000", "10.0.0.5:9000"))
    target = allowlist.check_url("http://storage.internal:9000/a.wav")

    assert allowlist.check_addresses(target, [ipaddress.ip_address("10.0.0.5")])
    with pytest.raises(ForbiddenPathError, match="10.0.0.6"):
        allowlist.check_addresses(target, [ipaddress.ip_address("10.0.0.6")])


# -- a real gateway against loopback listeners --------------------------------


def allowed_routes(other: dict[str, LoopbackListener]):
    """Responses of the allowed listener, by path; ``other`` names the listeners a redirect may point to."""

    def respond(request: SeenRequest) -> Reply:
        path = request.target
        routes = {
            "/speech.wav": Reply(200, SPEECH_WAV),
            "/to-self": Reply(302, headers={"Location": "/speech.wav"}),
            "/to-other-port": Reply(302, headers={"Location": other["blocked"].url()}),
            "/to-decimal": Reply(301, headers={"Location": f"http://2130706433:{other['blocked'].port}/speech.wav"}),
            "/to-ipv6": Reply(307, headers={"Location": other["ipv6"].url()}),
            "/to-file": Reply(308, headers={"Location": "file:///etc/passwd"}),
            "/to-userinfo": Reply(302, headers={"Location": f"http://x@{other['blocked'].authority}/speech.wav"}),
            "/to-dns-trick": Reply(302, headers={"Location": f"http://localhost:{other['trick'].port}/speech.wav"}),
            "/loop": Reply(302, headers={"Location": "/loop"}),
            "/missing": Reply(404, b"not here"),
            "/not-audio": Reply(200, b"<html>this is not audio</html>" * 10),
            "/huge-declared": Reply(200, b"", declared_length=50 * MAX_UPLOAD_BYTES),
            "/huge-undeclared": Reply(200, b"\x00" * (MAX_UPLOAD_BYTES + 1000), close_delimited=True),
            "/gzip": Reply(200, b"\x1f\x8b" + b"\x00" * 100, headers={"Content-Encoding": "gzip"}),
            "/drip": Reply(200, SPEECH_WAV[:2000], drip=True),
            "/no-location": Reply(302),
        }
        return routes.get(path, Reply(404, b"unknown path"))

    return respond


@pytest.fixture(scope="module")
def network(module_gateway):
    """Listeners (allowed, blocked, ipv6, trick) and a gateway whose allowlist names only the allowed one."""
    others: dict[str, LoopbackListener] = {}
    listeners = {
        "allowed": LoopbackListener(allowed_routes(others)),
        "blocked": LoopbackListener(lambda request: Reply(200, SPEECH_WAV)),
        "ipv6": LoopbackListener(lambda request: Reply(200, SPEECH_WAV), host="::1"),
        "trick": LoopbackListener(lambda request: Reply(200, SPEECH_WAV)),
    }
    others.update(listeners)
    for listener in listeners.values():
        listener.__enter__()
    allowed = listeners["allowed"]
    # localhost:<trick port> is listed as a name, but its address 127.0.0.1:<trick port> is not.
    allowlist = (
        f"127.0.0.1:{allowed.port},localhost:{allowed.port},localhost:{listeners['trick'].port},127.0.0.1:{CLOSED_PORT}"
    )
    try:
        server = module_gateway(
            "--url-allowlist", allowlist,
            "--max-upload-bytes", str(MAX_UPLOAD_BYTES),
            "--download-timeout-s", str(DOWNLOAD_TIMEOUT_S),
        )
        yield server, listeners, rss_baseline(server)
    finally:
        for listener in listeners.values():
            listener.__exit__(None, None, None)


def accepted(listeners: dict[str, LoopbackListener]) -> dict[str, int]:
    return {name: listener.accepted for name, listener in listeners.items()}


def transcribe_url(server, url: str) -> httpx.Response:
    return server.transcribe(audio_url=url, timeout_s=60)


def test_allowed_url_downloads(network):
    server, listeners, _ = network
    before = listeners["allowed"].accepted

    response = transcribe_url(server, listeners["allowed"].url())

    assert response.status_code == 200, response.text
    assert response.json()["duration_ms"] > 10_000
    assert listeners["allowed"].accepted == before + 1


def test_allowed_name_sends_its_host_header(network):
    server, listeners, _ = network
    allowed = listeners["allowed"]

    response = transcribe_url(server, f"http://localhost:{allowed.port}/speech.wav")

    assert response.status_code == 200, response.text
    assert allowed.requests[-1].headers["host"] == f"localhost:{allowed.port}"


def test_redirect_within_allowed_host_followed(network):
    server, listeners, _ = network
    before = listeners["allowed"].accepted

    response = transcribe_url(server, listeners["allowed"].url("/to-self"))

    assert response.status_code == 200, response.text
    assert listeners["allowed"].accepted == before + 2


def rejected_urls(listeners: dict[str, LoopbackListener]) -> list[tuple[str, str]]:
    allowed, blocked, ipv6, trick = (listeners[name] for name in ("allowed", "blocked", "ipv6", "trick"))
    return [
        (blocked.url(), "not on the URL allowlist"),
        (f"http://2130706433:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://0x7f000001:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://0x7f.0.0.1:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://0177.0.0.1:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://127.1:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://127.0.0.1.:{allowed.port}/speech.wav", "dotted decimal"),
        (f"http://[::ffff:127.0.0.1]:{allowed.port}/speech.wav", "not on the URL allowlist"),
        (f"http://[::ffff:7f00:1]:{allowed.port}/speech.wav", "not on the URL allowlist"),
        (ipv6.url(), "not on the URL allowlist"),
        (f"http://[::1]:{allowed.port}/speech.wav", "not on the URL allowlist"),
        (f"http://localhost:{blocked.port}/speech.wav", "not on the URL allowlist"),
        (f"http://localhost.:{blocked.port}/speech.wav", "not on the URL allowlist"),
        (f"http://127.0.0.1:{allowed.port}@127.0.0.1:{blocked.port}/speech.wav", "user information"),
        (f"http://user:pw@127.0.0.1:{allowed.port}/speech.wav", "user information"),
        (f"http://127.0.0.1:{allowed.port}\\@127.0.0.1:{blocked.port}/speech.wav", "backslash"),
        (f"http://127.0.0.1%2e:{allowed.port}/speech.wav", "percent-encoded"),
        (f"http://[::1%25lo]:{ipv6.port}/speech.wav", "zone id"),
        (f"http://１２７.0.0.1:{allowed.port}/speech.wav", "punycode"),
        ("https://127.0.0.1/speech.wav", "not on the URL allowlist"),
        (f"ftp://127.0.0.1:{allowed.port}/speech.wav", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        (f"http://localhost:{trick.port}/speech.wav", "non-public address"),
        (allowed.url("/to-other-port"), "redirect from"),
        (allowed.url("/to-decimal"), "dotted decimal"),
        (allowed.url("/to-ipv6"), "redirect from"),
        (allowed.url("/to-file"), "scheme 'file'"),
        (allowed.url("/to-userinfo"), "user information"),
        (allowed.url("/to-dns-trick"), "non-public address"),
    ]


def test_rejected_urls_cause_no_connection(network):
    server, listeners, _ = network
    failures = []

    for url, fragment in rejected_urls(listeners):
        before = accepted(listeners)
        redirects = url.startswith(listeners["allowed"].url("/to-"))

        response = transcribe_url(server, url)

        after = accepted(listeners)
        expected = dict(before)
        if redirects:
            # Only the allowed listener's own redirect response is fetched.
            expected["allowed"] += 1
        if response.status_code != 403 or response.json()["error"]["code"] != "url_not_allowed":
            failures.append(f"{url}: HTTP {response.status_code} {response.text[:200]}")
        elif fragment not in response.json()["error"]["message"]:
            failures.append(f"{url}: message lacks {fragment!r}: {response.json()['error']['message']}")
        if after != expected:
            failures.append(f"{url}: connections {before} -> {after}, expected {expected}")

    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    ("path", "status", "code", "fragment"),
    [
        ("/missing", 502, "download_failed", "HTTP 404"),
        ("/not-audio", 400, "invalid_audio", "not decodable"),
        ("/huge-declared", 413, "payload_too_large", f"limit of {MAX_UPLOAD_BYTES} bytes"),
        ("/huge-undeclared", 413, "payload_too_large", f"limit of {MAX_UPLOAD_BYTES} bytes"),
        ("/gzip", 502, "download_failed", "Content-Encoding 'gzip'"),
        ("/loop", 502, "download_failed", "redirected more than 5 times"),
        ("/no-location", 502, "download_failed", "without a Location"),
        ("/drip", 504, "download_timeout", f"within {DOWNLOAD_TIMEOUT_S} s"),
    ],
)
def test_download_failures(network, path, status, code, fragment):
    server, listeners, _ = network

    response = transcribe_url(server, listeners["allowed"].url(path))

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert fragment in error["message"], error["message"]


def test_allowed_port_without_server_is_download_failed(network):
    server, listeners, _ = network

    response = transcribe_url(server, f"http://127.0.0.1:{CLOSED_PORT}/speech.wav")

    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "download_failed"
    assert "could not connect" in response.json()["error"]["message"]


def test_downloads_leave_nothing_behind(network):
    server, _, baseline = network

    status = assert_at_rest(server, baseline, "URL allowlist, redirects and downloads")

    assert status["downloads_completed_total"] >= 3
