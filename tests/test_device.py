"""Device authorization grant (RFC 8628): device, person at /device, polling."""

from __future__ import annotations

import requests

from tests.oidc import token, verify

GRANT = "urn:ietf:params:oauth:grant-type:device_code"

def _start(live, client_id, secret=None, scope="openid email"):
    data = {"scope": scope}
    auth = (client_id, secret) if secret else None
    if not secret:
        data["client_id"] = client_id
    resp = requests.post(live.meta["device_authorization_endpoint"], data=data, auth=auth, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _poll(live, client_id, device_code):
    return token(live.issuer, {"grant_type": GRANT, "device_code": device_code, "client_id": client_id})


def test_device_flow(live, browser):
    live.create_user("tv@example.com", "device-password")
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[GRANT, "refresh_token"],
                                      redirect_uris=[])
    started = _start(live, client_id)
    assert started["verification_uri"] == f"{live.issuer}/device" and started["interval"] == 5
    assert _poll(live, client_id, started["device_code"]).json()["error"] == "authorization_pending"
    assert _poll(live, client_id, started["device_code"]).json()["error"] == "slow_down"
    # the person signs in at /device and comes back to the code form
    page = browser.get(started["verification_uri_complete"])
    page = browser.sign_in(page, "tv@example.com", "device-password")
    assert 'name="user_code"' in page.text and started["user_code"] in page.text
    page = browser.submit(page, {"user_code": started["user_code"].lower()})
    assert ">Allow<" in page.text
    page = browser.submit(page, {"user_code": started["user_code"], "decision": "allow"})
    assert page.status_code == 200
    resp = _poll(live, client_id, started["device_code"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    _, claims = verify(live.issuer, body["id_token"])
    assert claims["email"] == "tv@example.com" and body["refresh_token"]
    # single use
    assert _poll(live, client_id, started["device_code"]).json()["error"] == "invalid_grant"


def test_device_flow_denied_expired_and_refused(live, browser):
    from idp.oauth.device import normalize_user_code
    from idp.store import DeviceAuthorization, db, digest, utcnow

    live.create_user("tv2@example.com", "device-password")
    client_id, secret = live.create_client(grant_types=[GRANT], redirect_uris=[])
    started = _start(live, client_id, secret)
    page = browser.get(f"{live.issuer}/device")
    page = browser.sign_in(page, "tv2@example.com", "device-password")
    page = browser.submit(page, {"user_code": "BCDF-GHJK"})
    assert page.status_code == 400 and "not valid" in page.text
    page = browser.get(f"{live.issuer}/device")
    page = browser.submit(page, {"user_code": started["user_code"]})
    browser.submit(page, {"user_code": started["user_code"], "decision": "deny"})
    resp = token(live.issuer, {"grant_type": GRANT, "device_code": started["device_code"]}, auth=(client_id, secret))
    assert resp.json()["error"] == "access_denied"

    started = _start(live, client_id, secret)
    with live.db():
        row = db.session.get(DeviceAuthorization, digest(started["device_code"]))
        assert row.user_code_hash == digest(normalize_user_code(started["user_code"]))
        row.expires_at = utcnow()
        db.session.commit()
    resp = token(live.issuer, {"grant_type": GRANT, "device_code": started["device_code"]}, auth=(client_id, secret))
    assert resp.json()["error"] == "expired_token"
    resp = token(live.issuer, {"grant_type": GRANT, "device_code": "made-up"}, auth=(client_id, secret))
    assert resp.json()["error"] == "invalid_grant"
    # a client not registered for the device flow
    other_id, other_secret = live.create_client()
    resp = requests.post(live.meta["device_authorization_endpoint"], auth=(other_id, other_secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"
