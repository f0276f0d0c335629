"""The URL allowlist: which ``http(s)`` URLs ``audio_url`` may name, and which addresses they may reach.

Rules, applied to the first URL and again to every redirect target:

- The scheme is ``http`` or ``https``. URLs with userinfo (``user@host``),
  percent-encoded or non-ASCII hosts, IPv6 zone ids, or IPv4 addresses in
  any spelling but dotted decimal (``2130706433``, ``0x7f000001``,
  ``0177.0.0.1``, ``127.1``) are rejected, because URL parsers and resolvers
  disagree on what those spellings mean.
- The host must equal an entry's host exactly, after lower-casing and
  removing one trailing dot from a name. There are no wildcards or suffix
  matches. An entry without a port allows only the scheme's default port
  (80 or 443); an entry with a port allows http and https on that port.
- The host is resolved once per hop, and the download connects to an
  address from that resolution, never to a second lookup, so a name that
  changes its answer between check and connect (DNS rebinding) gets nowhere.
- Every resolved address must be global unicast, or itself be on the
  allowlist as an IP literal entry for the same port. An allowed name thus
  never reaches loopback, private, link-local (cloud metadata) or other
  special addresses unless the operator listed those addresses too.
  IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from gateway.errors import ForbiddenPathError, InvalidRequestError, SettingsError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 4096

_URL_PATTERN = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>[/?#].*)?", re.DOTALL)
_LABEL_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A part that inet_aton() and WHATWG URL parsers read as a number: decimal, octal or hex.
_NUMERIC_PART_PATTERN = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")


def url_rejected(message: str) -> ForbiddenPathError:
    return ForbiddenPathError(message, code="url_not_allowed")


@dataclass(frozen=True)
class HostPort:
    """A canonical host (a lower-case name, or an IP address in its standard text form) and a port."""

    host: str
    port: int | None  # None: the scheme's default port

    @property
    def address(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class Target:
    """One checked URL: where to connect and what to send there."""

    url: str
    scheme: str
    host: str  # canonical host, as matched against the allowlist
    port: int
    authority: str  # the Host header: the host as written in the URL, with its explicit port
    rest: str  # path, query and fragment as written, "/" when absent

    @property
    def address(self) -> IPAddress | None:
        return HostPort(self.host, None).address


def canonical_host(text: str, where: str) -> str:
    """Return the canonical form of a URL or entry host, or raise ValueError that names the problem."""
    if not text:
        raise ValueError(f"{where} has no host")
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"{where} has an unclosed IPv6 bracket")
        inner = text[1:-1]
        if "%" in inner:
            raise ValueError(f"{where} has an IPv6 zone id ({inner!r}); zone ids are not allowed")
        try:
            return ipaddress.IPv6Address(inner).compressed
        except ValueError:
            raise ValueError(f"{where} has an invalid IPv6 address {inner!r}") from None
    if "%" in text:
        raise ValueError(f"{where} has a percent-encoded host {text!r}; write the host in plain ASCII")
    if not text.isascii():
        raise ValueError(f"{where} has a non-ASCII host {text!r}; write it in its punycode (xn--) form")

    host = text.lower()
    parts = host.split(".")
    if all(_NUMERIC_PART_PATTERN.fullmatch(part) for part in (parts[:-1] if parts[-1] == "" else parts)):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(
                f"{where} has host {text!r}, which resolvers read as an IPv4 address; "
                "write IPv4 addresses in dotted decimal form such as 192.0.2.10"
            ) from None
        return str(address)

    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if not all(_LABEL_PATTERN.fullmatch(label) for label in labels):
        raise ValueError(f"{where} has an invalid host name {text!r}; use letters, digits, '-' and '.'")
    if labels[-1].isdigit():
        raise ValueError(f"{where} has host {text!r}, whose last label is a number; no domain ends in a number")
    return name


def _split_host_port(authority: str, where: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        closing = authority.find("]")
        host_text, after = (authority[: closing + 1], authority[closing + 1 :]) if closing >= 0 else (authority, "")
        if after and not after.startswith(":"):
            raise ValueError(f"{where} has text after the IPv6 address: {after!r}")
        port_text = after[1:] if after else None
    elif ":" in authority:
        host_text, port_text = authority.rsplit(":", 1)
    else:
        host_text, port_text = authority, None

    if port_text is None:
        return host_text, None
    if not port_text.isdigit() or not port_text.isascii() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{where} has an invalid port {port_text!r}; use a number from 1 to 65535")
    return host_text, int(port_text)


def parse_entry(text: str) -> HostPort:
    """Parse one allowlist entry ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    entry = text.strip()
    if "/" in entry or "@" in entry or "://" in entry:
        raise ValueError(f"entry {entry!r} is not host[:port]; leave out the scheme, path and user name")
    host_text, port = _split_host_port(entry, f"entry {entry!r}")
    return HostPort(canonical_host(host_text, f"entry {entry!r}"), port)


def parse_allowlist(value: str) -> tuple[str, ...]:
    """Parse ``host[:port],...`` into canonical entry strings; an empty value allows no download."""
    entries = []
    for part in value.split(","):
        if not part.strip():
            continue
        try:
            entries.append(str(parse_entry(part)))
        except ValueError as error:
            raise SettingsError(f"url allowlist: {error}; use host[:port] entries separated by commas") from None
    return tuple(dict.fromkeys(entries))


class UrlAllowlist:
    """The parsed ``--url-allowlist``: checks URLs and resolved addresses against its entries."""

    def __init__(self, entries: tuple[str, ...]):
        self.entries = tuple(parse_entry(entry) for entry in entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def describe(self) -> str:
        return ", ".join(str(entry) for entry in self.entries) or "empty"

    def check_url(self, url: str) -> Target:
        """Return the checked target of ``url``, or raise a 403 error that names the rule it broke."""
        short_url = url if len(url) <= 200 else url[:200] + "..."
        if len(url) > MAX_URL_CHARS:
            raise InvalidRequestError(
                f"audio_url has {len(url)} characters, more than the limit of {MAX_URL_CHARS}", code="invalid_audio_url"
            )
        if _FORBIDDEN_CHARS.search(url):
            raise url_rejected(f"URL {short_url!r} contains whitespace, a control character or a backslash")
        match = _URL_PATTERN.fullmatch(url)
        if match is None:
            raise url_rejected(f"{short_url!r} is not an absolute http(s) URL")
        scheme = match["scheme"].lower()
        if scheme not in DEFAULT_PORTS:
            raise url_rejected(f"URL scheme {scheme!r} is not allowed in {short_url!r}; only http and https URLs download")
        if not self.entries:
            raise url_rejected(
                f"URL {short_url!r} rejected: downloads are off because the URL allowlist is empty; "
                "start the gateway with --url-allowlist host[:port] or pass a path under a media root"
            )
        authority = match["authority"]
        if "@" in authority:
            raise url_rejected(f"URL {short_url!r} contains user information ('@'); URLs with a user name are not allowed")

        try:
            host_text, port = _split_host_port(authority, f"URL {short_url!r}")
            host = canonical_host(host_text, f"URL {short_url!r}")
        except ValueError as error:
            raise url_rejected(str(error)) from None
        effective_port = port if port is not None else DEFAULT_PORTS[scheme]
        if not self.allows(host, effective_port, scheme):
            raise url_rejected(
                f"host {HostPort(host, effective_port)} of URL {short_url!r} is not on the URL allowlist "
                f"({self.describe()}); add it with --url-allowlist"
            )
        return Target(url, scheme, host, effective_port, authority, match["rest"] or "/")

    def allows(self, host: str, port: int, scheme: str) -> bool:
        for entry in self.entries:
            entry_port = entry.port if entry.port is not None else DEFAULT_PORTS[scheme]
            if entry.host == host and entry_port == port:
                return True
        return False

    def check_addresses(self, target: Target, addresses: list[IPAddress]) -> list[IPAddress]:
        """Return the addresses to connect to, or raise a 403 error unless every one is allowed."""
        if not addresses:
            raise url_rejected(f"host {target.host!r} resolved to no address")
        checked = []
        for address in addresses:
            mapped = getattr(address, "ipv4_mapped", None)
            judged = mapped if mapped is not None else address
            if not (judged.is_global and not judged.is_multicast) and not self.allows(str(judged), target.port, target.scheme):
                listed = HostPort(str(judged), target.port)
                raise url_rejected(
                    f"host {target.host!r} resolves to {judged}, a non-public address that is not on the URL allowlist; "
                    f"add {listed} to --url-allowlist if the gateway may download from it"
                )
            checked.append(judged)
        return list(dict.fromkeys(checked))
