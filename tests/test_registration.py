"""Dynamic client registration (RFC 7591) and client configuration (RFC 7592), IDP_REGISTRATION=token."""

from __future__ import annotations

import requests

from tests.oidc import token


def _initial_token(live) -> str:
    out = live.idp("clients", "registration-token")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_registration_needs_an_initial_access_token(live):
    meta = {"redirect_uris": ["https://rp.example/cb"], "client_name": "RP"}
    resp = requests.post(f"{live.issuer}/register", json=meta, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_token"
    resp = requests.post(f"{live.issuer}/register", json=meta, headers={"Authorization": "Bearer wrong"}, timeout=10)
    assert resp.status_code == 401


def test_register_read_update_delete(live):
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    meta = {"redirect_uris": ["https://rp.example/cb"], "client_name": "RP",
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"]}
    resp = requests.post(f"{live.issuer}/register", json=meta, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    assert reg["client_secret"] and reg["redirect_uris"] == meta["redirect_uris"]
    assert reg["registration_client_uri"] == f"{live.issuer}/register/{reg['client_id']}"
    assert resp.headers["Cache-Control"] == "no-store"
    # the new client works at the token endpoint
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(reg["client_id"], reg["client_secret"]))
    assert resp.status_code == 200
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    resp = requests.get(reg["registration_client_uri"], headers=mgmt, timeout=10)
    assert resp.status_code == 200 and "client_secret" not in resp.json()
    assert requests.get(reg["registration_client_uri"], headers=auth, timeout=10).status_code == 401
    update = {**meta, "client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb2"]}
    resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
    assert resp.status_code == 200 and resp.json()["redirect_uris"] == ["https://rp.example/cb2"]
    assert requests.delete(reg["registration_client_uri"], headers=mgmt, timeout=10).status_code == 204
    resp = token(live.issuer, {"grant_type": "client_credentials"}, auth=(reg["client_id"], reg["client_secret"]))
    assert resp.status_code == 401


def test_registration_refuses_bad_metadata(live):
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    for meta, error in (
        ({"client_name": "no redirect"}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://rp.example/cb#frag"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["http://rp.example/cb"]}, "invalid_redirect_uri"),  # http off loopback
        ({"redirect_uris": ["https://*.rp.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://rp.example/cb"], "post_logout_redirect_uris": ["http://rp.example/"]},
         "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "magic"},
         "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "grant_types": ["implicit"]}, "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "token_endpoint_auth_method": "none",
          "grant_types": ["client_credentials"]}, "invalid_client_metadata"),
        # RFC 9700 §2.1 / RFC 8252 §7.3: http only on loopback; no wildcards
        ({"redirect_uris": ["http://rp.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://*.rp.example/cb"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://rp.example/cb"], "post_logout_redirect_uris": ["http://rp.example/"]},
         "invalid_client_metadata"),
        # this server POSTs to the back-channel URI: never to the cloud metadata service or the intranet
        ({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "http://169.254.169.254/latest"},
         "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "https://10.0.0.1/logout"},
         "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "https://[fd00::1]/logout"},
         "invalid_client_metadata"),
        ({"redirect_uris": ["https://rp.example/cb"], "backchannel_logout_uri": "http://127.0.0.1:22/logout"},
         "invalid_client_metadata"),
    ):
        resp = requests.post(f"{live.issuer}/register", json=meta, headers=auth, timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == error, (meta, resp.text)
    resp = requests.post(f"{live.issuer}/register", data="not json", headers=auth, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"


def test_expired_initial_access_token(live):
    from idp.store import RegistrationToken, db, digest, utcnow

    value = _initial_token(live)
    with live.db():
        db.session.get(RegistrationToken, digest(value)).expires_at = utcnow()
        db.session.commit()
    resp = requests.post(f"{live.issuer}/register", json={"redirect_uris": ["https://rp.example/cb"]},
                         headers={"Authorization": f"Bearer {value}"}, timeout=10)
    assert resp.status_code == 401


def test_loopback_redirect_and_back_channel_uris_on_a_loopback_issuer(live):
    """A development deployment (loopback issuer) allows loopback: native apps and local products."""
    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    meta = {"redirect_uris": ["http://127.0.0.1:8080/cb", "http://[::1]:8080/cb", "http://localhost:8080/cb",
                              "com.example.app:/oauth2redirect"],
            "backchannel_logout_uri": "http://127.0.0.1:8089/backchannel-logout"}
    resp = requests.post(f"{live.issuer}/register", json=meta, headers=auth, timeout=10)
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    assert reg["redirect_uris"] == meta["redirect_uris"]
    assert reg["backchannel_logout_uri"] == meta["backchannel_logout_uri"]
    # RFC 7592 update: the same rules
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    update = {**meta, "client_id": reg["client_id"], "backchannel_logout_uri": "https://169.254.169.254/"}
    resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client_metadata"
    update = {**meta, "client_id": reg["client_id"], "redirect_uris": ["http://rp.example/cb"]}
    resp = requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_redirect_uri"
    resp = requests.get(reg["registration_client_uri"], headers=mgmt, timeout=10)
    assert resp.json()["backchannel_logout_uri"] == meta["backchannel_logout_uri"]


def test_registration_changes_are_in_the_audit_trail(live):
    """Who registered, changed or deleted a client through RFC 7591/7592 is in the audit
    trail (and the server's log) as the developer portal's changes are: no person, but the
    address it came from and the client."""
    from sqlalchemy import select

    from idp.store import SecurityEvent, db

    auth = {"Authorization": f"Bearer {_initial_token(live)}"}
    meta = {"redirect_uris": ["https://rp.example/cb"], "client_name": "Audited RP"}
    reg = requests.post(f"{live.issuer}/register", json=meta, headers=auth, timeout=10).json()
    mgmt = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    update = {**meta, "client_id": reg["client_id"], "redirect_uris": ["https://rp.example/cb2"]}
    assert requests.put(reg["registration_client_uri"], json=update, headers=mgmt, timeout=10).status_code == 200
    refused = {**update, "redirect_uris": ["javascript:alert(1)"]}
    assert requests.put(reg["registration_client_uri"], json=refused, headers=mgmt, timeout=10).status_code == 400
    assert requests.delete(reg["registration_client_uri"], headers=mgmt, timeout=10).status_code == 204

    with live.db():
        events = db.session.execute(select(SecurityEvent).order_by(SecurityEvent.id)).scalars().all()
        mine = [(e.kind, e.user_id, e.ip, e.detail) for e in events if e.detail.get("client_id") == reg["client_id"]]
    via = {"client_id": reg["client_id"], "via": "dynamic registration"}
    assert mine == [("app.created", None, "127.0.0.1", via), ("app.updated", None, "127.0.0.1", via),
                    ("app.deleted", None, "127.0.0.1", via)]  # the refused change is no event
