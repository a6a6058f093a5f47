"""What a password sign-in writes, now that its rows are table inserts rather than ORM
objects (issue 14 item 3): the session row, the audit event and the code's session id,
and a second sign-in of the same person in the same browser renewing that session (its id
kept, so the products holding it can still be told of a sign-out; its secret replaced)."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import Browser
from tests.oidc import authorize_url, redirect_params


def test_sign_in_writes_session_event_and_code_and_renews_the_session(live, browser):
    user_id = live.create_user("rows@example.com", "rows-password-1")
    client_id, _secret = live.create_client()
    browser.http.headers["User-Agent"] = "rows-test-agent/1.0"

    first = redirect_params(browser.sign_in(browser.get(authorize_url(live.issuer, client_id)),
                                            "rows@example.com", "rows-password-1"))
    # prompt=login: the same person signs in again in this browser; the cookie they had
    # must be worth nothing afterwards (no fixation), though the session goes on.
    old_cookie = browser.http.cookies.get("idp_session")
    page = browser.get(authorize_url(live.issuer, client_id, prompt="login"))
    assert 'name="email"' in page.text
    second = redirect_params(browser.sign_in(page, "rows@example.com", "rows-password-1"))
    # A wrong password writes a failure event and no session.
    page = browser.get(authorize_url(live.issuer, client_id, prompt="login"))
    page = browser.submit(page, {"email": "rows@example.com"})
    refused = browser.submit(page, {"password": "not-the-password"})
    assert refused.status_code == 401

    from idp.store import AuthorizationCode, BrowserSession, SecurityEvent, db, digest

    with live.db():
        sessions = db.session.execute(
            select(BrowserSession).where(BrowserSession.user_id == user_id).order_by(BrowserSession.created_at)
        ).scalars().all()
        assert len(sessions) == 1
        (row,) = sessions
        assert row.ended_at is None
        assert row.amr == ["pwd"] and row.acr and row.auth_time and row.mfa_time is None
        assert row.ip == "127.0.0.1" and row.user_agent == "rows-test-agent/1.0"
        assert row.expires_at > row.last_seen_at >= row.created_at
        assert row.secret_hash == digest(browser.http.cookies.get("idp_session")) != digest(old_cookie)
        # Each code names the session that signed in for it: the same one.
        codes = {digest(c): None for c in (first["code"], second["code"])}
        for code_hash in codes:
            codes[code_hash] = db.session.get(AuthorizationCode, code_hash).sid
        assert list(codes.values()) == [row.id, row.id]

    # The replaced secret signs nobody in.
    stale = Browser(live.issuer)
    stale.http.cookies.set("idp_session", old_cookie)
    assert redirect_params(stale.get(authorize_url(live.issuer, client_id, prompt="none")))["error"] \
        == "login_required"

    with live.db():
        events = db.session.execute(
            select(SecurityEvent).where(SecurityEvent.user_id == user_id).order_by(SecurityEvent.id)
        ).scalars().all()
        assert [(e.kind, e.detail.get("method")) for e in events] == [
            ("signin.success", "pwd"), ("signin.success", "pwd"), ("signin.failure", "pwd")]
        for event in events:
            assert event.ip == "127.0.0.1" and event.user_agent == "rows-test-agent/1.0"
            assert event.created_at is not None and event.org_id is None and event.actor_id is None


def test_session_read_sees_its_account_on_every_request_and_notes_last_seen(live, browser):
    """`sessions.current` reads the session and its account in one Core statement: a change
    to the account is seen on the very next request, and the row it hands back is one the
    request can still write (last_seen_at)."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.store import BrowserSession, User, db

    user_id = live.create_user("seen@example.com", "seen-password-1")
    client_id, _secret = live.create_client()
    redirect_params(browser.sign_in(browser.get(authorize_url(live.issuer, client_id)),
                                    "seen@example.com", "seen-password-1"))

    def session_row():
        return db.session.execute(select(BrowserSession).where(BrowserSession.user_id == user_id)).scalar_one()

    with live.db():
        stale = session_row().last_seen_at - timedelta(minutes=10)
        db.session.execute(update(BrowserSession).where(BrowserSession.user_id == user_id)
                           .values(last_seen_at=stale))
        db.session.commit()
    assert "code" in redirect_params(browser.get(authorize_url(live.issuer, client_id, prompt="none")))
    with live.db():
        assert session_row().last_seen_at > stale + timedelta(minutes=9)

    def set_account(**values):
        with live.db():
            db.session.execute(update(User).where(User.id == user_id).values(**values))
            db.session.commit()

    def prompt_none():
        return redirect_params(browser.get(authorize_url(live.issuer, client_id, prompt="none")))

    set_account(disabled=True)
    assert prompt_none()["error"] == "login_required"
    set_account(disabled=False, email_verified=False)
    assert prompt_none()["error"] == "login_required"
    set_account(email_verified=True)
    assert "code" in prompt_none()
    with live.db():  # an ended session is no session, whatever its account
        db.session.execute(update(BrowserSession).where(BrowserSession.user_id == user_id)
                           .values(ended_at=session_row().created_at))
        db.session.commit()
    assert prompt_none()["error"] == "login_required"


def test_password_step_rehashes_an_old_hash_on_the_account_it_read(live, browser):
    """The password step reads the account with a Core statement and hands the row to the
    ORM: a hash made with older argon2 parameters is replaced (and written) at sign-in, and
    a wrong password changes nothing."""
    from argon2 import PasswordHasher
    from sqlalchemy import update

    from idp.passwords import needs_rehash, verify_password
    from idp.store import User, db

    user_id = live.create_user("rehash@example.com", "rehash-password-1")
    old_hash = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash("rehash-password-1")
    with live.db():
        db.session.execute(update(User).where(User.id == user_id).values(password_hash=old_hash))
        db.session.commit()
    client_id, _secret = live.create_client()

    page = browser.submit(browser.get(authorize_url(live.issuer, client_id)), {"email": "rehash@example.com"})
    assert browser.submit(page, {"password": "not-the-password"}).status_code == 401
    with live.db():
        assert db.session.get(User, user_id).password_hash == old_hash
    assert "code" in redirect_params(browser.sign_in(browser.get(authorize_url(live.issuer, client_id)),
                                                     "rehash@example.com", "rehash-password-1"))
    with live.db():
        stored = db.session.get(User, user_id).password_hash
    assert stored != old_hash and not needs_rehash(stored) and verify_password(stored, "rehash-password-1")


def test_a_password_is_one_password_however_its_accents_were_typed(live, browser):
    """NIST SP 800-63B §5.1.1.2 (NFKC): "é" as one code point or as "e" and a combining
    accent (keyboards and systems differ) is the same password. A hash made before, of the
    password as typed, still signs in with that form and is replaced by the normal form's."""
    from argon2 import PasswordHasher
    from sqlalchemy import update

    from idp.passwords import hash_password, verify_password
    from idp.store import User, db

    composed, decomposed = "Mot de passe d'\u00e9t\u00e9 1", "Mot de passe d'e\u0301te\u0301 1"
    assert verify_password(hash_password(composed), decomposed)
    assert verify_password(hash_password(decomposed), composed)
    assert not verify_password(hash_password(composed), "Mot de passe d'ete 1")

    user_id = live.create_user("accents@example.com", "placeholder-password-1")
    typed_hash = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(decomposed)  # as typed
    with live.db():
        db.session.execute(update(User).where(User.id == user_id).values(password_hash=typed_hash))
        db.session.commit()
    client_id, _secret = live.create_client()
    assert "code" in redirect_params(browser.sign_in(browser.get(authorize_url(live.issuer, client_id)),
                                                     "accents@example.com", decomposed))
    with live.db():
        stored = db.session.get(User, user_id).password_hash
    assert stored != typed_hash
    other = type(browser)(live.issuer)  # another keyboard: the composed form signs in now too
    assert "code" in redirect_params(other.sign_in(other.get(authorize_url(live.issuer, client_id)),
                                                   "accents@example.com", composed))
