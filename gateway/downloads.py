"""Downloads of ``audio_url`` over http(s), bounded in size, time and concurrency.

Each hop (the first URL and every redirect target) is checked against the
URL allowlist, resolved once, and its resolved addresses are checked too
(see ``gateway.url_allowlist``). The connection goes to a checked address,
with the URL's host in the Host header and as the TLS server name, so the
certificate is still verified for that name. The whole download, DNS and
redirects included, must finish within ``--download-timeout-s``, and its
body may not pass ``--max-upload-bytes``. Downloads run on the event loop,
not on a worker, and at most ``workers + max queue`` run at once; past
that a request gets 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import urllib.parse

import httpx

from gateway.errors import GatewayError, OverloadedError, PayloadTooLargeError
from gateway.url_allowlist import IPAddress, Target, UrlAllowlist, url_rejected

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CONNECT_TIMEOUT_S = 10.0


class DownloadFailedError(GatewayError):
    code = "download_failed"
    http_status = 502


class DownloadTimeoutError(GatewayError):
    code = "download_timeout"
    http_status = 504


class Downloader:
    """Fetcher of allowed URLs with one shared HTTP client and counters of the downloads in flight."""

    def __init__(self, allowlist: UrlAllowlist, max_bytes: int, timeout_s: float, max_active: int):
        self.allowlist = allowlist
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_active = max_active
        self.active = 0
        self.buffered_bytes = 0
        self.completed_total = 0
        self.rejected_total = 0
        self._client: httpx.AsyncClient | None = None

    def stats(self) -> dict[str, int]:
        return {
            "downloads_active": self.active,
            "downloads_buffered_bytes": self.buffered_bytes,
            "downloads_completed_total": self.completed_total,
            "downloads_rejected_total": self.rejected_total,
        }

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: a proxy from the environment would connect by name and undo the address check.
            self._client = httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(self.timeout_s, connect=min(CONNECT_TIMEOUT_S, self.timeout_s)),
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self, url: str) -> bytes:
        """Download ``url`` and return its body, or raise a GatewayError that names the URL and the limit."""
        target = self.allowlist.check_url(url)
        if self.active >= self.max_active:
            self.rejected_total += 1
            raise OverloadedError(
                f"{self.active} downloads are running, the limit is {self.max_active} (workers + max queue); "
                "retry after the Retry-After delay",
                retry_after_s=2,
            )

        self.active += 1
        body = bytearray()
        try:
            await asyncio.wait_for(self._follow(target, body), timeout=self.timeout_s)
        except asyncio.TimeoutError:
            raise DownloadTimeoutError(
                f"download of {url[:200]!r} did not finish within {self.timeout_s:g} s "
                f"({len(body)} bytes received); use a faster source or raise --download-timeout-s"
            ) from None
        finally:
            self.active -= 1
            self.buffered_bytes -= len(body)
        self.completed_total += 1
        return bytes(body)

    async def _follow(self, target: Target, body: bytearray) -> None:
        first_url = target.url
        for _ in range(MAX_REDIRECTS + 1):
            location = await self._fetch_hop(target, body)
            if location is None:
                return
            next_url = urllib.parse.urljoin(target.url, location)
            try:
                target = self.allowlist.check_url(next_url)
            except GatewayError as error:
                logger.warning("Rejected redirect from %s to %s: %s", target.url[:200], next_url[:200], error.message)
                raise url_rejected(f"redirect from {target.url[:200]!r} rejected: {error.message}") from None
        raise DownloadFailedError(
            f"download of {first_url[:200]!r} redirected more than {MAX_REDIRECTS} times; link the audio file directly"
        )

    async def _fetch_hop(self, target: Target, body: bytearray) -> str | None:
        """Fetch one hop into ``body``; return the redirect location, or None when the body was read."""
        addresses = self.allowlist.check_addresses(target, await self._resolve(target))
        last_error: Exception | None = None
        for address in addresses:
            try:
                return await self._request(target, address, body)
            except httpx.ConnectError as error:
                last_error = error
                continue
            except httpx.HTTPError as error:
                raise DownloadFailedError(
                    f"download of {target.url[:200]!r} failed after {len(body)} bytes: {type(error).__name__}: {error}"
                ) from None
        raise DownloadFailedError(
            f"could not connect to {target.host}:{target.port} for {target.url[:200]!r} ({last_error}); "
            "check that the server is up"
        )

    async def _resolve(self, target: Target) -> list[IPAddress]:
        if target.address is not None:
            return [target.address]
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise DownloadFailedError(f"host {target.host!r} of {target.url[:200]!r} could not be resolved: {error}") from None
        return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]

    async def _request(self, target: Target, address: IPAddress, body: bytearray) -> str | None:
        netloc = f"[{address}]" if address.version == 6 else str(address)
        pinned_url = f"{target.scheme}://{netloc}:{target.port}{target.rest.split('#', 1)[0]}"
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self.client().build_request(
            "GET", pinned_url, headers={"Host": target.authority, "Accept-Encoding": "identity"}, extensions=extensions
        )
        response = await self.client().send(request, stream=True)
        try:
            if response.status_code in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    raise DownloadFailedError(f"{target.url[:200]!r} returned HTTP {response.status_code} without a Location header")
                return location
            if response.status_code != 200:
                raise DownloadFailedError(
                    f"{target.url[:200]!r} returned HTTP {response.status_code}; check that the URL names an audio file"
                )
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                # A compressed body could expand far past the size limit in one block.
                raise DownloadFailedError(
                    f"{target.url[:200]!r} sent Content-Encoding {encoding!r} although the gateway asked for identity; "
                    "serve the audio file uncompressed"
                )
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                raise self._too_large(target, f"declares {declared} bytes")
            async for block in response.aiter_raw():
                body += block
                self.buffered_bytes += len(block)
                if len(body) > self.max_bytes:
                    raise self._too_large(target, f"sent more than {self.max_bytes} bytes")
            return None
        finally:
            await response.aclose()

    def _too_large(self, target: Target, what: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(
            f"download of {target.url[:200]!r} {what}, over the limit of {self.max_bytes} bytes; "
            "split the audio or raise --max-upload-bytes"
        )
