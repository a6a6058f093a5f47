"""Review (round 3) of the token endpoint as changed by the DPoP-bound refresh grant on the
plain path (idp/oauth/fast_refresh.py, dpop.check_proof/spend, endpoints/machine.py and
token.py), through the real server, on both databases."""

from __future__ import annotations

import json

import requests

from tests.test_dpop import Holder, _b64


def _nested(depth: int) -> str:
    return _b64(b"[" * depth + b"]" * depth)


def test_a_dpop_proof_of_deeply_nested_json_is_refused_not_a_500(live):
    """Low, RFC 9449 §4.3 / OWASP ASVS 5.1.4: a proof whose header or claims are JSON nested
    past the parser's depth (a 4 KB header) raised RecursionError, a 500 with a traceback,
    at the token endpoint (every grant, the plain paths too) and PAR; now the proof is
    refused as any malformed proof is, invalid_dpop_proof."""
    client_id, secret = live.create_client(grant_types=["client_credentials", "authorization_code",
                                                        "refresh_token"])
    holder = Holder()
    head = _b64(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": holder.key.as_dict(private=False)}).encode())
    proofs = {
        "nested header": f"{_nested(3000)}.{_b64(b'{}')}.{_b64(b'x' * 64)}",
        "nested claims": f"{head}.{_nested(3000)}.{_b64(b'x' * 64)}",
    }
    requests_ = {
        "client_credentials": {"grant_type": "client_credentials"},
        "refresh_token": {"grant_type": "refresh_token", "refresh_token": "not-a-token"},
        "authorization_code": {"grant_type": "authorization_code", "code": "not-a-code",
                               "redirect_uri": "http://127.0.0.1:9/cb"},
    }
    for name, proof in proofs.items():
        for grant, form in requests_.items():
            resp = requests.post(f"{live.issuer}/token", data=form, auth=(client_id, secret),
                                 headers={"DPoP": proof}, timeout=30)
            assert resp.status_code == 400, (name, grant, resp.status_code, resp.text)
            assert resp.json()["error"] == "invalid_dpop_proof" and resp.headers["DPoP-Nonce"], (name, grant)
        resp = requests.post(f"{live.issuer}/par", auth=(client_id, secret), timeout=30, headers={"DPoP": proof},
                             data={"response_type": "code", "client_id": client_id, "scope": "openid",
                                   "redirect_uri": "http://127.0.0.1:9/cb"})
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", (name, resp.text)
    assert "RecursionError" not in live.log.read_text()


def test_a_nul_in_a_client_id_at_the_token_endpoint_is_refused_not_a_500(live):
    """Low, OWASP ASVS 5.1.4: a client_id with a NUL (in the form, or in Basic credentials) was
    looked up in PostgreSQL, whose text holds no NUL: a 500 with a traceback, on the plain
    paths and Authlib's alike (and at PAR, revocation, introspection and device
    authorization, which find their client the same way). No client has such an id: now
    invalid_client, as for any unknown client, on both databases."""
    bad = "rf\x00x"
    forms = {
        "refresh_token": {"grant_type": "refresh_token", "refresh_token": "x", "client_id": bad},
        "authorization_code": {"grant_type": "authorization_code", "code": "x", "client_id": bad,
                               "redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": "a" * 43},
        "client_credentials (post)": {"grant_type": "client_credentials", "client_id": bad, "client_secret": "s"},
    }
    for name, form in forms.items():
        resp = requests.post(f"{live.issuer}/token", data=form, timeout=30)
        assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", (name, resp.text)
    for path, form in (("/token", {"grant_type": "client_credentials"}), ("/revoke", {"token": "x"}),
                       ("/introspect", {"token": "x"}), ("/par", {"response_type": "code"}),
                       ("/device_authorization", {})):
        resp = requests.post(f"{live.issuer}{path}", data=form, auth=(bad, "secret"), timeout=30)
        assert resp.status_code in (400, 401) and resp.json()["error"] == "invalid_client", (path, resp.text)
    assert "PostgreSQL text fields cannot contain NUL" not in live.log.read_text()


def test_the_machine_endpoints_of_an_https_issuer_send_strict_transport_security(tmp_path):
    """Low, OWASP ASVS 4.0 V14.4.5 / RFC 6797: on an https issuer every answer tells the browser
    to use https only (test_review_pages), but the answers given in front of Flask
    (endpoints/machine.py: discovery, the JWKS, the plain token grants, which a browser app
    fetches too) lacked the header that Flask's path gives the same requests."""
    import base64

    from idp import create_app
    from idp.clients import create_client
    from idp.config import Settings
    from idp.cli import initialize

    issuer = "https://idp.example"
    app = create_app(Settings.from_env({"IDP_ISSUER": issuer, "IDP_INSTANCE_DIR": str(tmp_path),
                                        "IDP_SECRET_KEY": "k" * 48}))
    initialize(app)
    with app.app_context():
        client, secret = create_client({"client_name": "svc", "grant_types": ["client_credentials"],
                                        "redirect_uris": []})
    http = app.test_client()
    basic = {"Authorization": "Basic " + base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()}
    answers = {
        "jwks": http.get("/jwks.json", base_url=issuer),
        "discovery": http.get("/.well-known/openid-configuration", base_url=issuer),
        "client_credentials": http.post("/token", data={"grant_type": "client_credentials"}, headers=basic,
                                        base_url=issuer),
        # the same grant with a repeated parameter: Flask's path, refused
        "flask's path": http.post("/token", data="grant_type=client_credentials&grant_type=client_credentials",
                                  content_type="application/x-www-form-urlencoded", headers=basic,
                                  base_url=issuer),
    }
    for name, resp in answers.items():
        assert resp.status_code in (200, 400), (name, resp.status_code)
        assert resp.headers.get("Strict-Transport-Security") == "max-age=31536000", name
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", name
