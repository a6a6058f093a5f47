"""Security review of malformed input (branch rev10-g): every route of the live server, on
SQLite and PostgreSQL, is sent parameters repeated, empty, very long, with NUL bytes and
invalid UTF-8, bodies of the wrong content type or cut short, wrong methods, bad cookies,
bad Authorization and DPoP headers and odd Host / X-Forwarded-* headers. Bad input gets a
clear answer (SPEC: never a 500, never a traceback): a page for people, the RFC's error
form on a protocol endpoint."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from tests.admin_world import new_org, person, signed_in
from tests.conftest import csrf_of
from tests.test_passkeys import _with_passkey

# every parameter name a view or Authlib reads (grep of request.args/form/values), and a few more
NAMES = (
    "RelayState SAMLResponse access_token acr_values actor_token actor_token_type after alg attributes audience "
    "before checked claims client_assertion client_assertion_type client_id client_secret code code_challenge "
    "code_challenge_method code_verifier confirm confirmed count current_password decision display domain done "
    "dpop_jkt email enforce error excludedAttributes filter first_party from grant_type id_token_hint invited "
    "issuer kind login_hint max_age metadata_url name new_password nonce password person "
    "post_logout_redirect_uri post_logout_uris prompt proven q redirect_uri redirect_uris refresh_token remember "
    "remove_passkeys req request request_uri requested_token_type require_mfa require_par resource "
    "response_mode response_type saml_metadata saved scope sign_out_everywhere sortBy sortOrder startIndex "
    "state subject_token subject_token_type to token token_endpoint_auth_method token_type_hint trust "
    "ui_locales unlink_all user_code kid given_name family_name credential"
).split()

# a value as it appears percent-encoded in a query or form body
RAW_VALUES = {
    "empty": "",
    "nul": "a%00b",
    "ff": "%ff",
    "bad-utf8": "%c3%28",
    "surrogate": "%ed%a0%80",
    "unicode": "%E2%80%AE%F0%9F%98%80",
    "crlf": "a%0d%0aSet-Cookie:%20x=1",
    "dots": "../../etc/passwd",
    "number": "99999999999999999999999999",
}
LONG = "a" * 65536

# JSON values for JSON bodies
JSON_VALUES = {
    "list": ["a", "b"], "object": {"a": 1}, "int": 12, "big": 10 ** 40, "null": None, "bool": True,
    "nul": "a\u0000b", "surrogate": "\ud800", "float": 1e308, "long": LONG,
}

# path parameter values, percent-encoded
PATH_VALUES = ("%2F", "a%2Fb", "%00", "a%00b", "%ff", "%c3%28", "%ed%a0%80", "%E2%80%AE", "..", "%2e%2e",
               "a" * 4000, "%20", "a;b", "%0a")

API_PREFIXES = ("/token", "/revoke", "/introspect", "/userinfo", "/register", "/jwks", "/.well-known", "/par",
                "/device_authorization", "/healthz", "/readyz", "/scim/")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


AUTH_HEADERS = (
    "Basic", "Basic ", "Basic !!!", "Basic " + _b64(b"nocolon"), "Basic " + _b64(b"\xff\xfe:\xff"),
    "Basic " + _b64(b":"), "Basic " + _b64(b"a\x00b:c\x00d"), "Basic " + _b64(b"%ff:%c3%28"),
    "Basic " + _b64(("a" * 70000 + ":b").encode()), "Bearer", "Bearer ", "Bearer a b c", "Bearer a\x00b",
    "Bearer " + "a" * 60000, "DPoP", "DPoP a b", "DPoP x.y.z", "Negotiate abc", "Digest username=\"a\"",
    "basic " + _b64(b"x:y"), "BEARER x",
)
DPOP_HEADERS = ("x", "a.b.c", "eyJ.eyJ.sig", _b64(b'{"alg":"none"}') + ".e30.", ".".join(["e30"] * 3),
                "eyJhbGciOiJFUzI1NiIsInR5cCI6ImRwb3Arand0IiwiandrIjpbXX0.e30.AA", "a" * 60000)
COOKIES = ("idp_flow=x", "idp_flow=.eJw", "idp_flow=eyJhIjoxfQ.ZZZ.YYY", "idp_flow=%ff%fe",
           "idp_session=x", "idp_session=" + "a" * 4000, "idp_device=a.b.c", "idp_flow=" + "A" * 60000,
           "idp_session=a%00b", "idp_flow=\"quoted\"", "=;;;=;", "idp_flow=a; idp_flow=b; idp_session=c; idp_session=d")
HOSTS = ("evil.example", "", "a b", "127.0.0.1:0", "[::1", "x" * 3000, "é.example")
FORWARDED = (("X-Forwarded-For", "not-an-ip, ,,"), ("X-Forwarded-Host", "evil.example"),
             ("X-Forwarded-Proto", "gopher"), ("X-Forwarded-Prefix", "/../x"), ("X-Request-Id", "a" * 5000),
             ("X-Request-Id", "é\x7f"), ("Accept-Language", "*;q=abc, ;;, " + "x" * 3000),
             ("Accept-Language", "zz-ZZZZ-x-yyyyyyyyyyyy;q=2"), ("Origin", "null"), ("Origin", "http://é"),
             ("Content-Type", "application/x-www-form-urlencoded; charset=utf-7"),
             ("Content-Type", "multipart/form-data"), ("Content-Type", "application/json; charset=latin1"),
             ("Accept", "*/*;q=x"), ("If-Modified-Since", "yesterday"), ("Range", "bytes=5-1"))


class Server:
    """Raw HTTP to the live server: http.client sends paths and header bytes as given."""

    def __init__(self, issuer: str):
        parts = urlsplit(issuer)
        self.host, self.port = parts.hostname, parts.port
        self.netloc = parts.netloc

    def send(self, method: str, path: str, headers: dict | list = (), body: bytes | None = None,
             host: str | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=20)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", (self.netloc if host is None else host).encode("utf-8"))
            items = headers.items() if isinstance(headers, dict) else headers
            for name, value in items:
                conn.putheader(name, value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            return 0, "", b""  # the server refused to read it at all: no 500
        except http.client.LineTooLong:
            return -1, "", b"an answer header line over 64 kB"
        finally:
            conn.close()

    def raw(self, data: bytes) -> bytes:
        """Bytes on a socket, the write side then closed (a body cut short), the answer as
        sent; no answer in 20 s raises TimeoutError (a hang)."""
        with socket.create_connection((self.host, self.port), timeout=20) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            out = b""
            try:
                while chunk := sock.recv(65536):
                    out += chunk
            except ConnectionResetError:
                pass
            return out


def _query(names, raw: str) -> str:
    return "&".join(f"{n}={raw}" for n in names)


def _form_kinds(names, every_long: bool):
    """(kind, urlencoded body text) for every malformed-form case (`every_long`: a long value
    in every name, which takes several bodies of near 1 MB; else in the first dozen only)."""
    for kind, raw in RAW_VALUES.items():
        yield kind, _query(names, raw)
    yield "repeated", "&".join(f"{n}=a&{n}=b" for n in names)
    yield "array", "&".join(f"{n}[]=a&{n}[0]=b&{n}[x][y]=c" for n in names)
    yield "bare", "&".join(names)
    yield "junk", "=&&==&%&%zz&a=%&b=%f"
    for i in range(0, len(names) if every_long else 1, 12):  # 12 x 64 kB stays under the 1 MB request limit
        yield "long", _query(names[i:i + 12], LONG)


class World:
    """What the fuzzer signs in with: an operator who is also an org's admin, a member of
    the org, a client the operator owns, its registration token, a SCIM token."""

    def __init__(self, live):
        from idp.scim import tokens

        self.org_id, org_name, domain = new_org(live, "rv-input")
        self.email = f"op-{uuid.uuid4().hex[:6]}@{domain}"
        person(live, self.email, self.org_id, org_admin=True, is_admin=True)
        self.member_id = person(live, f"m-{uuid.uuid4().hex[:6]}@{domain}", self.org_id)
        self.browser = signed_in(live, self.email)
        self.cookie = "; ".join(f"{c.name}={c.value}" for c in self.browser.http.cookies)
        self.csrf = csrf_of(self.browser.get(f"{live.issuer}/account").text)
        from idp import orgs

        with live.db():
            self.scim_token = tokens.issue(orgs.find(org_name))
        reg = live.create_client(first_party=False, grant_types=["authorization_code", "client_credentials"],
                                 token_endpoint_auth_method="client_secret_basic")
        self.client_id, self.client_secret = reg
        self.basic = "Basic " + _b64(f"{self.client_id}:{self.client_secret}".encode())
        self.netloc = urlsplit(live.issuer).netloc


def _routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        yield rule.rule, sorted(rule.methods - {"HEAD", "OPTIONS"}), list(rule.arguments)


DESTRUCTIVE = ("/signout", "/account/sessions/revoke-all", "/admin/keys/rotate")


def _fill(rule: str, world: World, value: str | None = None) -> str:
    """The rule's path with every argument given: `value` (raw) or a harmless real one."""
    real = {"org_id": world.org_id, "user_id": world.member_id, "client_id": world.client_id}
    out = rule
    for name in ("org_id", "user_id", "client_id", "group_id", "link_id", "name", "device_id", "passkey_id",
                 "session_id", "kid", "claim_id", "domain", "pending_id", "token", "inbox", "ident"):
        out = out.replace(f"<{name}>", value if value is not None else real.get(name, "nothing"))
    return out


def _auth(path: str, world: World, signed: bool) -> list:
    """The credentials a request to `path` carries by default (`signed`: the real ones)."""
    if not signed:
        return []
    if path.startswith("/scim/"):
        return [("Authorization", f"Bearer {world.scim_token}")]
    if path.startswith(("/token", "/revoke", "/introspect", "/par", "/device_authorization")):
        return [("Authorization", world.basic)]
    if path.startswith(API_PREFIXES):
        return []
    return [("Cookie", world.cookie), ("X-CSRFToken", world.csrf)]


def _cases(app, world: World):
    """{rule: [(label, method, path, headers, body)]}: every malformed request, by route.
    A body that is a `Cut` is sent as raw bytes on a socket whose write side is then closed."""
    return {rule: list(_route_cases(rule, methods, args, world)) for rule, methods, args in _routes(app)
            if rule not in DESTRUCTIVE}


class Cut(bytes):
    """A request sent as these raw bytes (a body shorter than its Content-Length, a chunked one)."""


def _route_cases(rule: str, methods: list, args: list, world: World):
    form_ct = ("Content-Type", "application/x-www-form-urlencoded")
    json_ct = ("Content-Type", "application/json")
    path = _fill(rule, world)
    first = methods[0]
    for signed in (False, True):
        auth = _auth(path, world, signed)
        csrf = f"csrf_token={world.csrf}&" if signed and not path.startswith(API_PREFIXES) else ""
        for method in methods:
            for kind, raw in RAW_VALUES.items():
                yield f"query {kind}", method, f"{path}?{_query(NAMES, raw)}", auth, None
            yield "query long", method, f"{path}?{NAMES[0]}={LONG[:30000]}", auth, None
            yield "query repeated", method, f"{path}?" + "&".join(f"{n}=a&{n}=b" for n in NAMES), auth, None
            if method == "GET":
                continue
            for kind, text in _form_kinds(NAMES, every_long=signed):
                yield f"form {kind}", method, path, [*auth, form_ct], (csrf + text).encode()
            yield "form invalid-utf8 bytes", method, path, [*auth, form_ct], (csrf + "email=\xff\xfe").encode("latin-1")
            for kind, value in JSON_VALUES.items():
                yield f"json {kind}", method, path, [*auth, json_ct], json.dumps({n: value for n in NAMES}).encode()
            for kind, body in (("array", b"[1,2]"), ("string", b'"x"'), ("invalid", b"{"), ("bytes", b"\xff\xfe{}"),
                               ("deep", b"[" * 5000 + b"]" * 5000), ("empty", b""), ("null", b"null")):
                yield f"json body {kind}", method, path, [*auth, json_ct], body
                yield f"scim body {kind}", method, path, [*auth, ("Content-Type", "application/scim+json")], body
            yield "multipart", method, path, [*auth, ("Content-Type", "multipart/form-data; boundary=XX")], \
                b'--XX\r\nContent-Disposition: form-data; name="email"\r\n\r\na\x00\xff\r\n--XX--\r\n'
            yield "multipart bad", method, path, [*auth, ("Content-Type", "multipart/form-data")], b"--XX\r\n"
            yield "text/plain", method, path, [*auth, ("Content-Type", "text/plain")], b"email=a"
            yield "no content type", method, path, auth, csrf.encode() + b"email=a"
            yield "form charset", method, path, [*auth, ("Content-Type", f"{form_ct[1]}; charset=x-unknown")], \
                csrf.encode() + b"email=a"
            head = f"{method} {path} HTTP/1.1\r\nHost: {world.netloc}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in auth)
            for ctype in (form_ct[1], json_ct[1]):
                yield f"cut short {ctype}", method, path, [], Cut(
                    f"{head}Content-Type: {ctype}\r\nContent-Length: 100\r\n\r\n{csrf}a=b".encode())
                yield f"chunked {ctype}", method, path, [], Cut(
                    f"{head}Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    f"{len(csrf) + 3:x}\r\n{csrf}a=b\r\n0\r\n\r\n".encode())
        if not signed:  # these replace the credentials
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "PROPFIND", "FOO"):
                if method not in methods:
                    yield f"method {method}", method, path, auth, b"" if method != "GET" else None
            for value in AUTH_HEADERS:
                yield f"authorization {value[:20]!r}", first, path, [("Authorization", value)], \
                    b"grant_type=client_credentials" if first != "GET" else None
            for value in COOKIES:
                yield f"cookie {value[:24]!r}", first, path, [("Cookie", value)], None if first == "GET" else b""
            for value in HOSTS:
                yield f"host {value[:20]!r}", first, path, [("Host", value)], None if first == "GET" else b""
            continue
        for value in DPOP_HEADERS:
            yield f"dpop {value[:20]!r}", first, path, [*auth, ("DPoP", value), ("DPoP", value), form_ct], \
                b"grant_type=client_credentials" if first != "GET" else None
        for name, value in FORWARDED:
            yield f"header {name} {value[:20]!r}", first, path, [*auth, (name, value)], None if first == "GET" else b""
        if args:
            for value in PATH_VALUES:
                yield f"path {value[:12]!r}", first, _fill(rule, world, value), auth, \
                    None if first == "GET" else csrf.encode()


def _problem(label, method, path, status, ctype, body) -> str | None:
    where = f"{label}: {method} {path[:120]} -> {status} {ctype} {body[:200]!r}"
    if status == 501 and path.startswith(("/scim/v2/Me", "/scim/v2/Bulk")):
        return None  # RFC 7644 §3.11, §3.7: not supported, said in a SCIM error
    if status >= 500 or status == -1:
        return where
    if status < 400 or (status == 400 and not ctype):  # 400 with nothing: the HTTP server refused the bytes
        return None
    if path.startswith("/scim/"):
        return None if ctype.startswith(("application/scim+json", "application/json")) else where
    if path.startswith(API_PREFIXES):
        return None if ctype.startswith("application/json") else where
    # a page, or the JSON a page's script asked for (passkey ceremonies); a Host no URL can be
    # built for gets a line of text (no page can be)
    readable = ("text/html", "application/json", "text/plain") if label.startswith("host") else \
        ("text/html", "application/json")
    return None if ctype.startswith(readable) else where


def _run(live, cases: dict) -> list:
    server = Server(live.issuer)

    def one(case):
        label, method, path, headers, body = case
        try:
            if isinstance(body, Cut):
                answer = server.raw(body)
                status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
                ctype = next((line.split(b":", 1)[1].strip().decode() for line in answer.split(b"\r\n")
                              if line.lower().startswith(b"content-type:")), "")
                data = answer.split(b"\r\n\r\n", 1)[-1]
            else:
                host = next((v for k, v in headers if k == "Host"), None)
                status, ctype, data = server.send(method, path, [h for h in headers if h[0] != "Host"], body, host)
        except TimeoutError:
            return f"{label}: {method} {path[:120]} -> no answer in 20 s"
        return _problem(label, method, path, status, ctype, data)

    problems = []
    with ThreadPoolExecutor(4) as pool:
        for route_cases in cases.values():
            problems += [p for p in pool.map(one, route_cases) if p]
            _clear_throttles(live)  # each route gets past the per-IP and per-account limits
    return problems


def _clear_throttles(live):
    from idp.store import RateLimit, db

    with live.db():
        db.session.query(RateLimit).delete()
        db.session.commit()


def test_no_malformed_request_to_any_route_gets_a_500_or_a_traceback(live):
    """Every route of the app's url_map (and the machine endpoints in front of Flask, which
    answer the same paths), anonymous and with real credentials: no 5xx, no answer header
    too long to read, no hang, no traceback; a 4xx is a page (or a page script's JSON) for
    people, the OAuth JSON error or a SCIM error body for machines."""
    world = World(live)
    offset = live.log_size()
    problems = _run(live, _cases(live.app, world))
    log = live.log_since(offset)
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:80])
    assert "Traceback" not in log and "unexpected error" not in log and "Exception on" not in log, log[-20000:]


# --- findings the loop above turned up, each shown on its own ---------------------------

DEEP = b"[" * 5000 + b"]" * 5000


def test_a_passkey_answer_nested_too_deep_is_refused_not_a_500(live):
    """Low: a JSON body nested deeper than Python's parser goes (a few kB of "[") posted to
    the passkey sign-in, second-factor or registration endpoint was a RecursionError: a 500
    and a traceback in the log, from anyone, no sign-in needed."""
    from tests.test_passkeys import _csrf_meta

    offset = live.log_size()
    b, _ = _with_passkey(live, f"deep-{uuid.uuid4().hex[:6]}@example.com")
    page = b.get(f"{live.issuer}/account")
    headers = {"X-CSRFToken": _csrf_meta(page.text), "Content-Type": "application/json"}
    for path in ("/account/passkeys", "/signin/passkey"):
        resp = b.http.post(f"{live.issuer}{path}", data=DEEP, headers=headers, allow_redirects=False, timeout=30)
        assert resp.status_code == 400 and resp.headers["Content-Type"].startswith("application/json"), \
            (path, resp.status_code, resp.text[:200])
        assert resp.json().get("error"), path
    assert "RecursionError" not in live.log_since(offset)


def test_a_posted_authorization_request_too_long_for_a_url_gets_a_readable_page(live):
    """Low: a POST to /authorize is answered with a 303 to the same request as a GET; a posted
    request longer than the 64 kB a request line may hold (a large `request` object, or junk)
    became a redirect no one can follow: a Location header over 64 kB (more than many HTTP
    clients and proxies read) and, followed, a bare 414 from the server with nothing to read."""
    client_id, _ = live.create_client()
    server = Server(live.issuer)
    form = f"client_id={client_id}&response_type=code&scope=openid&redirect_uri=http://127.0.0.1:9/cb&state={LONG}"
    status, ctype, body = server.send("POST", "/authorize", [("Content-Type", "application/x-www-form-urlencoded")],
                                      form.encode())
    assert status == 413 and ctype.startswith("text/html") and b"too large" in body, (status, ctype, body[:200])
    # a posted request that fits in a URL still becomes the GET
    status, _, _ = server.send("POST", "/authorize", [("Content-Type", "application/x-www-form-urlencoded")],
                               form.replace(LONG, "a" * 60000).encode())
    assert status == 303


def test_a_host_header_werkzeug_cannot_read_gets_a_400_not_a_500(live):
    """Low: a Host header with a label longer than 63 characters (not a host name IDNA can
    encode) made werkzeug refuse to route the request (BadHost, a 400) and then the error page,
    which builds its links with url_for, failed in turn: every page answered an anonymous
    request with a 500 and wrote two tracebacks to the log. A proxy's X-Forwarded-Host does
    the same where proxies are trusted."""
    offset = live.log_size()
    server = Server(live.issuer)
    host = "x" * 64 + ".example"
    for method, path in (("GET", "/"), ("GET", "/signin"), ("POST", "/signin"), ("GET", "/no-such-page"),
                         ("GET", "/token"), ("GET", "/scim/v2/Users")):
        status, ctype, body = server.send(method, path, [], b"" if method == "POST" else None, host=host)
        assert status == 400, (method, path, status, ctype, body[:200])
        assert body, (method, path)
    log = live.log_since(offset)
    assert "Traceback" not in log and "Exception on" not in log, log[-3000:]
    # a host name that is merely unknown is still answered as ever
    assert server.send("GET", "/signin", [], None, host="elsewhere.example")[0] == 200
