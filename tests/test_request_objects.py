"""JWT-secured authorization requests (RFC 9101) at /authorize and in PAR, and
per-client required PAR (RFC 9126 §6)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from tests.oidc import REDIRECT, pkce, redirect_params, token

PASSWORD = "request-object-password"


def _client(live, key=None, policy=None, **meta) -> tuple[str, str]:
    from idp.clients import create_client

    meta.setdefault("client_name", "Signed App")
    meta.setdefault("redirect_uris", [REDIRECT])
    if key is not None:
        meta.setdefault("jwks", {"keys": [key.as_dict(private=False)]})
    with live.db():
        client, secret = create_client(meta, first_party=True, policy=policy)
        return client.client_id, secret


def _key(kid="rk1"):
    return ECKey.generate_key("P-256", parameters={"kid": kid})


def _claims(live, cid, **over) -> dict:
    now = int(time.time())
    claims = {"iss": cid, "aud": live.issuer, "client_id": cid, "response_type": "code",
              "redirect_uri": REDIRECT, "scope": "openid email", "state": "inner-state", "nonce": "inner-nonce",
              "nbf": now, "exp": now + 300}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(key, claims, alg="ES256", typ="oauth-authz-req+jwt") -> str:
    header = {"alg": alg, "typ": typ}
    if getattr(key, "kid", None):
        header["kid"] = key.kid
    return jwt.encode(header, claims, key, algorithms=[alg])


def _authorize(browser, live, **params):
    return browser.http.get(f"{live.issuer}/authorize?{urlencode(params)}", allow_redirects=False, timeout=10)


def _signed_in(live, browser, email):
    live.create_user(email, PASSWORD)
    client_id, _ = _client(live)
    _, challenge = pkce()
    page = browser.get(f"{live.issuer}/authorize", response_type="code", client_id=client_id, redirect_uri=REDIRECT,
                       scope="openid", state="s", code_challenge=challenge, code_challenge_method="S256")
    redirect_params(browser.sign_in(page, email, PASSWORD))


def test_discovery_tells_what_request_objects_and_par_do(live):
    for path in ("openid-configuration", "oauth-authorization-server"):
        meta = requests.get(f"{live.issuer}/.well-known/{path}", timeout=10).json()
        assert meta["request_parameter_supported"] is True
        assert meta["request_uri_parameter_supported"] is False  # only PAR's, which PAR metadata covers
        assert meta["request_object_signing_alg_values_supported"] == ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
        assert meta["require_pushed_authorization_requests"] is False


def test_signed_request_is_the_request_and_outer_parameters_are_ignored(live, browser):
    live.create_user("jar@example.com", PASSWORD)
    key = _key()
    client_id, secret = _client(live, key)
    verifier, challenge = pkce()
    request_object = _sign(key, _claims(live, client_id, code_challenge=challenge, code_challenge_method="S256"))
    # Authlib's client builds the URL; the outer scope and state are not the request's (RFC 9101 §6.3).
    rp = OAuth2Session(client_id, secret, scope="openid profile", redirect_uri=REDIRECT)
    url, _ = rp.create_authorization_url(f"{live.issuer}/authorize", state="outer-state", request=request_object)
    page = browser.get(url)
    params = redirect_params(browser.sign_in(page, "jar@example.com", PASSWORD))
    assert params["state"] == "inner-state" and params["iss"] == live.issuer
    tokens = rp.fetch_token(f"{live.issuer}/token", grant_type="authorization_code", code=params["code"],
                            code_verifier=verifier)
    assert tokens["scope"].split() == ["openid", "email"]  # the object's scope, not "openid profile"
    id_claims = jwt.decode(tokens["id_token"], _issuer_keys(live)).claims
    assert id_claims["nonce"] == "inner-nonce"


def _issuer_keys(live):
    from joserfc.jwk import KeySet

    return KeySet.import_key_set(requests.get(f"{live.issuer}/jwks.json", timeout=10).json())


def test_pushed_signed_request(live, browser):
    live.create_user("jar-par@example.com", PASSWORD)
    key = _key()
    client_id, secret = _client(live, key)
    verifier, challenge = pkce()
    request_object = _sign(key, _claims(live, client_id, code_challenge=challenge, code_challenge_method="S256",
                                        state="pushed-state"))
    resp = requests.post(f"{live.issuer}/par", data={"client_id": client_id, "request": request_object},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 201, resp.text
    page = browser.get(f"{live.issuer}/authorize", client_id=client_id, request_uri=resp.json()["request_uri"])
    params = redirect_params(browser.sign_in(page, "jar-par@example.com", PASSWORD))
    assert params["state"] == "pushed-state"
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    # a bad object inside PAR: JSON error, nothing stored
    bad = _sign(key, _claims(live, client_id, aud="https://elsewhere.example"))
    resp = requests.post(f"{live.issuer}/par", data={"client_id": client_id, "request": bad},
                         auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request_object", resp.text


def test_bad_request_objects_are_refused(live, browser):
    _signed_in(live, browser, "jar-bad@example.com")
    key = _key()
    client_id, _ = _client(live, key)
    now = int(time.time())
    rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa"})
    rsa_client, _ = _client(live, rsa)
    cases = {
        "alg none": _none_token(_claims(live, client_id)),
        "HS256 with a shared key": _sign(OctKey.import_key(secrets.token_bytes(32)), _claims(live, client_id),
                                         alg="HS256"),
        "another key": _sign(_key(), _claims(live, client_id)),
        "client_id differs": _sign(key, _claims(live, client_id, client_id=rsa_client)),
        "client_id missing": _sign(key, {k: v for k, v in _claims(live, client_id).items() if k != "client_id"}),
        "iss differs": _sign(key, _claims(live, client_id, iss=rsa_client)),
        "aud elsewhere": _sign(key, _claims(live, client_id, aud="https://elsewhere.example")),
        "aud missing": _sign(key, _claims(live, client_id, aud=None)),
        "exp missing": _sign(key, _claims(live, client_id, exp=None)),
        "expired": _sign(key, _claims(live, client_id, nbf=now - 600, exp=now - 5)),
        "not yet valid": _sign(key, _claims(live, client_id, nbf=now + 600, exp=now + 900)),
        "lives too long": _sign(key, _claims(live, client_id, exp=now + 7200)),
        "wrong typ": _sign(key, _claims(live, client_id), typ="at+jwt"),
        "nested request_uri": _sign(key, _claims(live, client_id, request_uri="https://rp.example/ro")),
        "encrypted": "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d",
        "garbage": "not-a-jwt",
    }
    for why, request_object in cases.items():
        resp = _authorize(browser, live, client_id=client_id, response_type="code", redirect_uri=REDIRECT,
                          state="outer", request=request_object)
        params = redirect_params(resp)
        assert params["error"] == "invalid_request_object", (why, params)
        assert params["state"] == "outer" and params["iss"] == live.issuer and "code" not in params, why
    # an RS256-signed object verifies with the RSA client's key (not only ES256)
    rs = _sign(rsa, _claims(live, rsa_client, code_challenge=pkce()[1], code_challenge_method="S256"), alg="RS256")
    assert "code" in redirect_params(_authorize(browser, live, client_id=rsa_client, request=rs))


def _none_token(claims) -> str:
    import base64

    def part(data) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}."


def test_errors_go_only_to_a_registered_redirect_uri(live, browser):
    key = _key()
    client_id, _ = _client(live, key)
    bad = _sign(_key(), _claims(live, client_id, redirect_uri="https://evil.example/cb"))
    # neither the outer nor the object's redirect_uri is registered: a page, never a redirect
    resp = _authorize(browser, live, client_id=client_id, response_type="code", request=bad,
                      redirect_uri="https://evil.example/cb")
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "invalid" in resp.text.lower()
    # no outer redirect_uri, and the object's is registered (though its signature fails): redirected there
    bad = _sign(_key(), _claims(live, client_id))
    params = redirect_params(_authorize(browser, live, client_id=client_id, response_type="code", request=bad))
    assert params["error"] == "invalid_request_object"
    # an unknown client: a page
    resp = _authorize(browser, live, client_id="nobody", response_type="code", redirect_uri=REDIRECT, request=bad)
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_request_uri_other_than_pars_is_not_supported(live, browser):
    client_id, _ = _client(live)
    params = redirect_params(_authorize(browser, live, client_id=client_id, response_type="code",
                                        redirect_uri=REDIRECT, state="st", request_uri="https://rp.example/ro.jwt"))
    assert params["error"] == "request_uri_not_supported" and params["state"] == "st"
    resp = _authorize(browser, live, client_id=client_id, request_uri="https://rp.example/ro.jwt",
                      redirect_uri="https://evil.example/cb")
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_required_par_refuses_plain_requests(live, browser):
    _signed_in(live, browser, "jar-par-required@example.com")
    key = _key()
    client_id, secret = _client(live, key, policy={"require_par": True})
    _, challenge = pkce()
    plain = {"client_id": client_id, "response_type": "code", "redirect_uri": REDIRECT, "scope": "openid",
             "state": "plain", "code_challenge": challenge, "code_challenge_method": "S256"}
    params = redirect_params(_authorize(browser, live, **plain))
    assert params["error"] == "invalid_request" and params["state"] == "plain"
    assert params["error_description"] == "pushed authorization requests required"
    # signed but not pushed: refused the same way
    signed = _sign(key, _claims(live, client_id, code_challenge=challenge, code_challenge_method="S256"))
    params = redirect_params(_authorize(browser, live, client_id=client_id, request=signed, redirect_uri=REDIRECT))
    assert params["error"] == "invalid_request"
    # with an unregistered redirect_uri: a page
    resp = _authorize(browser, live, **{**plain, "redirect_uri": "https://evil.example/cb"})
    assert resp.status_code == 400 and "Location" not in resp.headers
    # pushed: fine
    pushed = requests.post(f"{live.issuer}/par", data=plain, auth=(client_id, secret), timeout=10)
    assert pushed.status_code == 201, pushed.text
    resp = _authorize(browser, live, client_id=client_id, request_uri=pushed.json()["request_uri"])
    assert "code" in redirect_params(resp)


def test_cli_require_par_shows_in_client_metadata(live, tmp_path):
    key = _key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    out = live.idp("clients", "create", "--name", "Pushed", "--redirect-uri", REDIRECT, "--jwks", str(path),
                   "--require-par", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["require_pushed_authorization_requests"] is True and data["jwks"]["keys"][0]["kid"] == "rk1"
    plain = json.loads(live.idp("clients", "create", "--name", "Plain", "--redirect-uri", REDIRECT, "--json").stdout)
    assert "require_pushed_authorization_requests" not in plain


class _KeysHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.hits += 1
        body = json.dumps(self.server.jwks).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _registration_token(live) -> str:
    out = live.idp("clients", "registration-token")
    assert out.returncode == 0 and out.stdout.strip(), (out.returncode, out.stderr)
    return out.stdout.strip().split()[-1]


def test_keys_from_jwks_uri_verify_request_objects_and_client_assertions(live, browser):
    """One lookup of a client's keys for both: registered by dynamic registration with a
    jwks_uri, fetched through the outbound guard (loopback is allowed for a loopback issuer)."""
    _signed_in(live, browser, "jar-jwks-uri@example.com")
    key = _key("uri-key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeysHandler)
    server.jwks, server.hits = {"keys": [key.as_dict(private=False)]}, 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        jwks_uri = f"http://127.0.0.1:{server.server_address[1]}/jwks"
        reg_token = _registration_token(live)
        resp = requests.post(f"{live.issuer}/register", json={
            "client_name": "Keys by URI", "redirect_uris": [REDIRECT], "jwks_uri": jwks_uri,
            "token_endpoint_auth_method": "private_key_jwt"}, headers={"Authorization": f"Bearer {reg_token}"},
            timeout=10)
        assert resp.status_code == 201, resp.text
        assert resp.json()["jwks_uri"] == jwks_uri and "jwks" not in resp.json()
        client_id = resp.json()["client_id"]
        from idp.store import Client, db

        with live.db():  # first party: no consent screen in the way
            db.session.get(Client, client_id).first_party = True
            db.session.commit()
        verifier, challenge = pkce()
        signed = _sign(key, _claims(live, client_id, code_challenge=challenge, code_challenge_method="S256"))
        params = redirect_params(_authorize(browser, live, client_id=client_id, request=signed))
        assert "code" in params and server.hits >= 1
        now = int(time.time())
        assertion = jwt.encode({"alg": "ES256", "kid": "uri-key"},
                               {"iss": client_id, "sub": client_id, "aud": live.meta["token_endpoint"],
                                "iat": now, "exp": now + 60, "jti": generate_token(16)}, key)
        resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"],
                                   "redirect_uri": REDIRECT, "code_verifier": verifier,
                                   "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                   "client_assertion": assertion})
        assert resp.status_code == 200, resp.text
    finally:
        server.shutdown()
    # jwks and jwks_uri together are refused (RFC 7591 §2)
    resp = requests.post(f"{live.issuer}/register", json={
        "client_name": "Both", "redirect_uris": [REDIRECT], "jwks_uri": jwks_uri,
        "jwks": {"keys": [key.as_dict(private=False)]}},
        headers={"Authorization": f"Bearer {_registration_token(live)}"},
        timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"
