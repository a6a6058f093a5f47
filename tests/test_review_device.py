"""Review of the device authorization grant (RFC 8628) and token exchange (RFC 8693):
each test names a problem found, through the real server."""

from __future__ import annotations

import time


from tests.oidc import verify
from tests.test_token_exchange import _exchange, _world

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "review-device-password"


def test_an_exchanged_token_never_outlives_its_subject_token(live, browser):
    """Medium, RFC 8693 §2.1 / OWASP ASVS 3.5: an exchanged token outlived the subject token
    (a fresh full lifetime), so re-exchanging kept a person's access alive without end."""
    client_id, secret, backend_id, _, tokens = _world(live, browser, "exchange-lifetime@example.com")
    claims = verify(live.issuer, tokens["access_token"])[1]
    now = int(time.time())
    with live.db():
        ring = live.app.extensions["idp.keyring"]
        short = ring.signing_key().sign({**claims, "iat": now, "exp": now + 30, "jti": "short-lived-jti"},
                                        typ="at+jwt")
    resp = _exchange(live, client_id, secret, short, audience=backend_id)
    assert resp.status_code == 200, resp.text
    got = verify(live.issuer, resp.json()["access_token"])[1]
    assert got["exp"] <= now + 30 and resp.json()["expires_in"] <= 30, (got["exp"] - now, resp.json())
    # and re-exchanging the exchanged token does not extend it either
    again = _exchange(live, client_id, secret, resp.json()["access_token"], audience=backend_id)
    assert again.status_code == 200, again.text
    assert verify(live.issuer, again.json()["access_token"])[1]["exp"] <= now + 30
