"""DPoP (RFC 9449): proofs, nonces, bound tokens at the token endpoint, userinfo and introspection.

Proofs are built with joserfc, as a client would; the server's own verification is
separate code (`idp/oauth/dpop.py`), so the two check each other. Thumbprints are
joserfc's (RFC 7638), compared with what the server puts in `cnf.jkt`.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import secrets
import time
from urllib.parse import urlsplit

import pytest
import requests
from joserfc import jws, jwt
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from tests.conftest import start_live
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, verify

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Holder:
    """A client's DPoP key, and the nonce it last got from the server."""

    def __init__(self, alg: str = "ES256"):
        self.alg = alg
        self.key = {
            "ES256": lambda: ECKey.generate_key("P-256"),
            "ES384": lambda: ECKey.generate_key("P-384"),
            "RS256": lambda: RSAKey.generate_key(2048),
            "PS256": lambda: RSAKey.generate_key(2048),
            "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
        }[alg]()
        self.nonce: str | None = None

    @property
    def jkt(self) -> str:
        return self.key.thumbprint()

    def proof(self, htm: str, htu: str, *, access_token: str | None = None, header: dict | None = None,
              signer=None, **claims) -> str:
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False), **(header or {})}
        body = {"jti": secrets.token_urlsafe(12), "htm": htm, "htu": htu, "iat": int(time.time())}
        if self.nonce:
            body["nonce"] = self.nonce
        if access_token:
            body["ath"] = _b64(hashlib.sha256(access_token.encode()).digest())
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(head, body, signer or self.key, algorithms=[head["alg"]])

    def raw_proof(self, payload: str) -> str:
        """A proof whose claims are exactly this JSON text (which no JWT library would write)."""
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.key.as_dict(private=False)}
        return jws.serialize_compact(head, payload.encode(), self.key, algorithms=[self.alg])


def _token(live, data: dict, auth=None, proof: str | None = None) -> requests.Response:
    headers = {"DPoP": proof} if proof else {}
    return requests.post(f"{live.issuer}/token", data=data, auth=auth, headers=headers, timeout=30)


def _bound_token(live, holder: Holder, data: dict, auth=None) -> requests.Response:
    """A token request with a proof, fetching the server's nonce first when needed (§8)."""
    resp = _token(live, data, auth, holder.proof("POST", f"{live.issuer}/token"))
    if resp.status_code == 400 and resp.json()["error"] == "use_dpop_nonce":
        holder.nonce = resp.headers["DPoP-Nonce"]
        resp = _token(live, data, auth, holder.proof("POST", f"{live.issuer}/token"))
    if "DPoP-Nonce" in resp.headers:
        holder.nonce = resp.headers["DPoP-Nonce"]
    return resp


def _error(resp: requests.Response, status: int = 400) -> str:
    assert resp.status_code == status, resp.text
    return resp.json()["error"]


def _service(live, **meta):
    return live.create_client(grant_types=["client_credentials"], redirect_uris=[], **meta)


def _code(live, browser, client_id, email, password, **extra) -> tuple[str, str]:
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, scope="openid email", code_challenge=challenge,
                                     code_challenge_method="S256", **extra))
    resp = page if page.is_redirect else browser.sign_in(page, email, password)
    return redirect_params(resp)["code"], verifier


def _exchange(code, verifier, client_id):
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": verifier, "client_id": client_id}


# What each refused proof is refused for (the error_description), so that no test passes
# because the proof failed an earlier check than the one it is about.
WHY = {
    "wrong typ": "typ", "alg none": "alg must be", "HS256": "alg must be", "private key in jwk": "private key",
    "signed by another key": "signature", "wrong htm": "htm", "wrong htu": "htu", "another host": "htu",
    "old iat": "iat", "future iat": "iat", "no jti": "jti", "not a JWS": "compact JWS",
    "no proof": "needs a DPoP proof", "wrong ath": "ath", "non-ASCII ath": "ath", "no ath": "ath",
    "another key": "another key",
}


# --- the token endpoint ----------------------------------------------------------------

def test_nonce_then_a_bound_client_credentials_token(live):
    assert live.meta["dpop_signing_alg_values_supported"] == ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
    client_id, secret = _service(live)
    holder = Holder()
    # no nonce yet: the server asks for one, and says which
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret),
                  holder.proof("POST", f"{live.issuer}/token"))
    assert _error(resp) == "use_dpop_nonce" and resp.headers["DPoP-Nonce"]
    # a nonce the server never gave is no better
    holder.nonce = _b64(secrets.token_bytes(18))
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret),
                  holder.proof("POST", f"{live.issuer}/token"))
    assert _error(resp) == "use_dpop_nonce"
    holder.nonce = resp.headers["DPoP-Nonce"]
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret),
                  holder.proof("POST", f"{live.issuer}/token"))
    assert resp.status_code == 200, resp.text
    assert resp.headers["DPoP-Nonce"]
    body = resp.json()
    assert body["token_type"] == "DPoP"
    _, claims = verify(live.issuer, body["access_token"])
    assert claims["cnf"] == {"jkt": holder.jkt}
    # without a proof: a plain Bearer token, still with a nonce for next time
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "Bearer" and resp.headers["DPoP-Nonce"]
    assert "cnf" not in verify(live.issuer, resp.json()["access_token"])[1]
    # introspection says how the token is bound
    rs_id, rs_secret = _service(live)
    data = requests.post(f"{live.issuer}/introspect", data={"token": body["access_token"]},
                         auth=(rs_id, rs_secret), timeout=10).json()
    assert data["active"] is True and data["token_type"] == "DPoP" and data["cnf"] == {"jkt": holder.jkt}


@pytest.mark.parametrize("alg", ["ES384", "RS256", "PS256", "EdDSA"])
def test_every_advertised_algorithm_binds(live, alg):
    client_id, secret = _service(live)
    holder = Holder(alg)
    resp = _bound_token(live, holder, {"grant_type": "client_credentials"}, (client_id, secret))
    assert resp.status_code == 200, resp.text
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": holder.jkt}


def _none_proof(holder: Holder, htu: str) -> str:
    head = {"typ": "dpop+jwt", "alg": "none", "jwk": holder.key.as_dict(private=False)}
    body = {"jti": secrets.token_urlsafe(12), "htm": "POST", "htu": htu, "iat": int(time.time()),
            "nonce": holder.nonce}
    return f"{_b64(json.dumps(head).encode())}.{_b64(json.dumps(body).encode())}."


def test_bad_proofs_are_refused_at_the_token_endpoint(live):
    client_id, secret = _service(live)
    holder, other = Holder(), Holder()
    assert _bound_token(live, holder, {"grant_type": "client_credentials"}, (client_id, secret)).status_code == 200
    other.nonce = holder.nonce
    url = f"{live.issuer}/token"
    hs_key = OctKey.generate_key(256)
    bad = {
        "wrong typ": holder.proof("POST", url, header={"typ": "JWT"}),
        "alg none": _none_proof(holder, url),
        "HS256": holder.proof("POST", url, header={"alg": "HS256", "jwk": hs_key.as_dict()}, signer=hs_key),
        "private key in jwk": holder.proof("POST", url, header={"jwk": holder.key.as_dict(private=True)}),
        "signed by another key": holder.proof("POST", url, signer=other.key),
        "wrong htm": holder.proof("GET", url),
        "wrong htu": holder.proof("POST", f"{live.issuer}/userinfo"),
        "another host": holder.proof("POST", url.replace("127.0.0.1", "evil.example")),
        "old iat": holder.proof("POST", url, iat=int(time.time()) - 300),
        "future iat": holder.proof("POST", url, iat=int(time.time()) + 300),
        "no jti": holder.proof("POST", url, jti=None),
        "not a JWS": "not.a.jws",
    }
    for name, proof in bad.items():
        resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), proof)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", (name, resp.text)
        assert WHY[name] in resp.json()["error_description"], (name, resp.text)
        assert resp.headers["DPoP-Nonce"], name
    # odd values are refused as proofs, never answered with a 500
    odd = {
        "NaN iat": '{"jti": "%s", "htm": "POST", "htu": "%s", "iat": NaN, "nonce": "%s"}',
        "non-ASCII nonce": '{"jti": "%s", "htm": "POST", "htu": "%s", "iat": 1, "nonce": "\u00e9%s"}',
    }
    for name, template in odd.items():
        payload = template % (secrets.token_urlsafe(8), url, holder.nonce)
        payload = payload.replace('"iat": 1', f'"iat": {int(time.time())}')
        resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), holder.raw_proof(payload))
        assert resp.status_code == 400, (name, resp.text)
        assert resp.json()["error"] in ("invalid_dpop_proof", "use_dpop_nonce"), name
    # the same proof twice: the second is a replay
    proof = holder.proof("POST", url)
    assert _token(live, {"grant_type": "client_credentials"}, (client_id, secret), proof).status_code == 200
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), proof)
    assert _error(resp) == "invalid_dpop_proof"
    # a query string is no part of htu: the endpoint URL still matches
    resp = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), holder.proof("POST", url + "?x=1"))
    assert resp.status_code == 200, resp.text
    # two DPoP headers: refused, whatever they hold
    target = urlsplit(live.issuer)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    conn.putrequest("POST", "/token")
    for name, value in [("Authorization", f"Basic {basic}"), ("Content-Type", "application/x-www-form-urlencoded"),
                        ("DPoP", holder.proof("POST", url)), ("DPoP", holder.proof("POST", url)),
                        ("Content-Length", "29")]:
        conn.putheader(name, value)
    conn.endheaders(b"grant_type=client_credentials")
    answer = conn.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["error"] == "invalid_dpop_proof"
    conn.close()


def test_htu_is_the_issuer_url_whatever_the_host_header_says(live):
    """Behind a proxy the Host header is the proxy's business: the proof names the URL the
    issuer gives the endpoint, and only that one."""
    client_id, secret = _service(live)
    holder = Holder()
    assert _bound_token(live, holder, {"grant_type": "client_credentials"}, (client_id, secret)).status_code == 200
    internal = {"Host": "idp.internal:8080"}
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                         headers={**internal, "DPoP": holder.proof("POST", f"{live.issuer}/token")}, timeout=10)
    assert resp.status_code == 200, resp.text
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                         headers={**internal, "DPoP": holder.proof("POST", "http://idp.internal:8080/token")},
                         timeout=10)
    assert _error(resp) == "invalid_dpop_proof"


def test_require_dpop_client(live):
    made = live.idp("clients", "create", "--name", "Bound", "--grant-type", "client_credentials",
                    "--require-dpop", "--json")
    assert made.returncode == 0, made.stderr
    client = json.loads(made.stdout)
    assert client["dpop_bound_access_tokens"] is True
    auth = (client["client_id"], client["client_secret"])
    resp = _token(live, {"grant_type": "client_credentials"}, auth)
    assert _error(resp) == "invalid_dpop_proof"
    resp = _bound_token(live, Holder(), {"grant_type": "client_credentials"}, auth)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP"


# --- codes, refresh tokens, device codes ---------------------------------------------------

def test_public_client_refresh_tokens_are_bound_to_the_key(live, browser):
    from idp.store import Grant, db

    live.create_user("dpop-public@example.com", "dpop-password")
    client_id, _ = live.create_client(token_endpoint_auth_method="none",
                                      grant_types=["authorization_code", "refresh_token"])
    holder, thief = Holder(), Holder()
    code, verifier = _code(live, browser, client_id, "dpop-public@example.com", "dpop-password")
    resp = _bound_token(live, holder, _exchange(code, verifier, client_id))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "DPoP"
    assert verify(live.issuer, body["access_token"])[1]["cnf"] == {"jkt": holder.jkt}
    with live.db():
        gid = verify(live.issuer, body["access_token"])[1]["gid"]
        assert db.session.get(Grant, gid).dpop_jkt == holder.jkt
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client_id}
    # another key, or none: refused, and the token is still good for its holder
    assert _error(_bound_token(live, thief, refresh)) == "invalid_grant"
    assert _error(_token(live, refresh)) == "invalid_grant"
    resp = _bound_token(live, holder, refresh)
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "DPoP"
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": holder.jkt}
    refresh["refresh_token"] = resp.json()["refresh_token"]
    assert _error(_bound_token(live, thief, refresh)) == "invalid_grant"


def test_confidential_client_refresh_tokens_are_not_bound(live, browser):
    live.create_user("dpop-conf@example.com", "dpop-password")
    client_id, secret = live.create_client()
    holder, later = Holder(), Holder()
    code, verifier = _code(live, browser, client_id, "dpop-conf@example.com", "dpop-password")
    resp = _bound_token(live, holder, _exchange(code, verifier, client_id), auth=(client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP"
    refresh = {"grant_type": "refresh_token", "refresh_token": resp.json()["refresh_token"]}
    # RFC 9449 §5: the client authenticates; its new access token is bound to the new proof's key
    resp = _bound_token(live, later, refresh, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": later.jkt}
    refresh["refresh_token"] = resp.json()["refresh_token"]
    resp = _token(live, refresh, auth=(client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "Bearer"


def test_dpop_jkt_binds_the_code(live, browser):
    live.create_user("dpop-jkt@example.com", "dpop-password")
    client_id, secret = live.create_client()
    holder, other = Holder(), Holder()
    sign_in = ("dpop-jkt@example.com", "dpop-password")
    code, verifier = _code(live, browser, client_id, *sign_in, dpop_jkt=holder.jkt)
    assert _error(_bound_token(live, other, _exchange(code, verifier, client_id), (client_id, secret))) \
        == "invalid_grant"
    code, verifier = _code(live, browser, client_id, *sign_in, dpop_jkt=holder.jkt)
    assert _error(_token(live, _exchange(code, verifier, client_id), (client_id, secret))) == "invalid_grant"
    code, verifier = _code(live, browser, client_id, *sign_in, dpop_jkt=holder.jkt)
    resp = _bound_token(live, holder, _exchange(code, verifier, client_id), (client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP"
    # a malformed dpop_jkt is answered at the redirect URI
    page = browser.get(authorize_url(live.issuer, client_id, dpop_jkt="not-a-thumbprint",
                                     code_challenge=pkce()[1], code_challenge_method="S256"))
    assert redirect_params(page)["error"] == "invalid_request"


def test_pushed_requests_bind_the_code_by_dpop_jkt_or_proof(live, browser):
    live.create_user("dpop-par@example.com", "dpop-password")
    client_id, secret = live.create_client()
    holder, other = Holder(), Holder()
    signed_in = False

    def push_and_sign_in(headers=None, **params):
        nonlocal signed_in
        verifier, challenge = pkce()
        data = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
                "code_challenge": challenge, "code_challenge_method": "S256", **params}
        resp = requests.post(f"{live.issuer}/par", data=data, auth=(client_id, secret), headers=headers, timeout=10)
        assert resp.status_code == 201, resp.text
        page = browser.get(f"{live.issuer}/authorize?client_id={client_id}&request_uri={resp.json()['request_uri']}")
        if not signed_in:
            page, signed_in = browser.sign_in(page, "dpop-par@example.com", "dpop-password"), True
        return redirect_params(page)["code"], verifier

    code, verifier = push_and_sign_in(dpop_jkt=holder.jkt)
    assert _error(_bound_token(live, other, _exchange(code, verifier, client_id), (client_id, secret))) \
        == "invalid_grant"
    code, verifier = push_and_sign_in(headers={"DPoP": holder.proof("POST", f"{live.issuer}/par")})
    assert _error(_bound_token(live, other, _exchange(code, verifier, client_id), (client_id, secret))) \
        == "invalid_grant"
    code, verifier = push_and_sign_in(headers={"DPoP": holder.proof("POST", f"{live.issuer}/par")})
    resp = _bound_token(live, holder, _exchange(code, verifier, client_id), (client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP"
    # a proof of one key and dpop_jkt of another cannot both bind
    resp = requests.post(f"{live.issuer}/par", data={"response_type": "code", "redirect_uri": REDIRECT,
                                                      "dpop_jkt": other.jkt},
                         auth=(client_id, secret), headers={"DPoP": holder.proof("POST", f"{live.issuer}/par")},
                         timeout=10)
    assert _error(resp) == "invalid_request"
    resp = requests.post(f"{live.issuer}/par", data={"response_type": "code", "redirect_uri": REDIRECT},
                         auth=(client_id, secret), headers={"DPoP": holder.proof("GET", f"{live.issuer}/par")},
                         timeout=10)
    assert _error(resp) == "invalid_dpop_proof"


def test_device_grant_with_dpop(live, browser):
    live.create_user("dpop-tv@example.com", "dpop-password")
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE, "refresh_token"],
                                      redirect_uris=[])
    started = requests.post(live.meta["device_authorization_endpoint"],
                            data={"client_id": client_id, "scope": "openid email"}, timeout=10).json()
    page = browser.get(started["verification_uri_complete"])
    page = browser.sign_in(page, "dpop-tv@example.com", "dpop-password")
    page = browser.submit(page, {"user_code": started["user_code"]})
    browser.submit(page, {"user_code": started["user_code"], "decision": "allow"})
    holder = Holder("EdDSA")
    resp = _bound_token(live, holder, {"grant_type": DEVICE, "device_code": started["device_code"],
                                       "client_id": client_id})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "DPoP"
    assert verify(live.issuer, body["access_token"])[1]["cnf"] == {"jkt": holder.jkt}
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": client_id}
    assert _error(_token(live, refresh)) == "invalid_grant"
    assert _bound_token(live, holder, refresh).status_code == 200


# --- userinfo ------------------------------------------------------------------------------

def test_userinfo_takes_a_bound_token_only_with_its_proof(live, browser):
    live.create_user("dpop-ui@example.com", "dpop-password")
    client_id, secret = live.create_client()
    holder, other = Holder(), Holder()
    code, verifier = _code(live, browser, client_id, "dpop-ui@example.com", "dpop-password")
    at = _bound_token(live, holder, _exchange(code, verifier, client_id), (client_id, secret)).json()["access_token"]
    url = f"{live.issuer}/userinfo"

    def call(scheme="DPoP", proof=None, method="GET"):
        headers = {"Authorization": f"{scheme} {at}"}
        if proof:
            headers["DPoP"] = proof
        return requests.request(method, url, headers=headers, timeout=10)

    resp = call(proof=holder.proof("GET", url, access_token=at))
    assert resp.status_code == 200, resp.text
    assert resp.json()["email"] == "dpop-ui@example.com" and resp.headers["DPoP-Nonce"]
    resp = call(proof=holder.proof("POST", url, access_token=at), method="POST")
    assert resp.status_code == 200
    # as a Bearer token it is worthless, even with a proof
    resp = call("Bearer")
    assert _error(resp, 401) == "invalid_token" and resp.headers["WWW-Authenticate"].startswith("DPoP ")
    assert _error(call("Bearer", holder.proof("GET", url, access_token=at)), 401) == "invalid_token"
    refused = {
        "no proof": None,
        "wrong ath": holder.proof("GET", url, access_token=at + "x"),
        "non-ASCII ath": holder.proof("GET", url, ath="\u00e9" * 43),
        "no ath": holder.proof("GET", url),
        "another key": other.proof("GET", url, access_token=at),
        "wrong htu": holder.proof("GET", f"{live.issuer}/token", access_token=at),
        "wrong htm": holder.proof("POST", url, access_token=at),
    }
    for name, proof in refused.items():
        resp = call(proof=proof)
        assert resp.status_code == 401 and resp.json()["error"] == "invalid_dpop_proof", (name, resp.text)
        assert WHY[name] in resp.json()["error_description"], (name, resp.text)
        assert 'error="invalid_dpop_proof"' in resp.headers["WWW-Authenticate"], name
    # a proof is good once
    proof = holder.proof("GET", url, access_token=at)
    assert call(proof=proof).status_code == 200
    assert _error(call(proof=proof), 401) == "invalid_dpop_proof"
    # a stale nonce is answered with the current one
    resp = call(proof=holder.proof("GET", url, access_token=at, nonce="stale"))
    assert _error(resp, 401) == "use_dpop_nonce" and resp.headers["DPoP-Nonce"]
    # an unbound token is a Bearer token only
    code, verifier = _code(live, browser, client_id, "dpop-ui@example.com", "dpop-password")  # signed in already
    plain = _token(live, _exchange(code, verifier, client_id), (client_id, secret))
    assert plain.json()["token_type"] == "Bearer"
    at = plain.json()["access_token"]
    assert _error(call(proof=holder.proof("GET", url, access_token=at)), 401) == "invalid_token"
    assert call("Bearer").status_code == 200


# --- two servers, one database ---------------------------------------------------------------

@pytest.fixture(scope="module")
def twin(live, tmp_path_factory):
    """A second `idp serve` on the same database, instance directory (secret) and issuer, as
    behind one load balancer; yields the URL it really listens on."""
    for server in start_live(live.env["IDP_DATABASE_URL"], tmp_path_factory.mktemp("twin"), live.mailbox,
                             extra_env={"IDP_INSTANCE_DIR": live.env["IDP_INSTANCE_DIR"],
                                        "IDP_ISSUER": live.issuer}):
        port = server.proc.args[server.proc.args.index("--port") + 1]
        yield f"http://127.0.0.1:{port}"


def test_replay_is_refused_across_servers(live, twin):
    client_id, secret = _service(live)
    holder = Holder()
    assert _bound_token(live, holder, {"grant_type": "client_credentials"}, (client_id, secret)).status_code == 200
    proof = holder.proof("POST", f"{live.issuer}/token")
    first = _token(live, {"grant_type": "client_credentials"}, (client_id, secret), proof)
    assert first.status_code == 200, first.text
    again = requests.post(f"{twin}/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                          headers={"DPoP": proof}, timeout=10)
    assert _error(again) == "invalid_dpop_proof"
    # the first server's nonce is good at the other: a fresh proof passes there
    fresh = requests.post(f"{twin}/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret),
                          headers={"DPoP": holder.proof("POST", f"{live.issuer}/token")}, timeout=10)
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["token_type"] == "DPoP"


# --- the jti marker itself ---------------------------------------------------------------------

def test_a_marker_is_claimed_once_and_survives_a_lost_connection(live):
    """`claim_at_once` (the jti store of every proof) on the real database: the first claim
    wins, a second is refused, the expiry is stored as the housekeeping reads it; and on
    PostgreSQL a marker connection the server dropped is replaced without losing a claim."""
    from datetime import datetime, timedelta

    from sqlalchemy import text

    from idp import single_use
    from idp.store import RevokedToken, db, digest

    expires = datetime(2031, 5, 6, 7, 8, 9, 123456)
    value = secrets.token_urlsafe(16)
    with live.app.app_context():
        assert single_use.claim_at_once("test", value, expires) is True
        assert single_use.claim_at_once("test", value, expires) is False
        row = db.session.get(RevokedToken, f"test:{digest(value)}"[:64])
        assert row is not None and row.expires_at == expires
        assert single_use.claim_at_once("test", value + "x", expires + timedelta(seconds=1)) is True
        conn, _ = single_use._MARKERS.get()
        if not hasattr(conn, "pgconn"):
            return
        db.session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": conn.info.backend_pid})
        db.session.commit()
        time.sleep(0.2)
        assert single_use.claim_at_once("test", value, expires) is False  # on a new connection, still refused
        other = secrets.token_urlsafe(16)
        assert single_use.claim_at_once("test", other, expires) is True
        assert single_use.claim_at_once("test", other, expires) is False
        assert single_use._MARKERS.get()[0] is not conn


# --- a nonced proof's marker, unsynced on SQLite ---------------------------------------------

def test_a_nonced_proof_is_spent_once_without_waiting_for_the_disk(live):
    """A proof with the server's nonce is spent on SQLite by a commit that does not wait for
    the disk (synchronous=NORMAL), and still only once, whichever connection tries again; a
    proof without a nonce (userinfo's may have none) is spent by a synced commit."""
    from idp import single_use
    from idp.oauth import dpop

    holder = Holder()
    url = f"{live.issuer}/userinfo"
    with live.app.app_context():
        sqlite = single_use.host_boot() is not None
        holder.nonce = dpop.current_nonce()
        nonced = dpop.check_proof(holder.proof("GET", url), method="GET", url=url)
        holder.nonce = None
        bare = dpop.check_proof(holder.proof("GET", url), method="GET", url=url)
        assert (nonced.nonced, bare.nonced) == (True, False)
        assert dpop.spend(nonced) is True
        assert dpop.spend(nonced) is False
        # the marker is the one every connection sees: the synced one cannot claim it either
        assert single_use.claim_at_once(dpop.MARKER_KIND, nonced.marker, nonced.expires) is False
        assert dpop.spend(bare) is True
        assert dpop.spend(bare) is False
        if sqlite:
            unsynced, _ = single_use._UNSYNCED_MARKERS.get()
            synced, _ = single_use._MARKERS.get()
            assert unsynced.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
            assert synced.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_nonces_die_with_the_host_boot_on_sqlite(live, monkeypatch):
    """What makes an unsynced marker safe: an OS crash that takes it back also ends the boot,
    and a nonce made in another boot is refused, so the proof it spent cannot come back. On
    PostgreSQL (markers synced by its server, processes on several hosts) nonces do not
    depend on the host."""
    from idp import single_use
    from idp.oauth import dpop

    with live.app.app_context():
        sqlite = single_use.host_boot() is not None
        before = dpop.current_nonce()
        live.app.extensions.pop("idp.dpop_nonces", None)
        monkeypatch.setattr(single_use, "_boot_id", lambda: b"the next boot")
        try:
            assert dpop.nonce_is_valid(before) is not sqlite
            assert (dpop.current_nonce() == before) is not sqlite
            assert dpop.nonce_is_valid(dpop.current_nonce())
        finally:
            live.app.extensions.pop("idp.dpop_nonces", None)
