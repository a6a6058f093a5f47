"""A DNS server on loopback for the tests (dnslib): UDP and TCP on one free port, answering
TXT questions from a dict the test changes while it runs.

`txt` maps a name (lower case, no trailing dot) to the strings of its TXT records; any
other name is NXDOMAIN. `delay_once` holds the next answer for a name back for some
seconds (to make two requests race); `asked` lists the names asked so far; `set_mode`
makes the whole server answer SERVFAIL ("servfail"), YXDOMAIN ("yxdomain") or nothing at all ("silent").
"""

from __future__ import annotations

import socket
import threading
import time

from dnslib import QTYPE, RCODE, RR, TXT, DNSError
from dnslib.server import DNSLogger, DNSServer


class _Zone:
    def __init__(self):
        self.txt: dict[str, list[str]] = {}
        self.delay_once: dict[str, float] = {}
        self.mode = "answer"
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        name = str(request.q.qname).rstrip(".").lower()
        with self.lock:
            self.asked.append(name)
            mode, records, pause = self.mode, list(self.txt.get(name, ())), self.delay_once.pop(name, 0)
        if mode == "silent":
            raise DNSError("not answering (test)")  # the handler sends nothing back
        if pause:
            time.sleep(pause)
        reply = request.reply()
        if mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
        elif mode == "yxdomain":  # a refusal dnspython describes by its docstring alone
            reply.header.rcode = RCODE.YXDOMAIN
        elif not records:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for text in records:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(text), ttl=0))
        return reply


class _Quiet(DNSLogger):
    def __init__(self):
        super().__init__(log="-request,-reply,-truncated,-error", prefix=False, logf=lambda line: None)


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for the DNS server")


class LoopbackDNS:
    """Start with `start()`; `address` is "127.0.0.1:PORT" (what IDP_DNS_RESOLVER takes)."""

    def __init__(self):
        self.zone = _Zone()
        self.port = 0
        self._servers: list[DNSServer] = []

    @property
    def txt(self) -> dict[str, list[str]]:
        return self.zone.txt

    @property
    def delay_once(self) -> dict[str, float]:
        return self.zone.delay_once

    @property
    def asked(self) -> list[str]:
        return self.zone.asked

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        assert mode in ("answer", "servfail", "yxdomain", "silent"), mode
        with self.zone.lock:
            self.zone.mode = mode

    def start(self) -> LoopbackDNS:
        self.port = _free_port()
        for tcp in (False, True):
            server = DNSServer(self.zone, port=self.port, address="127.0.0.1", tcp=tcp, logger=_Quiet())
            server.start_thread()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
            server.server.server_close()
        self._servers.clear()
