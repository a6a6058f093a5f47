"""Review of the device authorization grant (RFC 8628) and token exchange (RFC 8693):
each test names a problem found, through the real server."""

from __future__ import annotations

import time

import requests

from tests.oidc import token, verify
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


def test_a_device_code_is_decided_once_and_polled_only_by_its_client(live, browser):
    """Regression (passes): RFC 8628 §3.4/§3.5: a user code takes one answer (approve twice,
    deny after approve: refused), another client's poll is refused, one token set per code."""
    live.create_user("device-once@example.com", PASSWORD)
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE], redirect_uris=[],
                                      client_name="<b>Telly</b>")
    started = requests.post(live.meta["device_authorization_endpoint"], data={"client_id": client_id},
                            timeout=10).json()
    page = browser.sign_in(browser.get(f"{live.issuer}/device"), "device-once@example.com", PASSWORD)
    confirm = browser.submit(page, {"user_code": started["user_code"].lower().replace("-", " ")})
    assert confirm.status_code == 200 and "&lt;b&gt;Telly&lt;/b&gt;" in confirm.text and "<b>Telly" not in confirm.text
    # no CSRF token: refused, nothing decided
    resp = browser.http.post(f"{live.issuer}/device", data={"user_code": started["user_code"], "decision": "allow"},
                             timeout=10)
    assert resp.status_code == 400
    assert browser.submit(confirm, {"user_code": started["user_code"], "decision": "allow"}).status_code == 200
    assert browser.submit(confirm, {"user_code": started["user_code"], "decision": "allow"}).status_code == 400
    assert browser.submit(confirm, {"user_code": started["user_code"], "decision": "deny"}).status_code == 400
    poll = {"grant_type": DEVICE, "device_code": started["device_code"]}
    other_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE], redirect_uris=[])
    assert token(live.issuer, {**poll, "client_id": other_id}).json()["error"] == "unauthorized_client"
    first = token(live.issuer, {**poll, "client_id": client_id})
    assert first.status_code == 200 and first.json()["access_token"], first.text
    assert token(live.issuer, {**poll, "client_id": client_id}).json()["error"] == "invalid_grant"


def test_a_second_answer_racing_the_first_never_reconnects_the_device(live, browser):
    """Low, RFC 8628 §3.3: two answers to one user code at the same moment (two tabs, or
    two people who know the code) each passed the page's "still pending" look before either
    was written, and the later one reconnected the device to its own account. The answer is
    now written only while the request is pending: the second is refused, nothing changes."""
    from types import SimpleNamespace

    from sqlalchemy import func, select

    from idp.oauth.device import decide
    from idp.store import DeviceAuthorization, Grant, User, db, digest

    live.create_user("device-race-a@example.com", PASSWORD)
    live.create_user("device-race-b@example.com", PASSWORD)
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE], redirect_uris=[])
    started = requests.post(live.meta["device_authorization_endpoint"], data={"client_id": client_id},
                            timeout=10).json()
    with live.db():  # the second request's copy, read while the code was still pending
        stale = db.session.get(DeviceAuthorization, digest(started["device_code"]))
        db.session.expunge(stale)
    page = browser.sign_in(browser.get(f"{live.issuer}/device"), "device-race-a@example.com", PASSWORD)
    confirm = browser.submit(page, {"user_code": started["user_code"]})
    assert browser.submit(confirm, {"user_code": started["user_code"], "decision": "allow"}).status_code == 200
    with live.db():
        a = db.session.execute(select(User.id).where(User.email == "device-race-a@example.com")).scalar_one()
        b = db.session.execute(select(User.id).where(User.email == "device-race-b@example.com")).scalar_one()
        grants_before = db.session.execute(select(func.count()).select_from(Grant)).scalar_one()
        b_session = SimpleNamespace(id=None, auth_time=int(time.time()), amr=["pwd"], acr=None)
        db.session.add(stale)  # as the racing request holds it: still "pending"
        answered = decide(stale, db.session.get(User, b), b_session, approve=True)
        row = db.session.get(DeviceAuthorization, digest(started["device_code"]), populate_existing=True)
        assert (row.status, row.user_id) == ("approved", a)  # still the first person's device
        assert db.session.execute(select(func.count()).select_from(Grant)).scalar_one() == grants_before
        assert answered is False
