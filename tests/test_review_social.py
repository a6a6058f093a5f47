"""Security review of social sign-in (review-social): each test shows a problem through the
real server, against a real OpenID provider on loopback that signs whatever ID token the
test asks for (an upstream that lies, or is wrong, is what these rules are about)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.conftest import Browser

CLIENT_ID = "review-client"


class HostileProvider:
    """An OpenID provider on loopback: discovery, JWKS, and a token endpoint that answers any
    code with an ID token carrying `claims` (the nonce of the flow filled in by the test)."""

    def __init__(self):
        self.key = RSAKey.generate_key(2048, parameters={"kid": "hostile-1", "use": "sig"}, private=True)
        self.claims: dict = {}
        self.raw_token: str | None = None  # answered instead of a properly signed one
        op = self

        class Handler(BaseHTTPRequestHandler):
            def _json(self, body: dict):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    self._json({"issuer": op.issuer, "authorization_endpoint": op.issuer + "/authorize",
                                "token_endpoint": op.issuer + "/token", "jwks_uri": op.issuer + "/jwks",
                                "token_endpoint_auth_methods_supported": ["client_secret_post"]})
                elif self.path == "/jwks":
                    self._json({"keys": [op.key.as_dict(private=False)]})
                else:
                    self.send_error(404)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                token = op.raw_token or jwt.encode({"alg": "RS256", "kid": "hostile-1"}, op.claims, op.key)
                self._json({"access_token": "at-" + secrets.token_hex(8), "token_type": "Bearer", "id_token": token})

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def id_claims(self, nonce: str, **extra) -> dict:
        now = int(time.time())
        return {"iss": self.issuer, "aud": CLIENT_ID, "sub": "hostile-sub-" + secrets.token_hex(4),
                "iat": now, "exp": now + 300, "nonce": nonce, **extra}


@pytest.fixture(scope="module")
def hostile_module():
    op = HostileProvider()
    yield op
    op.server.shutdown()
    op.server.server_close()


@pytest.fixture
def hostile(hostile_module):
    hostile_module.raw_token = None
    return hostile_module


@pytest.fixture
def provider(live, hostile):
    out = live.idp("social", "add", "hostile", f"--client-id={CLIENT_ID}", "--client-secret=review-secret",
                   "--issuer", hostile.issuer)
    assert out.returncode == 0, out.stderr
    return "hostile"


def _start(live, start_url: str):
    """A browser that started the flow: (browser, state, nonce) read from the redirect upstream."""
    b = Browser(live.issuer)
    resp = b.http.get(start_url, allow_redirects=False, timeout=30)
    assert resp.status_code == 302, resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    return b, query["state"][0], query["nonce"][0]


def _callback(live, b: Browser, name: str, state: str):
    return b.http.get(f"{live.issuer}/social/{name}/callback", params={"state": state, "code": "any-code"},
                      allow_redirects=False, timeout=30)


def test_a_non_ascii_state_on_the_callback_is_refused(live, provider):
    """Low: bad input gets a readable page, never a 500 (OWASP ASVS 7.4.1); RFC 6749 §10.12 state check."""
    b, _, _ = _start(live, f"{live.issuer}/social/hostile/start")
    resp = _callback(live, b, "hostile", "é" * 32)
    assert resp.status_code == 400 and "could not be completed" in resp.text


def _linked_user(live, subject: str) -> str:
    """An account with the hostile provider's `subject` linked to it."""
    from idp.store import LinkedIdentity, User, db

    email = f"linked-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "linked-password-1")
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        db.session.add(LinkedIdentity(user_id=user.id, provider="hostile", subject=subject))
        db.session.commit()
    return email


def test_an_id_token_not_yet_valid_is_refused(live, hostile, provider):
    """Low: an ID token whose nbf lies an hour ahead signs nobody in (RFC 7519 §4.1.5, OpenID Connect Core §3.1.3.7)."""
    b, state, nonce = _start(live, f"{live.issuer}/social/hostile/start")
    hostile.claims = hostile.id_claims(nonce, nbf=int(time.time()) + 3600)
    _linked_user(live, hostile.claims["sub"])
    resp = _callback(live, b, "hostile", state)
    assert resp.status_code == 400 and "did not confirm who you are" in resp.text
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")


@pytest.fixture
def hostile_org(live, hostile):
    """An org whose enterprise OpenID provider is the hostile provider."""
    name = "rev-" + secrets.token_hex(3)
    domain = f"{name}.example"
    assert live.idp("orgs", "create", name, "--domain", domain).returncode == 0
    out = live.idp("orgs", "oidc", name, "--issuer", hostile.issuer, f"--client-id={CLIENT_ID}",
                   "--client-secret=review-secret", "--json")
    assert out.returncode == 0, out.stderr
    return name, domain, urlsplit(json.loads(out.stdout)["redirect_uri"]).path.split("/")[2]


def _to_enterprise_idp(live, email):
    """A new browser's email step for `email`: (the browser, the answer sending it to its org's IdP)."""
    b = Browser(live.issuer)
    return b, b.http.post(f"{live.issuer}/signin", data={"email": email, "csrf_token": _csrf(b, live)},
                          allow_redirects=False, timeout=30)


def test_an_email_verified_false_as_a_string_is_refused(live, hostile, hostile_org):
    """Medium: "false" is not a verified address; no account is made for it (OpenID Connect Core §5.1)."""
    from idp.store import User, db

    _, domain, name = hostile_org
    email = f"eve@{domain}"
    b, resp = _to_enterprise_idp(live, email)
    assert resp.headers["Location"].startswith(hostile.issuer), resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    hostile.claims = hostile.id_claims(query["nonce"][0], email=email, email_verified="false")
    resp = _callback(live, b, name, query["state"][0])
    assert resp.status_code == 400 and "could not be completed" in resp.text
    with live.db():
        assert db.session.query(User).filter_by(email=email).count() == 0


def _csrf(b: Browser, live) -> str:
    from tests.conftest import csrf_of

    return csrf_of(b.get(f"{live.issuer}/signin").text)


def test_an_over_long_subject_is_refused_with_a_page(live, hostile, provider):
    """Low: a sub over 255 characters gets a readable page, not a 500 (OpenID Connect Core §2; ASVS 7.4.1)."""
    from tests.conftest import csrf_of

    email = f"long-{secrets.token_hex(4)}@example.com"
    live.create_user(email, "long-password-1")
    b = Browser(live.issuer)
    account = b.sign_in(b.get(f"{live.issuer}/account"), email, "long-password-1")
    resp = b.http.post(f"{live.issuer}/account/connected/hostile/link", data={"csrf_token": csrf_of(account.text)},
                       allow_redirects=False, timeout=30)
    assert resp.headers["Location"].startswith(hostile.issuer), resp.text
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    hostile.claims = hostile.id_claims(query["nonce"][0], sub="s" * 300)
    resp = _callback(live, b, "hostile", query["state"][0])
    assert resp.status_code == 400 and "did not confirm who you are" in resp.text


def test_malformed_profile_claims_do_not_break_an_enterprise_sign_in(live, hostile, hostile_org):
    """Low: a name that is a list and a 5,000-character given_name give a sign-in, not a 500 (ASVS 5.1.4, 7.4.1)."""
    from idp.store import User, db

    _, domain, name = hostile_org
    email = f"odd@{domain}"
    b, resp = _to_enterprise_idp(live, email)
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    hostile.claims = hostile.id_claims(query["nonce"][0], email=email, email_verified=True, name=["Odd", "Name"],
                                       given_name="G" * 5000, family_name="Family")
    resp = _callback(live, b, name, query["state"][0])
    assert resp.status_code == 302 and b.get(f"{live.issuer}/account").status_code == 200
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        assert user.family_name == "Family" and len(user.given_name) <= 100


def test_a_link_flow_planted_from_another_browser_is_refused(live, hostile, provider):
    """Medium: a link flow finishes only for the session that started it, so a planted flow cookie cannot
    link the attacker's upstream account to the victim's (RFC 9700 §4.7.1; OWASP ASVS 3.5)."""
    from idp.store import LinkedIdentity, User, db
    from tests.conftest import csrf_of

    def fresh(email):
        live.create_user(email, "plant-password-1")
        b = Browser(live.issuer)
        return b, b.sign_in(b.get(f"{live.issuer}/account"), email, "plant-password-1")

    victim_email = f"victim-{secrets.token_hex(4)}@example.com"
    victim, _ = fresh(victim_email)
    attacker, account = fresh(f"attacker-{secrets.token_hex(4)}@example.com")
    resp = attacker.http.post(f"{live.issuer}/account/connected/hostile/link",
                              data={"csrf_token": csrf_of(account.text)}, allow_redirects=False, timeout=30)
    query = parse_qs(urlsplit(resp.headers["Location"]).query)
    # the attacker's own upstream account, signed in just now (a link asks for a fresh sign-in)
    hostile.claims = hostile.id_claims(query["nonce"][0], auth_time=int(time.time()))
    # the attacker's flow cookie, planted in the victim's browser (a sibling host on http)
    planted = next(c for c in attacker.http.cookies if c.name == "idp_flow")
    for c in [c for c in victim.http.cookies if c.name == "idp_flow"]:
        victim.http.cookies.clear(c.domain, c.path, c.name)
    victim.http.cookies.set_cookie(planted)
    resp = _callback(live, victim, "hostile", query["state"][0])
    assert resp.status_code == 400 and "could not be completed" in resp.text
    with live.db():
        victim_id = db.session.query(User).filter_by(email=victim_email).one().id
        assert db.session.query(LinkedIdentity).filter_by(user_id=victim_id).count() == 0


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_an_unsigned_or_hs256_with_the_public_key_id_token_is_refused(live, hostile, provider, alg):
    """High (regression, passes): alg none and HS256 keyed with the provider's public key sign nobody in
    (RFC 8725 §3.1-3.2; OpenID Connect Core §3.1.3.7)."""
    import hashlib
    import hmac

    b, state, nonce = _start(live, f"{live.issuer}/social/hostile/start")
    claims = hostile.id_claims(nonce)
    _linked_user(live, claims["sub"])
    signing_input = _b64(json.dumps({"alg": alg, "kid": "hostile-1"}).encode()) + "." \
        + _b64(json.dumps(claims).encode())
    public_pem = hostile.key.as_pem(private=False)
    signature = "" if alg == "none" else _b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    hostile.raw_token = signing_input + "." + signature
    resp = _callback(live, b, "hostile", state)
    assert resp.status_code == 400 and "did not confirm who you are" in resp.text
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")


def test_a_link_made_under_one_issuer_does_not_sign_in_through_another(live, hostile):
    """Medium: sub is unique only within its issuer: after `idp social add` re-points a provider at another
    issuer, that issuer's equal sub must not sign in to the old link (OpenID Connect Core §2, §5.7): the
    links made under the old issuer are dropped then (and kept when only the client or its secret changes)."""
    from idp.store import LinkedIdentity, User, db

    other = HostileProvider()
    try:
        def point_at(op):
            out = live.idp("social", "add", "moving", f"--client-id={CLIENT_ID}", "--client-secret=review-secret",
                           "--issuer", op.issuer)
            assert out.returncode == 0, out.stderr
            return out

        point_at(hostile)
        email = f"moved-{secrets.token_hex(4)}@example.com"
        live.create_user(email, "moved-password-1")
        subject = "1234567"  # a numeric sub, as many providers give
        with live.db():
            user = db.session.query(User).filter_by(email=email).one()
            db.session.add(LinkedIdentity(user_id=user.id, provider="moving", subject=subject))
            db.session.commit()
        point_at(hostile)  # a new secret, the same issuer: the link stays

        def links():
            with live.db():
                return db.session.query(LinkedIdentity).filter_by(provider="moving").count()

        assert links() == 1
        moved = point_at(other)  # the operator re-points the provider name at another issuer
        assert links() == 0 and "1 account link(s)" in moved.stderr
        b, state, nonce = _start(live, f"{live.issuer}/social/moving/start")
        other.claims = other.id_claims(nonce, sub=subject)
        resp = _callback(live, b, "moving", state)
        assert resp.status_code != 302
        assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
    finally:
        other.server.shutdown()
        other.server.server_close()


def test_a_multi_tenant_microsoft_issuer_for_an_org_is_refused(live):
    """Medium: an org's enterprise provider at Microsoft's `common` endpoint would admit ID tokens of every
    Microsoft tenant for the org's domains (OpenID Connect Core §3.1.3.7 step 2: one issuer, exactly)."""
    name = "mt-" + secrets.token_hex(3)
    assert live.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    for tenant in ("common", "organizations", "consumers", "Common"):
        out = live.idp("orgs", "oidc", name, "--issuer", f"https://login.microsoftonline.com/{tenant}/v2.0/",
                       "--client-id=entra-app", "--client-secret=entra-secret")
        assert out.returncode == 1 and out.stderr.startswith("error: ") and "tenant" in out.stderr, tenant
