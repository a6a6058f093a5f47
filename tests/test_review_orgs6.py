"""Security review of orgs, domains and enterprise discovery, round 6 (review-orgs6): each test
drives the real server (SQLite and PostgreSQL) and showed a problem on the code before its fix."""

from __future__ import annotations

import uuid


from tests.admin_world import get, new_org, person, signed_in
from tests.conftest import Browser
from tests.test_passkeys import _passkey_sign_in, _post_json
from tests.webauthn_authenticator import SoftwareAuthenticator


def _set(live, org_id: str, **options) -> None:
    from idp.store import Org, db

    with live.db():
        row = db.session.get(Org, org_id)
        for key, value in options.items():
            setattr(row, key, value)
        db.session.commit()


def test_a_passkey_session_stops_counting_once_the_org_forbids_passkeys(live):
    """Medium (ASVS 3.3, as for social sign-in in review-social5): "Passkeys" off in the org's
    Sign-in options refused the next passkey sign-in, but a session opened with a passkey a
    minute before went on for its whole lifetime. It now stops counting; a session opened
    with the password goes on."""
    org_id, _, domain = new_org(live, "ro6-pk")
    email = f"m-{uuid.uuid4().hex[:8]}@{domain}"
    person(live, email, org_id)
    by_password = signed_in(live, email)
    account = by_password.get(f"{live.issuer}/account")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(by_password, account, "/account/passkeys/options").json()
    assert _post_json(by_password, account, "/account/passkeys",
                      {"credential": device.create(options)}).status_code == 201
    by_passkey = Browser(live.issuer)
    resp, _ = _passkey_sign_in(live, by_passkey, device)
    assert resp.status_code == 200, resp.text
    assert get(by_passkey, "/account").status_code == 200

    _set(live, org_id, allow_passkeys=False)
    resp = get(by_passkey, "/account")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
    assert get(by_password, "/account").status_code == 200

