"""Every HTTP request this server makes on its own: back-channel logouts, OpenID discovery,
JWKS, token and profile requests to providers, SAML metadata.

URLs come from people we do not fully trust (a client registering its back-channel URI,
an operator pasting an issuer), so each request goes through one guard (server-side
request forgery):

- at configuration time `Outbound.check_url` refuses a scheme, port or host that could
  never be fetched (a name that does not resolve yet passes: it is checked when sent);
- at send time the host is resolved once, the request is refused if ANY address is not
  public (`is_public`) and not in the allow-list, and the connection goes to the very
  address that was checked: a second DNS answer (rebinding) cannot redirect it. TLS still
  checks the certificate and sends SNI for the host name;
- `https` only, except `http` to an allow-listed loopback address (a development setup);
- no environment proxies, no redirects followed, a cap on the response body and one
  deadline for the whole request (a server trickling a byte a second is cut off).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # requests itself is imported by `outbound_http`, when a request is sent
    from requests.structures import CaseInsensitiveDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
MAX_BYTES = 1024 * 1024  # JSON documents and tokens are a few KiB
DEADLINE = 10.0  # seconds for a whole request, resolution to last byte
RESOLVE_TIMEOUT = 5.0  # seconds for a name lookup at configuration time
CONNECT_TIMEOUT = 5.0
USER_AGENT = "myaccount"

# Host names, IPv4 and bracketed IPv6 literals, a port: nothing a parser could read two ways
# (no user info, backslashes, percent-encoding or non-ASCII), so the host checked here is
# the host urllib3 connects to.
_NETLOC = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*)|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundError(Exception):
    """A server-initiated request failed: unreachable, timed out, too large, redirected."""


class DestinationRefused(OutboundError):
    """The URL may not be fetched by this server: scheme, port or a non-public address."""


# --- the address policy -----------------------------------------------------------------


def _embedded_ipv4(addr: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def parse_address(text: str) -> Address:
    """An address as resolvers give it (an IPv6 scope such as `%eth0` is dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def is_public(addr: Address) -> bool:
    """Reachable on the public internet: not loopback, private (RFC 1918, fc00::/7),
    site-local (fec0::/10), link-local (169.254/16 with the cloud metadata service, fe80::/10), shared
    (100.64/10), unspecified, multicast or reserved. IPv6 forms of an IPv4 address
    are judged by that IPv4 address."""
    embedded = _embedded_ipv4(addr)
    if embedded is not None:
        return is_public(embedded)
    # `is_global` alone lets multicast through (Python 3.11), and site-local fec0::/10 (deprecated
    # by RFC 3879, still routed inside some networks): ask every question.
    site_local = isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local
    return addr.is_global and not (addr.is_multicast or addr.is_reserved or addr.is_unspecified or site_local
                                   or addr.is_link_local or addr.is_loopback or addr.is_private)


def _effective(addr: Address) -> Address:
    embedded = _embedded_ipv4(addr)
    return embedded if embedded is not None and addr.ipv4_mapped is not None else addr


def parse_allow_list(value: str) -> tuple[Network, ...]:
    """`IDP_OUTBOUND_ALLOW`: comma-separated CIDRs, or `none`. Raises ValueError naming the bad entry."""
    if value.strip().lower() == "none":
        return ()
    networks = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError as err:
            raise ValueError(f"{item!r} is not a network in CIDR notation ({err})") from None
    return tuple(networks)


def is_loopback_host(host: str | None) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1: a host only this machine reaches."""
    if not host:
        return False
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return parse_address(host).is_loopback
    except ValueError:
        return False


def default_allow_list(issuer: str) -> tuple[Network, ...]:
    """Loopback when the issuer itself is on loopback (a development deployment that only
    this machine can reach, whose products run beside it); nothing otherwise."""
    return LOOPBACK if is_loopback_host(urlsplit(issuer).hostname) else ()


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses of `host`, in the order the system prefers them."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


# Name lookups run in these threads so a slow resolver is bounded by our deadline (getaddrinfo
# has none). One pool per process: threads do not survive the fork into server workers.
_lookups: tuple[int, ThreadPoolExecutor] | None = None
_lookups_lock = threading.Lock()


def _lookup_pool() -> ThreadPoolExecutor:
    global _lookups
    with _lookups_lock:
        if _lookups is None or _lookups[0] != os.getpid():
            _lookups = (os.getpid(), ThreadPoolExecutor(max_workers=8, thread_name_prefix="idp-outbound-dns"))
        return _lookups[1]


# --- the deadline ---------------------------------------------------------------------------


class _Deadline:
    """One time limit for a whole request. Per-socket timeouts do not bound a server that
    sends one byte a second; when this one fires, every socket of the request is shut
    down (through a duplicate descriptor of our own, so a socket closed and reused
    meanwhile is never touched) and blocked reads return at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        dup = sock.dup()
        with self._lock:
            self._sockets.append(dup)
            if self.expired:
                _shutdown(dup)

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self) -> None:
        self._timer.cancel()
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _normal_host(host: str | None) -> str:
    return (host or "").strip("[]").lower().rstrip(".")


# --- the client -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundResponse:
    """What came back: status, headers and the whole (capped) body."""

    status: int
    headers: CaseInsensitiveDict
    content: bytes

    @property
    def text(self) -> str:
        """The body decoded with the charset it names, else UTF-8 (JSON, XML)."""
        match = re.search(r"charset=\"?([\w.:-]+)", self.headers.get("Content-Type", ""), re.IGNORECASE)
        try:
            return self.content.decode(match.group(1) if match else "utf-8", errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self):
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


@dataclass
class Outbound:
    """The guard and HTTP client for server-initiated requests.

    `allow`: networks that may be reached although they are not public (IDP_OUTBOUND_ALLOW).
    `resolver(host, port)` -> addresses: the system's by default; tests give their own.
    `verify`: certificate checking as requests takes it (True, or a CA bundle path).
    """

    allow: tuple[Network, ...] = ()
    resolver: Resolver = system_resolver
    verify: bool | str = True

    # -- the policy

    def allowed(self, addr: Address) -> bool:
        addr = _effective(addr)
        return is_public(addr) or any(addr.version == net.version and addr in net for net in self.allow)

    def _parts(self, url: str):
        """(scheme, host, port) of a URL this server may fetch in principle, or DestinationRefused."""
        if not isinstance(url, str):
            raise DestinationRefused("the URL must be a string")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise DestinationRefused(f"not a valid URL: {url}") from None
        if parts.scheme not in ("http", "https"):
            raise DestinationRefused(f"only https URLs are fetched: {url}")
        if not parts.netloc or not _NETLOC.fullmatch(parts.netloc):
            raise DestinationRefused(f"the URL needs a plain host name or address (no user info): {url}")
        host = _normal_host(parts.hostname)
        if not host:
            raise DestinationRefused(f"the URL has no host: {url}")
        port = port or (443 if parts.scheme == "https" else 80)
        if port < 1024 and port not in (80, 443):
            raise DestinationRefused(f"port {port} is refused (below 1024 only 80 and 443): {url}")
        return parts.scheme, host, port

    def _judge(self, url: str, scheme: str, addresses: Iterable[str]) -> tuple[str, ...]:
        checked = []
        for text in addresses:
            try:
                addr = parse_address(text)
            except ValueError:
                raise DestinationRefused(f"the host of {url} resolves to an unusable address") from None
            if not self.allowed(addr):
                raise DestinationRefused(f"{url} leads to a non-public address ({addr})")
            if scheme == "http" and not _effective(addr).is_loopback:
                raise DestinationRefused(f"http is only for loopback addresses; use https: {url}")
            checked.append(str(addr))
        if not checked:
            raise DestinationRefused(f"the host of {url} has no address")
        return tuple(checked)

    def _resolve(self, host: str, port: int, timeout: float) -> list[str]:
        try:
            return [str(parse_address(host))]
        except ValueError:
            pass
        if timeout <= 0:
            raise OutboundError(f"no time left to resolve {host}")
        try:
            return list(_lookup_pool().submit(self.resolver, host, port).result(timeout))
        except FutureTimeout:
            raise OutboundError(f"resolving {host} timed out") from None
        except (OSError, UnicodeError) as err:
            raise OutboundError(f"cannot resolve {host}: {err}") from None

    def check_url(self, url: str) -> None:
        """At configuration time: DestinationRefused unless this URL could be fetched.
        A name that does not resolve (yet) passes an https URL: it is checked again when fetched."""
        scheme, host, port = self._parts(url)
        try:
            addresses = self._resolve(host, port, RESOLVE_TIMEOUT)
        except OutboundError:
            if scheme == "http":
                raise DestinationRefused(f"http is only for loopback addresses; use https: {url}") from None
            return
        self._judge(url, scheme, addresses)

    # -- requests

    def request(self, method: str, url: str, *, data=None, headers: dict | None = None, auth=None,
                deadline: float = DEADLINE, max_bytes: int = MAX_BYTES) -> OutboundResponse:
        """Send one request through the guard; OutboundError (or DestinationRefused) when it
        cannot be sent, does not finish within `deadline` seconds, is redirected, or answers
        more than `max_bytes`. Any status other than a redirect comes back to the caller."""
        scheme, host, port = self._parts(url)
        clock = _Deadline(deadline)
        try:
            try:
                resolved = self._resolve(host, port, clock.remaining())
            except OutboundError:
                if scheme == "http":  # http needs to be seen to go to loopback
                    raise DestinationRefused(f"http is only for loopback addresses; use https: {url}") from None
                raise
            addresses = self._judge(url, scheme, resolved)
            # requests and urllib3 (5 MB a worker) come with the first server-initiated request:
            # most workers never make one (issue 14: lean workers).
            from .outbound_http import send

            return send(method, url, host, addresses, clock, data=data, headers=headers, auth=auth,
                        verify=self.verify, max_bytes=max_bytes)
        finally:
            clock.close()

    def get(self, url: str, **kwargs) -> OutboundResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, data=None, **kwargs) -> OutboundResponse:
        return self.request("POST", url, data=data, **kwargs)


# --- the app's client -------------------------------------------------------------------------


def init_app(app, settings) -> Outbound:
    """The app's client, allowing what the settings allow."""
    client = Outbound(allow=settings.outbound_networks)
    app.extensions["idp.outbound"] = client
    return client


def current() -> Outbound:
    """The current app's client for server-initiated requests."""
    from flask import current_app  # here: `idp clients create` checks URLs with its own client, without Flask

    return current_app.extensions["idp.outbound"]
