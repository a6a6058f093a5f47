"""Review (round 7) of the token endpoint and the token lifecycle, through the real server."""

from __future__ import annotations

import requests

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_repeated_parameter_with_an_unnameable_name_is_refused_not_a_500(live):
    """Low, OWASP ASVS 7.4.1 (no 500 on crafted input) and RFC 6749 §5.2: the token,
    revocation, introspection and device authorization endpoints refuse a parameter given
    twice with an invalid_request naming it; a name holding a character no error description
    may hold ('"', '\\', anything outside ASCII's printable range) made Authlib refuse to
    build that error (a ValueError): a 500 and a traceback in the log, for anyone, before any
    client authentication. The name is now given percent-encoded, as other refusals name
    what a request sent (authorization.named)."""
    tracebacks = live.log.read_text().count("Traceback")
    for path in ("/token", "/revoke", "/introspect", "/device_authorization"):
        for body in ('x%22=1&x%22=2', 'caf%C3%A9=1&caf%C3%A9=2', 'a%5C=1&a%5C=2', 'a%7F=1&a%7F=2'):
            resp = requests.post(f"{live.issuer}{path}", data=body, headers=FORM, timeout=10)
            assert resp.status_code == 400, (path, body, resp.status_code, resp.text)
            assert resp.json()["error"] == "invalid_request", (path, body, resp.text)
            assert resp.headers["Cache-Control"] == "no-store"
        resp = requests.post(f"{live.issuer}{path}", data="scope=a&scope=b", headers=FORM, timeout=10)
        assert resp.status_code == 400 and resp.json()["error_description"] == "scope repeated", resp.text
    resp = requests.post(f"{live.issuer}/token", data='x%22=1&x%22=2', headers=FORM, timeout=10)
    assert resp.json()["error_description"] == "x%22 repeated", resp.text
    assert live.log.read_text().count("Traceback") == tracebacks
