"""The sending half of `idp.outbound`: requests and urllib3, connecting only to addresses the
guard checked. Imported with the first server-initiated request, not by every worker."""

from __future__ import annotations

import socket

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .outbound import (
    CONNECT_TIMEOUT,
    USER_AGENT,
    OutboundError,
    OutboundResponse,
    _Deadline,
    _normal_host,
    parse_address,
)

# --- connections pinned to the checked addresses ---------------------------------------------


class _Pinned:
    """Mixed into urllib3's connections: connect to the addresses checked for this request
    instead of resolving the host again. The host name stays the connection's `host`, so
    the Host header, SNI and certificate checks use it."""

    host_checked: str = ""
    addresses: tuple[str, ...] = ()
    deadline: _Deadline | None = None

    def _new_conn(self) -> socket.socket:
        if _normal_host(self.host) != self.host_checked:  # never connect anywhere unchecked
            raise NewConnectionError(self, f"host {self.host} was not checked")
        last: OSError | None = None
        for address in self.addresses:
            remaining = self.deadline.remaining()
            if remaining <= 0:
                break
            ip = parse_address(address)
            sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
            try:
                for option in self.socket_options or ():
                    sock.setsockopt(*option)
                timeout = self.timeout if isinstance(self.timeout, (int, float)) else CONNECT_TIMEOUT
                sock.settimeout(min(timeout, remaining))
                sock.connect((str(ip), self.port))
            except OSError as err:
                sock.close()
                last = err
                continue
            self.deadline.watch(sock)
            return sock
        if isinstance(last, TimeoutError) or last is None:
            raise ConnectTimeoutError(self, f"connection to {self.host} timed out")
        raise NewConnectionError(self, f"cannot connect to {self.host}: {last}")


class _PinnedAdapter(HTTPAdapter):
    """An adapter for one request whose pools open only `_Pinned` connections."""

    def __init__(self, host: str, addresses: tuple[str, ...], deadline: _Deadline):
        pinned = {"host_checked": host, "addresses": addresses, "deadline": deadline}
        http_conn = type("PinnedHTTPConnection", (_Pinned, HTTPConnection), pinned)
        https_conn = type("PinnedHTTPSConnection", (_Pinned, HTTPSConnection), pinned)
        self._pools = {
            "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }
        super().__init__(pool_connections=1, pool_maxsize=1, max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)


def send(method, url, host, addresses, clock: _Deadline, *, data, headers, auth, verify,
         max_bytes) -> OutboundResponse:
    """Send one request to the `addresses` already checked for `host`, within `clock`."""
    session = requests.Session()
    session.trust_env = False  # never a proxy, .netrc or CA bundle from the environment
    adapter = _PinnedAdapter(host, addresses, clock)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    sent_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})}
    remaining = clock.remaining()
    try:
        resp = session.request(method, url, data=data, headers=sent_headers, auth=auth, verify=verify,
                               allow_redirects=False, stream=True,
                               # the deadline's watchdog ends slow reads; this is a backstop
                               timeout=(min(CONNECT_TIMEOUT, remaining), remaining + 1))
        try:
            if resp.is_redirect or 300 <= resp.status_code < 400:
                raise OutboundError(f"HTTP {resp.status_code}: redirects are not followed")
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise OutboundError(f"the response is larger than {max_bytes} bytes")
            body = bytearray()
            for chunk in resp.iter_content(8192):
                body += chunk
                if len(body) > max_bytes:
                    raise OutboundError(f"the response is larger than {max_bytes} bytes")
                if clock.expired:
                    break
        finally:
            resp.close()
    except requests.RequestException as err:
        if clock.expired:
            raise OutboundError(f"no complete answer within {clock.seconds:g} s") from None
        raise OutboundError(_reason(err)) from None
    finally:
        session.close()
    if clock.expired:  # a read cut short by the deadline may look like a complete body
        raise OutboundError(f"no complete answer within {clock.seconds:g} s")
    return OutboundResponse(resp.status_code, CaseInsensitiveDict(resp.headers), bytes(body))


def _reason(err: requests.RequestException) -> str:
    """A short reason for logs and error pages, without the URL's query."""
    if isinstance(err, requests.exceptions.SSLError):
        return "TLS failed (certificate or handshake)"
    if isinstance(err, requests.Timeout):
        return "timed out"
    if isinstance(err, requests.ConnectionError):
        return "connection failed"
    return type(err).__name__
