"""The account page: sections, open sessions (revocable), recent activity, throttled password attempts."""

from __future__ import annotations

import re

from tests.conftest import Browser
from tests.oidc import authorize_url, redirect_params


def _sign_in(live, email, password):
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, password)
    assert page.status_code == 200, page.text[:300]
    return b, page


def test_account_page_sections_sessions_and_activity(live):
    live.create_user("acct@example.com", "account-password")
    client_id, _ = live.create_client()
    # a failed attempt first, for the activity list
    b0 = Browser(live.issuer)
    page = b0.submit(b0.get(f"{live.issuer}/signin"), {"email": "acct@example.com"})
    assert b0.submit(page, {"password": "wrong-password"}).status_code == 401
    phone, _ = _sign_in(live, "acct@example.com", "account-password")
    laptop, page = _sign_in(live, "acct@example.com", "account-password")
    for section in ("Security", "Sessions", "Trusted devices", "Connected accounts", "Recent activity"):
        assert f"<h2>{section}</h2>" in page.text, section
    assert "Signed in" in page.text and "Failed sign-in attempt" in page.text
    revokes = re.findall(r"/account/sessions/([0-9a-f]{32})/revoke", page.text)
    assert len(revokes) >= 2
    # revoke the other session (the one not marked "this browser")
    this = re.search(r"this browser.*?/account/sessions/([0-9a-f]{32})/revoke", page.text, re.S).group(1)
    other = next(s for s in revokes if s != this)
    laptop.submit(page, {}, action=f"{live.issuer}/account/sessions/{other}/revoke")
    assert redirect_params(phone.get(authorize_url(live.issuer, client_id, prompt="none")))["error"] == "login_required"
    assert "code" in redirect_params(laptop.get(authorize_url(live.issuer, client_id, prompt="none")))
    assert "Session revoked" in laptop.get(f"{live.issuer}/account").text


def test_account_needs_sign_in_and_comes_back(live):
    live.create_user("comeback@example.com", "account-password")
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/account")
    assert 'name="email"' in page.text
    page = b.sign_in(page, "comeback@example.com", "account-password")
    assert "Your account" in page.text


def test_password_attempts_are_throttled_per_account(live):
    live.create_user("throttled@example.com", "the-right-password")
    b = Browser(live.issuer)
    page = b.submit(b.get(f"{live.issuer}/signin"), {"email": "throttled@example.com"})
    statuses = [b.submit(page, {"password": f"wrong-{i}"}).status_code for i in range(6)]
    assert statuses[:5] == [401] * 5 and statuses[5] == 401  # the 6th failure is counted, then the block starts
    blocked = b.submit(page, {"password": "the-right-password"})
    assert blocked.status_code == 429 and "Too many attempts" in blocked.text and blocked.headers["Retry-After"]
    # another account from the same address is not blocked
    live.create_user("neighbour@example.com", "neighbour-password")
    other = Browser(live.issuer)
    page = other.submit(other.get(f"{live.issuer}/signin"), {"email": "neighbour@example.com"})
    assert other.submit(page, {"password": "neighbour-password"}).status_code == 200


def test_a_right_password_forgets_the_accounts_failures(live):
    """The sign-in counts each attempt on the account before the password is checked and
    forgets them at the right one: after the right password none are left."""
    from idp.ratelimit import throttle_key
    from idp.store import RateLimit, db

    live.create_user("forgetful@example.com", "the-right-password")
    b = Browser(live.issuer)
    page = b.submit(b.get(f"{live.issuer}/signin"), {"email": "forgetful@example.com"})
    assert [b.submit(page, {"password": f"wrong-{i}"}).status_code for i in range(4)] == [401] * 4
    key = throttle_key("password:account", "forgetful@example.com")
    with live.db():
        assert db.session.get(RateLimit, key).failures == 4
    assert "Your account" in b.submit(page, {"password": "the-right-password"}).text
    with live.db():
        assert db.session.get(RateLimit, key) is None


def test_housekeeping_deletes_only_what_expired(live):
    from datetime import timedelta

    from idp.housekeeping import purge_expired
    from idp.store import PendingAuthorization, RevokedToken, db, utcnow

    with live.db():
        old = PendingAuthorization(client_id="x", params={}, expires_at=utcnow() - timedelta(seconds=1))
        fresh = PendingAuthorization(client_id="x", params={}, expires_at=utcnow() + timedelta(minutes=5))
        db.session.add_all([old, fresh, RevokedToken(jti="hk-old", expires_at=utcnow() - timedelta(seconds=1)),
                            RevokedToken(jti="hk-new", expires_at=utcnow() + timedelta(minutes=5))])
        db.session.commit()
        old_id, fresh_id = old.id, fresh.id
        assert purge_expired() >= 2
        assert db.session.get(PendingAuthorization, old_id) is None
        assert db.session.get(PendingAuthorization, fresh_id) is not None
        assert db.session.get(RevokedToken, "hk-old") is None and db.session.get(RevokedToken, "hk-new") is not None


def test_change_password_while_signed_in(live):
    """The change-password form: the current password is checked (and throttled like a
    sign-in), the new one follows the policy, older reset links die, other sessions may end."""
    live.create_user("changer@example.com", "first-password-1")
    other, _ = _sign_in(live, "changer@example.com", "first-password-1")
    b, account = _sign_in(live, "changer@example.com", "first-password-1")
    assert "Change password" in account.text
    page = b.get(f"{live.issuer}/account/password")
    for field in ("Current password", "New password", "Sign out of all sessions"):
        assert field in page.text
    wrong = b.submit(page, {"current_password": "not-it-at-all", "password": "second-password-2"})
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    weak = b.submit(page, {"current_password": "first-password-1", "password": "12345678"})
    assert weak.status_code == 400
    done = b.submit(page, {"current_password": "first-password-1", "password": "second-password-2",
                           "sign_out_everywhere": "on"})
    assert done.status_code == 200
    assert other.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
    for password, ok in (("first-password-1", False), ("second-password-2", True)):
        fresh = Browser(live.issuer)
        resp = fresh.sign_in(fresh.get(f"{live.issuer}/account"), "changer@example.com", password)
        assert (resp.status_code == 200 and resp.url.startswith(f"{live.issuer}/account")) is ok, password
    assert "Password changed" in fresh.get(f"{live.issuer}/account").text
