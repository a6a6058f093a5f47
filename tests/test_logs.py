"""The server's log (SPEC §2): IDP_LOG_FORMAT=json gives one JSON object a line with a request
id; and at DEBUG, in either format, no password, secret, code, token or cookie of real flows
ever reaches it."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from tests.conftest import Browser, separate_live
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token
from tests.smtp import link_in

FORMATS = {
    "text": {"IDP_LOG_LEVEL": "DEBUG", "IDP_LOG_FORMAT": "text"},
    "json": {"IDP_LOG_LEVEL": "DEBUG", "IDP_LOG_FORMAT": "json", "IDP_TRUSTED_PROXIES": "1"},
}


@pytest.fixture(scope="module", params=sorted(FORMATS))
def logged(request, tmp_path_factory):
    yield from separate_live(tmp_path_factory, f"log-{request.param}", extra_env=FORMATS[request.param])


def run_flows(live) -> list[str]:
    """Sign-ins, code exchange, refresh, client credentials, introspection, a mailed reset link,
    dynamic registration; returns every secret value that went over the wire."""
    used = []
    password = "pw-" + secrets.token_urlsafe(12)
    wrong = "wrong-" + secrets.token_urlsafe(12)
    email = f"logged-{secrets.token_hex(4)}@example.com"
    live.create_user(email, password)
    client_id, client_secret = live.create_client(grant_types=["authorization_code", "refresh_token"],
                                                  scope="openid profile email offline_access")
    cc_id, cc_secret = live.create_client(grant_types=["client_credentials"], redirect_uris=[])
    used += [password, wrong, client_secret, cc_secret]

    browser = Browser(live.issuer)
    assert browser.sign_in(browser.get(authorize_url(live.issuer, client_id)), email, wrong).status_code == 401
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256",
                                     scope="openid email offline_access", prompt="consent"))
    resp = browser.sign_in(page, email, password)
    if resp.status_code == 200 and "consent" in resp.text.lower():
        resp = browser.submit(resp, {"decision": "allow"})
    code = redirect_params(resp)["code"]
    used += [code, verifier] + [c.value for c in browser.http.cookies]

    tokens = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier}, auth=(client_id, client_secret)).json()
    assert "access_token" in tokens, tokens
    used += [tokens["access_token"], tokens["id_token"], tokens["refresh_token"]]
    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                      auth=(client_id, client_secret)).json()
    used += [refreshed["access_token"], refreshed["refresh_token"]]
    assert requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {refreshed['access_token']}"},
                        timeout=10).status_code == 200
    # replaying the code (refused, and logged as such) must not log it either
    assert token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, client_secret)).status_code == 400

    cc = token(live.issuer, {"grant_type": "client_credentials"}, auth=(cc_id, cc_secret)).json()
    used.append(cc["access_token"])
    for value in (cc["access_token"], refreshed["refresh_token"], tokens["refresh_token"]):
        resp = requests.post(f"{live.issuer}/introspect", data={"token": value}, auth=(cc_id, cc_secret), timeout=10)
        assert resp.status_code == 200
    # a client secret in the query string and a bogus bearer token: still not logged
    bogus = "bogus-" + secrets.token_urlsafe(16)
    requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {bogus}"}, timeout=10)
    requests.get(f"{live.issuer}/nowhere?client_secret={cc_secret}&access_token={bogus}", timeout=10)
    used.append(bogus)

    reset = Browser(live.issuer)
    page = reset.get(f"{live.issuer}/password/forgot")
    reset.submit(page, {"email": email})
    link = link_in(live.mailbox.wait_for(email, 1)[-1], live.issuer)
    new_password = "new-" + secrets.token_urlsafe(12)
    page = reset.get(link)
    assert reset.submit(page, {"password": new_password}).status_code == 200
    used += [link.rsplit("/", 1)[1], new_password]

    initial = live.idp("clients", "registration-token").stdout.strip()
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": ["https://rp.example/cb"]},
                         headers={"Authorization": f"Bearer {initial}"}, timeout=10)
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    manage = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    assert requests.get(reg["registration_client_uri"], headers=manage, timeout=10).status_code == 200
    used += [initial, reg["client_secret"], reg["registration_access_token"]]
    assert all(len(v) >= 8 for v in used)
    return used


def test_no_secret_of_real_flows_reaches_the_log(logged):
    used = run_flows(logged)
    time.sleep(1)  # mail and audit lines are written on other threads
    log = logged.log.read_text()
    assert "POST /token 200" in log and "Validate token request" in log  # DEBUG lines of real requests
    leaked = [value for value in used if value in log]
    assert not leaked, f"{len(leaked)} secret value(s) in the log, e.g. {leaked[0][:6]}..."


def test_json_lines_and_request_ids(logged):
    cc_id, cc_secret = logged.create_client(grant_types=["client_credentials"], redirect_uris=[])
    assert token(logged.issuer, {"grant_type": "client_credentials"}, auth=(cc_id, cc_secret)).status_code == 200
    email = f"ids-{secrets.token_hex(4)}@example.com"
    user_id = logged.create_user(email, "ids-password-1")
    browser = Browser(logged.issuer)
    assert browser.sign_in(browser.get(f"{logged.issuer}/signin"), email, "ids-password-1").status_code < 400
    resp = requests.get(f"{logged.issuer}/.well-known/openid-configuration",
                        headers={"X-Request-ID": "proxy-id-42"}, timeout=10)
    trusted = logged.env.get("IDP_TRUSTED_PROXIES") == "1"
    assert (resp.headers["X-Request-ID"] == "proxy-id-42") is trusted
    for bad in ("x" * 129, "two words", "tab\tinside", "semi;colon"):
        got = requests.get(f"{logged.issuer}/healthz", headers={"X-Request-ID": bad}, timeout=10).headers
        assert got["X-Request-ID"] != bad and len(got["X-Request-ID"]) == 24
    time.sleep(0.5)
    if logged.env["IDP_LOG_FORMAT"] != "json":
        assert f"request_id={resp.headers['X-Request-ID']}" in logged.log.read_text()
        return
    lines = [line for line in logged.log.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        entry = json.loads(line)  # every line, Granian's included
        assert isinstance(entry, dict) and {"time", "level", "event"} <= entry.keys(), line
        entries.append(entry)
    requests_logged = [e for e in entries if e.get("logger") == "idp.request"]
    assert requests_logged and all(e.get("request_id") for e in requests_logged)
    mine = [e for e in requests_logged if e.get("request_id") == "proxy-id-42"]
    assert mine and mine[0]["path"] == "/.well-known/openid-configuration" and mine[0]["status"] == 200
    assert any(e.get("path") == "/token" and e.get("client_id") == cc_id for e in requests_logged)
    assert any(e.get("user_id") == user_id for e in entries), "lines written for a signed-in person name the account"


@pytest.mark.parametrize("line, secret", [
    ("GET /cb?code=abc123secret&state=xyz", "abc123secret"),
    ("form {'password': 'hunter2hunter2', 'email': 'a@b'}", "hunter2hunter2"),
    ('{"refresh_token": "rt-0123456789", "expires_in": 900}', "rt-0123456789"),
    ("Authorization: Basic Y2xpZW50OnNlY3JldA==", "Y2xpZW50OnNlY3JldA=="),
    ("headers={'Authorization': 'Bearer opaque-token-value'}", "opaque-token-value"),
    ("Cookie: idp_session=s3ss10nvalue; other=1", "s3ss10nvalue"),
    ("sent eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl to the client", "eyJzdWIiOiIxIn0"),
    ("client_secret=cs-very-secret&grant_type=client_credentials", "cs-very-secret"),
])
def test_redact_masks_what_looks_like_a_secret(line, secret):
    from idp.observability.logs import redact

    masked = redact(line)
    assert secret not in masked and "[redacted]" in masked
    assert redact("POST /token 200 1.7 ms") == "POST /token 200 1.7 ms"


def test_json_lines_escape_what_a_terminal_would_act_on():
    """The JSON formatter kept C1 controls and bidirectional controls raw (json.dumps escapes
    only C0 with ensure_ascii=False): a name with U+202E reordered the log line on a terminal.
    They are \\uXXXX escapes now, the same string to a JSON reader; other text stays as it is."""
    import logging

    from idp.observability.logs import JsonFormatter

    message = "sign-up Eve\u202egnp.exe \x9b2J \u2066x\u2069 \u2028 Zoë 東京"
    record = logging.LogRecord("idp.test", logging.INFO, __file__, 1, message, None, None)
    line = JsonFormatter().format(record)
    assert not any(ch in line for ch in "\u202e\x9b\u2066\u2069\u2028"), line
    assert "Zoë 東京" in line and "\\u202e" in line
    assert json.loads(line)["event"] == message
