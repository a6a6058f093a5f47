"""The outbound guard (idp/outbound.py): every request this server makes on its own goes only
to public addresses (or allow-listed ones), to the address that was checked, over https,
without proxies or redirects, within a size cap and a total deadline.

Real servers on loopback play the misbehaving peers. Names that must resolve to other
addresses come from a resolver the test hands to the guard (no DNS server needed); the
public address 93.184.216.34 only ever appears in such answers and is refused before any
connection is made or is never contacted.
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
import json
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from idp.outbound import LOOPBACK, DestinationRefused, Outbound, OutboundError, is_public

PUBLIC = "93.184.216.34"  # a global address, never connected to by these tests


# --- peers ----------------------------------------------------------------------------------


class Peer:
    """An HTTP server on loopback that records what reaches it and misbehaves on request."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests: list[dict] = []
        self.connections = 0
        self.discovery: dict = {}
        self.body = b""
        self.sni: list[str | None] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: bytes, headers: dict | None = None):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _trickle(self, data: bytes):
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i:i + 1])
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
                self.close_connection = True

            def do_GET(self):
                peer.requests.append({"method": "GET", "path": self.path, "host": self.headers.get("Host")})
                if self.path == "/json":
                    self._answer(200, b'{"ok": true}', {"Content-Type": "application/json"})
                elif self.path == "/redirect":
                    self._answer(302, b"", {"Location": "/json"})
                elif self.path == "/big":  # no length announced: only counting stops it
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    try:
                        for _ in range(64):
                            self.wfile.write(b"x" * 65536)
                    except OSError:
                        pass
                    self.close_connection = True
                elif self.path == "/big-declared":
                    self.send_response(200)
                    self.send_header("Content-Length", str(50 * 1024 * 1024))
                    self.end_headers()
                    self.close_connection = True
                elif self.path == "/trickle":  # headers at once, then a byte every 0.2 s for 200 s
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self._trickle(b"x" * 1000)
                elif self.path == "/trickle-headers":
                    self._trickle(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000)
                elif self.path == "/.well-known/openid-configuration":
                    self._answer(200, json.dumps(peer.discovery).encode(), {"Content-Type": "application/json"})
                elif self.path == "/idp.xml":
                    self._answer(200, peer.body, {"Content-Type": "application/samlmetadata+xml"})
                else:
                    self._answer(404, b"")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, address = self.socket.accept()
                peer.connections += 1
                if tls is not None:
                    sock = tls.wrap_socket(sock, server_side=True)
                return sock, address

        if tls is not None:
            tls.sni_callback = lambda sslsock, name, ctx: peer.sni.append(name)
        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


class Listener:
    """A bare TCP port on loopback that counts the connections made to it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self):
        self._stop.set()
        self.sock.close()


@pytest.fixture
def listener():
    listening = Listener()
    yield listening
    listening.close()


class Answers:
    """A resolver for the guard: each call returns the next answer (the last one repeats)."""

    def __init__(self, *answers):
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, host: str, port: int):
        self.calls.append(host)
        answer = self.answers[min(len(self.calls), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer


# --- the address policy -----------------------------------------------------------------------


@pytest.mark.parametrize("address, public", [
    ("93.184.216.34", True), ("2606:2800:220:1:248:1893:25c8:1946", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("::1", False),
    ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("fd00::1", False), ("fc00::1", False),
    ("100.64.0.1", False), ("0.0.0.0", False), ("::", False),
    ("224.0.0.1", False), ("ff02::1", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("::ffff:93.184.216.34", True),
    ("2002:7f00:1::", False), ("64:ff9b::a9fe:a9fe", False),  # 6to4 of 127.0.0.1, NAT64 of 169.254.169.254
])
def test_which_addresses_are_public(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


@pytest.mark.parametrize("url", [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/logout",
    "https://[fd00::1]/logout",
    "https://[::ffff:127.0.0.1]/logout",
    "https://127.0.0.1:8443/logout",          # loopback, not allow-listed here
    "https://localhost:8443/logout",           # a name for loopback
    f"https://{PUBLIC}:22/logout",             # a port below 1024 other than 80 and 443
    f"http://{PUBLIC}/logout",                 # http to a public host
    f"https://user:pw@{PUBLIC}/logout",        # user info could be read as the host by another parser
    "https://127.0.0.1\\@example.com/logout",
    "ftp://example.com/logout",
    "https:///logout",
])
def test_check_url_refuses(url):
    with pytest.raises(DestinationRefused):
        Outbound(allow=()).check_url(url)


def test_check_url_resolves_names_and_lets_unresolvable_https_names_pass():
    guard = Outbound(allow=(), resolver=Answers(["10.1.2.3"]))
    with pytest.raises(DestinationRefused, match="non-public"):
        guard.check_url("https://intranet.test/logout")
    guard = Outbound(allow=(), resolver=Answers([PUBLIC, "169.254.169.254"]))
    with pytest.raises(DestinationRefused):  # one refused address among several is enough
        guard.check_url("https://mixed.test/logout")
    guard.resolver = Answers([PUBLIC])
    guard.check_url("https://rp.test/logout")
    guard.check_url("https://rp.test:8443/logout?x=1")
    guard.resolver = Answers(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    guard.check_url("https://not-yet.test/logout")  # checked again when sent
    with pytest.raises(DestinationRefused, match="http"):
        guard.check_url("http://not-yet.test/logout")  # http needs to be seen to be loopback


def test_allow_list_opens_exactly_its_networks():
    guard = Outbound(allow=LOOPBACK)
    guard.check_url("http://127.0.0.1:5000/logout")
    guard.check_url("http://[::1]:5000/logout")
    guard.check_url("http://[::ffff:127.0.0.1]:5000/logout")  # judged by its IPv4 address
    guard.check_url("http://localhost:5000/logout")
    with pytest.raises(DestinationRefused):
        guard.check_url("https://10.0.0.1/logout")
    private = Outbound(allow=(ipaddress.ip_network("10.20.0.0/16"),))
    private.check_url("https://10.20.1.1/logout")
    with pytest.raises(DestinationRefused, match="http"):  # allow-listed, but http is for loopback only
        private.check_url("http://10.20.1.1/logout")
    with pytest.raises(DestinationRefused):
        private.check_url("https://10.21.0.1/logout")


# --- settings -----------------------------------------------------------------------------------


def test_allow_list_setting(tmp_path):
    from idp.config import ConfigError, Settings

    def networks(env):
        return [str(n) for n in Settings.from_env({"IDP_INSTANCE_DIR": str(tmp_path), **env}).outbound_networks]

    assert networks({"IDP_ISSUER": "http://127.0.0.1:5000"}) == ["127.0.0.0/8", "::1/128"]
    assert networks({"IDP_ISSUER": "http://localhost:5000"}) == ["127.0.0.0/8", "::1/128"]
    assert networks({"IDP_ISSUER": "http://[::1]:5000"}) == ["127.0.0.0/8", "::1/128"]
    assert networks({"IDP_ISSUER": "https://idp.example"}) == []
    assert networks({"IDP_ISSUER": "http://127.0.0.1:5000", "IDP_OUTBOUND_ALLOW": "none"}) == []
    assert networks({"IDP_ISSUER": "https://idp.example",
                     "IDP_OUTBOUND_ALLOW": "127.0.0.0/8, ::1/128,10.20.0.0/16"}) == [
        "127.0.0.0/8", "::1/128", "10.20.0.0/16"]
    for bad in ("10.0.0.0/33", "intranet", "10.20.0.1/16", "127.0.0.0/8;10.0.0.0/8"):
        with pytest.raises(ConfigError, match="IDP_OUTBOUND_ALLOW"):
            Settings.from_env({"IDP_INSTANCE_DIR": str(tmp_path), "IDP_OUTBOUND_ALLOW": bad})


def test_a_bad_allow_list_is_an_error_line(live):
    from tests.conftest import IDP

    out = subprocess.run([IDP, "init"], env={**live.env, "IDP_OUTBOUND_ALLOW": "10.0.0.0/33"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.startswith("error: IDP_OUTBOUND_ALLOW")
    assert "10.0.0.0/33" in out.stderr and "Traceback" not in out.stderr


# --- fetching -------------------------------------------------------------------------------------


def test_a_fetch_connects_to_the_checked_address_once_resolved(peer, monkeypatch):
    # Proxies from the environment are never used: this one does not exist.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    answers = Answers(["127.0.0.1"])
    guard = Outbound(allow=LOOPBACK, resolver=answers)
    resp = guard.get(f"http://pinned.test:{peer.port}/json")  # no DNS knows pinned.test
    assert resp.status == 200 and resp.json() == {"ok": True}
    assert answers.calls == ["pinned.test"]  # resolved once, by the guard
    assert peer.requests == [{"method": "GET", "path": "/json", "host": f"pinned.test:{peer.port}"}]


def test_dns_rebinding_cannot_reach_a_refused_address(listener):
    # Public when the URL was registered, loopback when it is used: nothing may be sent.
    answers = Answers([PUBLIC], ["127.0.0.1"])
    guard = Outbound(allow=(), resolver=answers)
    url = f"https://rebind.test:{listener.port}/logout"
    guard.check_url(url)
    with pytest.raises(DestinationRefused, match="127.0.0.1"):
        guard.post(url, data={"logout_token": "t"})
    time.sleep(0.2)
    assert listener.accepted == 0 and answers.calls == ["rebind.test", "rebind.test"]


def test_redirects_are_not_followed(peer):
    with pytest.raises(OutboundError, match="302"):
        Outbound(allow=LOOPBACK).get(f"{peer.base}/redirect")
    assert [r["path"] for r in peer.requests] == ["/redirect"]


def test_the_body_is_capped(peer):
    guard = Outbound(allow=LOOPBACK)
    started = time.monotonic()
    with pytest.raises(OutboundError, match="larger than 100000 bytes"):
        guard.get(f"{peer.base}/big", max_bytes=100_000)
    with pytest.raises(OutboundError, match="larger than 100000 bytes"):
        guard.get(f"{peer.base}/big-declared", max_bytes=100_000)
    assert time.monotonic() - started < 5
    assert len(guard.get(f"{peer.base}/json", max_bytes=100).content) == 12


@pytest.mark.parametrize("path", ["/trickle", "/trickle-headers"])
def test_a_trickling_server_is_cut_off_at_the_deadline(peer, path):
    # One byte every 0.2 s: no socket read ever waits long, only the total deadline ends it.
    started = time.monotonic()
    with pytest.raises(OutboundError, match="within 1.5 s"):
        Outbound(allow=LOOPBACK).get(f"{peer.base}{path}", deadline=1.5)
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 2.5, elapsed


def _tls_pair(tmp_path, name: str):
    """A server context with a certificate for `name` (signed by its own CA) and the CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, str(ca_file)


def test_tls_checks_the_host_name_not_the_address(tmp_path):
    context, ca_file = _tls_pair(tmp_path, "pinned.test")
    peer = Peer(tls=context)
    try:
        guard = Outbound(allow=LOOPBACK, resolver=Answers(["127.0.0.1"]), verify=ca_file)
        resp = guard.get(f"https://pinned.test:{peer.port}/json")
        assert resp.status == 200 and peer.sni == ["pinned.test"]
        # the same address under another name: the certificate does not match, nothing is asked
        with pytest.raises(OutboundError, match="TLS"):
            guard.get(f"https://other.test:{peer.port}/json")
        assert [r["path"] for r in peer.requests] == ["/json"]
    finally:
        peer.close()


def test_names_resolving_to_several_addresses_use_the_next_one_when_the_first_refuses(peer):
    guard = Outbound(allow=LOOPBACK, resolver=Answers(["::1", "127.0.0.1"]))  # the peer listens on IPv4 only
    assert guard.get(f"http://dual.test:{peer.port}/json").status == 200


# --- an identity provider on a public issuer ------------------------------------------------------


@pytest.fixture(scope="module")
def public_app(tmp_path_factory):
    """An identity provider whose issuer is a public name: no allow-list, open registration.
    Built in this process, so its guard can be given a resolver."""
    from idp import create_app
    from idp.config import Settings
    from idp.keystore import ensure_signing_key
    from idp.schema import upgrade
    from idp.store import db

    root = tmp_path_factory.mktemp("public-idp")
    settings = Settings.from_env({"IDP_ISSUER": "https://idp.example", "IDP_INSTANCE_DIR": str(root),
                                  "IDP_DATABASE_URL": f"sqlite:///{root / 'idp.db'}", "IDP_REGISTRATION": "open",
                                  "IDP_LOG_LEVEL": "WARNING"})
    app = create_app(settings)
    with app.app_context():
        upgrade()
        ensure_signing_key(app.extensions["idp.settings"])
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def resolve(public_app):
    """Give the public app's guard these answers for the test."""
    guard = public_app.extensions["idp.outbound"]
    saved = guard.resolver

    def use(*answers) -> Answers:
        guard.resolver = Answers(*answers)
        return guard.resolver

    yield use
    guard.resolver = saved


_registrants = itertools.count(1)


def _register(app, **meta):
    """Each from an address of its own: open registration is throttled per address, and
    these tests register more clients than one address may in an hour."""
    meta.setdefault("redirect_uris", ["https://rp.example/cb"])
    n = next(_registrants)
    return app.test_client().post("/register", json=meta,
                                  environ_base={"REMOTE_ADDR": f"198.51.100.{n % 250 + 1}"})


@pytest.mark.parametrize("uri", [
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/logout",
    "https://[fd00::1]/logout",
    "https://[::ffff:127.0.0.1]/logout",
    "https://127.0.0.1:8443/logout",
    "http://127.0.0.1:8080/logout",
    "https://localhost/logout",
    f"https://{PUBLIC}:22/logout",
    f"http://{PUBLIC}/logout",
])
def test_registration_refuses_non_public_back_channel_uris(public_app, uri):
    resp = _register(public_app, backchannel_logout_uri=uri)
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert resp.json["error"] == "invalid_client_metadata" and "backchannel_logout_uri" in resp.json[
        "error_description"]


def test_registration_resolves_back_channel_names(public_app, resolve):
    resolve(["169.254.169.254"])
    resp = _register(public_app, backchannel_logout_uri="https://metadata.test/logout")
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    resolve(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    resp = _register(public_app, backchannel_logout_uri="https://later.test/logout")
    assert resp.status_code == 201 and resp.json["backchannel_logout_uri"] == "https://later.test/logout"
    resolve([PUBLIC])
    resp = _register(public_app, backchannel_logout_uri="https://rp.test/logout")
    assert resp.status_code == 201, resp.json


def test_client_update_refuses_non_public_back_channel_uris(public_app):
    resp = _register(public_app, backchannel_logout_uri=f"https://{PUBLIC}/logout")
    assert resp.status_code == 201
    reg = resp.json
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    update = {"client_id": reg["client_id"], "redirect_uris": reg["redirect_uris"],
              "backchannel_logout_uri": "https://10.0.0.1/logout"}
    path = f"/register/{reg['client_id']}"
    resp = public_app.test_client().put(path, json=update, headers=mgmt)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    assert public_app.test_client().get(path, headers=mgmt).json["backchannel_logout_uri"] == \
        f"https://{PUBLIC}/logout"


def _queue_row(app, uri: str, client_id: str | None = None) -> str:
    """One logout queued for a client with this back-channel URI; without `client_id`, a client
    whose URI is stored as it is (registered before the guard existed)."""
    import secrets

    from idp.backchannel import logout_token
    from idp.store import BackchannelDelivery, Client, db

    with app.app_context():
        if client_id is None:
            client_id = secrets.token_hex(16)
            db.session.add(Client(client_id=client_id, name="Old", token_endpoint_auth_method="none",
                                  grant_types=["authorization_code"], response_types=["code"],
                                  redirect_uris=["https://rp.example/cb"], scope="openid",
                                  backchannel_logout_uri=uri))
            db.session.commit()
        db.session.add(BackchannelDelivery(client_id=client_id, uri=uri,
                                           logout_token=logout_token(client_id, "someone", None)))
        db.session.commit()
        return client_id


def _rows_of(app, client_id):
    from sqlalchemy import select

    from idp.store import BackchannelDelivery, db

    with app.app_context():
        rows = db.session.execute(select(BackchannelDelivery).where(
            BackchannelDelivery.client_id == client_id)).scalars().all()
        db.session.expunge_all()
        return rows


def test_back_channel_delivery_is_checked_again_when_sent(public_app, resolve, listener):
    from idp.backchannel import deliver_due

    # DNS rebinding: the name is public when registered and loopback when the logout is sent
    uri = f"https://rebind.test:{listener.port}/logout"
    answers = resolve([PUBLIC], ["127.0.0.1"])
    resp = _register(public_app, backchannel_logout_uri=uri)
    assert resp.status_code == 201, resp.json
    rebound = _queue_row(public_app, uri, resp.json["client_id"])
    stored = _queue_row(public_app, f"http://127.0.0.1:{listener.port}/logout")  # from before the guard
    with public_app.app_context():
        assert deliver_due() == 0
    time.sleep(0.2)
    assert listener.accepted == 0 and answers.calls == ["rebind.test", "rebind.test"]
    for client_id in (rebound, stored):
        [row] = _rows_of(public_app, client_id)
        assert row.delivered_at is None and row.attempts == 1 and row.last_error.startswith("refused")


# --- redirect URIs (RFC 8252 §7, RFC 9700 §2.1) ---------------------------------------------------


@pytest.mark.parametrize("uris, ok", [
    (["https://rp.example/cb"], True),
    (["http://127.0.0.1:8080/cb"], True),
    (["http://127.1.2.3/cb"], True),
    (["http://[::1]:8080/cb"], True),
    (["http://localhost:8080/cb"], True),
    (["com.example.app:/oauth2redirect"], True),
    (["http://rp.example/cb"], False),
    (["http://10.0.0.1/cb"], False),
    (["https://rp.example/cb", "http://rp.example/cb"], False),
    (["https://*.rp.example/cb"], False),
    (["https://rp.example/cb#frag"], False),
    (["javascript:alert(1)"], False),
    (["data:text/html,x"], False),
    (["https://[::1/cb"], False),
])
def test_redirect_uri_rules(public_app, uris, ok):
    resp = _register(public_app, redirect_uris=uris)
    if ok:
        assert resp.status_code == 201, resp.json
        assert resp.json["redirect_uris"] == uris
    else:
        assert resp.status_code == 400 and resp.json["error"] == "invalid_redirect_uri", resp.json


@pytest.mark.parametrize("uri, ok", [
    ("https://rp.example/bye", True), ("http://127.0.0.1:8080/bye", True),
    ("http://rp.example/bye", False), ("https://*.rp.example/bye", False),
])
def test_post_logout_redirect_uri_rules(public_app, uri, ok):
    resp = _register(public_app, post_logout_redirect_uris=[uri])
    if ok:
        assert resp.status_code == 201, resp.json
    else:
        assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata", resp.json


# --- federation: discovery, JWKS, metadata -------------------------------------------------------


def test_discovery_must_name_the_configured_issuer(peer):
    from federation.social import UpstreamError, discover

    guard = Outbound(allow=LOOPBACK)
    doc = {"authorization_endpoint": f"{peer.base}/authorize", "token_endpoint": f"{peer.base}/token",
           "jwks_uri": f"{peer.base}/jwks"}
    peer.discovery = {**doc, "issuer": peer.base}
    assert discover(peer.base, guard)["issuer"] == peer.base
    for other in ("https://evil.example", peer.base + "/", f"http://localhost:{peer.port}",
                  "https://login.microsoftonline.com/{tenantid}/v2.0"):
        peer.discovery = {**doc, "issuer": other}
        with pytest.raises(UpstreamError, match="another issuer"):
            discover(peer.base, guard)


def test_only_the_built_in_microsoft_issuer_accepts_the_tenant_template():
    from federation.social import BUILT_IN, issuer_matches

    template = "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert issuer_matches(BUILT_IN["microsoft"].issuer, template)
    assert issuer_matches("https://accounts.google.com", "https://accounts.google.com")
    assert not issuer_matches("https://login.microsoftonline.com/organizations/v2.0", template)
    assert not issuer_matches("https://idp.example", template)
    assert not issuer_matches("https://idp.example", "https://idp.example/")


def test_federation_fetches_refuse_http_and_non_public_addresses(listener):
    from federation.social import UpstreamError, discover, fetch_jwks

    guard = Outbound(allow=(), resolver=Answers([PUBLIC]))
    with pytest.raises(UpstreamError, match="http is only for loopback"):
        discover(f"http://issuer.test:{listener.port}", guard)
    loopback = Outbound(allow=())  # loopback not allow-listed
    with pytest.raises(UpstreamError, match="non-public"):
        discover(f"https://127.0.0.1:{listener.port}", loopback)
    with pytest.raises(UpstreamError, match="non-public"):
        fetch_jwks(f"https://127.0.0.1:{listener.port}/jwks", loopback)
    time.sleep(0.2)
    assert listener.accepted == 0


def test_social_provider_whose_discovery_names_another_issuer_is_not_used(live, peer):
    from tests.conftest import Browser

    peer.discovery = {"issuer": "https://evil.example", "authorization_endpoint": f"{peer.base}/authorize",
                      "token_endpoint": f"{peer.base}/token", "jwks_uri": f"{peer.base}/jwks"}
    out = live.idp("social", "add", "liar", "--client-id", "x", "--client-secret", "y", "--issuer", peer.base)
    assert out.returncode == 0, out.stderr
    resp = Browser(live.issuer).http.get(f"{live.issuer}/social/liar/start", allow_redirects=False, timeout=30)
    assert resp.status_code == 503 and "cannot be reached" in resp.text
    assert [r["path"] for r in peer.requests] == ["/.well-known/openid-configuration"]


def test_cli_refuses_http_and_non_public_issuers_and_metadata_urls(live):
    live.idp("orgs", "create", "guarded", "--domain", "guarded.example")
    for args in (
        ["social", "add", "plain", "--client-id", "a", "--client-secret", "b", "--issuer", "http://idp.example.com"],
        ["social", "add", "meta", "--client-id", "a", "--client-secret", "b", "--issuer",
         "https://169.254.169.254"],
        ["orgs", "oidc", "guarded", "--client-id", "a", "--client-secret", "b", "--issuer", "http://idp.example.com"],
        ["orgs", "oidc", "guarded", "--client-id", "a", "--client-secret", "b", "--issuer", "https://10.0.0.1"],
        ["orgs", "saml", "guarded", "--metadata", "http://idp.example.com/metadata"],
        ["orgs", "saml", "guarded", "--metadata", "https://10.0.0.1/metadata"],
    ):
        out = live.idp(*args)
        assert out.returncode == 1, (args, out.stdout)
        assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)
        assert "http is only for loopback" in out.stderr or "non-public" in out.stderr, (args, out.stderr)
    from idp.store import SocialProvider, db

    with live.db():
        assert db.session.get(SocialProvider, "plain") is None and db.session.get(SocialProvider, "meta") is None


def test_saml_metadata_url_goes_through_the_guard(live, peer, public_app, tmp_path):
    from idp.orgs import OrgError, read_metadata
    from tests.saml_idp import TestIdP

    peer.body = TestIdP(tmp_path).metadata_xml().encode()
    # a loopback issuer allows loopback: the metadata is fetched
    live.idp("orgs", "create", "fetched", "--domain", "fetched.example")
    out = live.idp("orgs", "saml", "fetched", "--metadata", f"{peer.base}/idp.xml")
    assert out.returncode == 0, out.stderr
    assert [r["path"] for r in peer.requests] == ["/idp.xml"]
    # a public issuer does not: nothing reaches the server
    with public_app.app_context(), pytest.raises(OrgError, match="non-public"):
        read_metadata(f"{peer.base}/idp.xml")
    assert len(peer.requests) == 1


def test_cli_refuses_non_public_back_channel_uris_and_http_redirects(live):
    for args in (["--redirect-uri", "https://rp.example/cb", "--backchannel-logout-uri",
                  "https://169.254.169.254/logout"],
                 ["--redirect-uri", "http://rp.example/cb"],
                 ["--redirect-uri", "https://rp.example/cb", "--post-logout-redirect-uri", "http://rp.example/"]):
        out = live.idp("clients", "create", "--name", "Guarded", *args)
        assert out.returncode == 1 and out.stderr.startswith("error: "), (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    local = "http://127.0.0.1:8089/logout"
    out = live.idp("clients", "create", "--name", "Local", "--redirect-uri", "http://127.0.0.1:9/cb",
                   "--backchannel-logout-uri", local, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["backchannel_logout_uri"] == local
    # `none`: not even loopback, although the issuer is on loopback
    from tests.conftest import IDP

    out = subprocess.run([IDP, "clients", "create", "--name", "Closed", "--redirect-uri", "http://127.0.0.1:9/cb",
                          "--backchannel-logout-uri", local],
                         env={**live.env, "IDP_OUTBOUND_ALLOW": "none"}, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "backchannel_logout_uri refused" in out.stderr, out.stderr
