"""Pre-account takeover (security review, finding 2): an unverified account can do nothing
but verify, and whoever adopts it keeps only what they proved."""

from __future__ import annotations

import re

import pyotp

from tests.conftest import Browser
from tests.oidc import authorize_url
from tests.smtp import link_in


def _sign_up(b: Browser, live, email, password):
    page = b.get(f"{live.issuer}/signup")
    return b.submit(page, {"email": email, "name": "Someone", "password": password})


def _plant(live, email):
    """What an attacker could plant while the row was theirs (before these fixes): a linked
    identity, an authenticator app, a trusted device, a session."""
    from datetime import timedelta

    from idp.store import BrowserSession, LinkedIdentity, SocialProvider, TotpFactor, TrustedDevice, User, db, utcnow

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        if db.session.get(SocialProvider, "planted") is None:
            db.session.add(SocialProvider(name="planted", issuer="https://planted.example", client_id="x",
                                          sealed_client_secret=b"x"))
            db.session.commit()
        db.session.add(LinkedIdentity(user_id=user.id, provider="planted", subject=f"attacker-{user.id}"))
        db.session.add(TotpFactor(user_id=user.id, sealed_secret=b"x", confirmed_at=utcnow()))
        db.session.add(TrustedDevice(secret_hash=f"{user.id:0<64}"[:64], user_id=user.id,
                                     expires_at=utcnow() + timedelta(days=30)))
        db.session.add(BrowserSession(secret_hash=f"s{user.id:0<63}"[:64], user_id=user.id, auth_time=0,
                                      expires_at=utcnow() + timedelta(days=30)))
        db.session.commit()
        return user.id


def _what_is_left(live, user_id):
    from idp.store import BrowserSession, LinkedIdentity, TotpFactor, TrustedDevice, User, db

    with live.db():
        user = db.session.get(User, user_id)
        return {
            "verified": user.email_verified,
            "password": user.password_hash is not None,
            "links": db.session.query(LinkedIdentity).filter_by(user_id=user_id).count(),
            "totp": db.session.query(TotpFactor).filter_by(user_id=user_id).count(),
            "devices": db.session.query(TrustedDevice).filter_by(user_id=user_id, revoked_at=None).count(),
            "sessions": db.session.query(BrowserSession).filter_by(user_id=user_id, ended_at=None).count(),
        }


def test_unverified_account_gets_no_session_nor_anything_a_session_allows(live):
    attacker = Browser(live.issuer)
    _sign_up(attacker, live, "unverified-1@example.com", "attacker-password-9")
    live.mailbox.wait_for("unverified-1@example.com")
    page = attacker.sign_in(attacker.get(f"{live.issuer}/account"), "unverified-1@example.com",
                            "attacker-password-9")
    assert page.status_code == 403 and "Confirm your email address" in page.text
    assert "idp_session" not in attacker.http.cookies
    # linking, factors, passkeys and device approvals all need a session: none is given
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    for path in ("/account/connected/google/link", "/account/totp", "/account/passkeys/options", "/device"):
        resp = attacker.http.post(f"{live.issuer}{path}", data={"csrf_token": csrf, "user_code": "BCDFGHJK"},
                                  headers={"X-CSRFToken": csrf}, allow_redirects=False, timeout=10)
        assert resp.status_code in (302, 401, 405) and "/account" not in resp.headers.get("Location", "/signin"), path


def test_first_verification_in_another_browser_needs_the_password_and_a_reset_adopts(live):
    attacker = Browser(live.issuer)
    _sign_up(attacker, live, "victim-adopt@example.com", "attacker-password-9")
    link = link_in(live.mailbox.wait_for("victim-adopt@example.com")[-1], live.issuer)
    user_id = _plant(live, "victim-adopt@example.com")

    owner = Browser(live.issuer)  # the mailbox's owner, who never signed up
    page = owner.get(link)
    assert page.status_code == 200 and 'name="password"' in page.text and "Reset password" in page.text
    wrong = owner.submit(page, {"password": "my-own-guess-123"})
    assert wrong.status_code == 401
    assert _what_is_left(live, user_id)["verified"] is False

    page = owner.submit(owner.get(f"{live.issuer}/password/forgot"), {"email": "victim-adopt@example.com"})
    reset = link_in(live.mailbox.wait_for("victim-adopt@example.com", 2)[-1], live.issuer)
    page = owner.get(reset)
    done = owner.submit(page, {"password": "owner-chose-this-7"})
    assert done.status_code == 200
    assert _what_is_left(live, user_id) == {"verified": True, "password": True, "links": 0, "totp": 0,
                                            "devices": 0, "sessions": 0}
    client_id, _ = live.create_client()
    for password, ok in (("attacker-password-9", False), ("owner-chose-this-7", True)):
        b = Browser(live.issuer)
        resp = b.sign_in(b.get(authorize_url(live.issuer, client_id)), "victim-adopt@example.com", password)
        assert (resp.status_code == 302) is ok, password


def test_verification_with_the_password_keeps_it_and_wipes_the_rest(live):
    b = Browser(live.issuer)
    _sign_up(b, live, "two-devices@example.com", "phone-password-42")
    link = link_in(live.mailbox.wait_for("two-devices@example.com")[-1], live.issuer)
    user_id = _plant(live, "two-devices@example.com")
    laptop = Browser(live.issuer)
    page = laptop.get(link)
    done = laptop.submit(page, {"password": "phone-password-42"})
    assert done.status_code == 200 and "Email address confirmed" in done.text
    assert _what_is_left(live, user_id) == {"verified": True, "password": True, "links": 0, "totp": 0,
                                            "devices": 0, "sessions": 0}
    assert laptop.get(link).status_code == 400  # single use


def test_no_sign_up_in_a_domain_whose_org_has_an_identity_provider(live):
    import secrets

    from idp.store import User, db

    name = "ssoorg-" + secrets.token_hex(3)
    assert live.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    assert live.idp("orgs", "oidc", name, "--issuer", "https://login.sso.example", "--client-id=c",
                    "--client-secret=s").returncode == 0
    b = Browser(live.issuer)
    resp = _sign_up(b, live, f"someone@{name}.example", "some-password-77")
    assert resp.status_code == 403 and "Enterprise Sign-In" in resp.text and "Continue" in resp.text
    with live.db():
        assert db.session.query(User).filter_by(email=f"someone@{name}.example").count() == 0
    assert live.mailbox.to(f"someone@{name}.example") == []


def test_device_approval_needs_a_verified_account(live):
    """The device grant checks what /authorize checks: a row that became unverified (or was
    from before the rule) cannot approve, and an approval it made yields no tokens."""
    import requests

    from idp.store import User, db

    client_id, secret = live.create_client(grant_types=["urn:ietf:params:oauth:grant-type:device_code"],
                                           redirect_uris=[])
    live.create_user("device-unverified@example.com", "device-password-1")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/device"), "device-unverified@example.com", "device-password-1")
    start = requests.post(f"{live.issuer}/device_authorization", auth=(client_id, secret), timeout=10).json()
    page = b.submit(page, {"user_code": start["user_code"]})
    assert "Allow" in page.text
    with live.db():
        db.session.query(User).filter_by(email="device-unverified@example.com").one().email_verified = False
        db.session.commit()
    resp = b.submit(page, {"user_code": start["user_code"], "decision": "allow"})
    assert resp.status_code in (302, 400) or "signin" in resp.url
    poll = requests.post(f"{live.issuer}/token", auth=(client_id, secret), timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": start["device_code"]})
    assert poll.status_code == 400 and "access_token" not in poll.json()


def test_totp_enrolment_page_does_not_replace_the_secret_on_reload(live):
    live.create_user("totp-reload@example.com", "totp-reload-pw")
    b = Browser(live.issuer)
    b.sign_in(b.get(f"{live.issuer}/account"), "totp-reload@example.com", "totp-reload-pw")
    first = re.search(r'data-totp-secret="([A-Z2-7]+)"', b.get(f"{live.issuer}/account/totp").text).group(1)
    page = b.get(f"{live.issuer}/account/totp")
    assert re.search(r'data-totp-secret="([A-Z2-7]+)"', page.text).group(1) == first
    assert b.submit(page, {"code": pyotp.TOTP(first).now()}).status_code == 200
