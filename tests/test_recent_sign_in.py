"""Security settings need a recent sign-in with the second factor; step-up rotates the
session's secret (security review, finding 7)."""

from __future__ import annotations

import re


import requests

from tests.conftest import Browser
from tests.oidc import authorize_url, redirect_params
from tests.test_second_factor import _code_at, _enrol


def _age_sessions(live, email, seconds=3600):
    from idp.store import BrowserSession, User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        for row in db.session.query(BrowserSession).filter_by(user_id=user.id):
            row.auth_time -= seconds
            if row.mfa_time:
                row.mfa_time -= seconds
        db.session.commit()


def _has_totp(live, email) -> bool:
    from idp.store import TotpFactor, User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        return db.session.get(TotpFactor, user.id) is not None


def test_an_old_session_must_sign_in_again_with_its_factor_to_change_factors(live):
    email = "recent@example.com"
    b, secret, codes = _enrol(live, email)  # a fresh sign-in may enrol
    page = b.get(f"{live.issuer}/account")
    # trust this device on a new sign-in, then let the session grow old
    b.submit(page, {}, action=f"{live.issuer}/signout")
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "second-factor-pw")
    page = b.submit(page, {"code": _code_at(secret, 1), "trust": "on"})
    assert "Your account" in page.text
    _age_sessions(live, email)

    for action in ("/account/totp/remove", "/account/recovery-codes"):
        resp = b.http.post(f"{live.issuer}{action}", data={"csrf_token": re.search(
            r'name="csrf_token" value="([^"]+)"', page.text).group(1)}, allow_redirects=False, timeout=10)
        assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin"), action
    assert _has_totp(live, email)
    meta = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    resp = b.http.post(f"{live.issuer}/account/passkeys/options", json={}, headers={"X-CSRFToken": meta},
                       timeout=10)
    assert resp.status_code == 401 and resp.json()["redirect"].endswith("/account/confirm-identity")

    # confirming: email prefilled, password, and the factor although this device is trusted
    page = b.get(f"{live.issuer}/signin")
    assert "Confirm it is you" in page.text and f'value="{email}"' in page.text
    page = b.sign_in(page, email, "second-factor-pw")
    assert "Verification code" in page.text
    page = b.submit(page, {"code": codes[0]})
    assert page.url.startswith(f"{live.issuer}/account")
    b.submit(page, {}, action=f"{live.issuer}/account/totp/remove")
    assert not _has_totp(live, email)


def test_step_up_replaces_the_session_secret(live):
    _, secret, codes = _enrol(live, "rotate@example.com")
    client_id, _ = live.create_client()
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "rotate@example.com", "second-factor-pw")
    b.submit(page, {"code": codes[0], "trust": "on"})
    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/signout")
    b.sign_in(b.get(f"{live.issuer}/account"), "rotate@example.com", "second-factor-pw")  # trusted: no factor
    before = b.http.cookies.get("idp_session")
    page = b.get(authorize_url(live.issuer, client_id, acr_values="urn:myaccount:loa:2"))
    assert "Confirm your identity" in page.text
    assert "code" in redirect_params(b.submit(page, {"code": codes[1]}))
    after = b.http.cookies.get("idp_session")
    assert before and after and before != after
    copied = requests.Session()
    copied.cookies.set("idp_session", before)
    resp = copied.get(f"{live.issuer}/account", allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and "/signin" in resp.headers["Location"]
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/account")


def test_sign_out_everywhere_can_also_remove_passkeys(live):
    """After a compromise, signing out everywhere is not enough if the intruder added a
    passkey: the account page offers removing them in the same step."""
    from idp.store import Passkey, User, db
    from tests.test_passkeys import _with_passkey

    b, _ = _with_passkey(live, "evict@example.com")
    page = b.get(f"{live.issuer}/account")
    assert "Also remove every passkey" in page.text
    done = b.submit(page, {"remove_passkeys": "on"}, action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    with live.db():
        user = db.session.query(User).filter_by(email="evict@example.com").one()
        assert db.session.query(Passkey).filter_by(user_id=user.id).count() == 0
    assert b.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
