"""Every replacement of a password an account had is told to its owner by mail, in the same
commit as the new password (OWASP ASVS 4.0 2.2.3: notify after credential resets): whoever
changed it (a signed-in browser, a reset link read in the mailbox) may not be them. A first
password (an invitation accepted, a sign-up's row adopted by a reset) is no change."""

from __future__ import annotations

import time
import uuid
from contextlib import contextmanager

import pytest
from sqlalchemy import text

from tests.admin_world import new_org, org_admin, signed_in
from tests.conftest import Browser, server_apart
from tests.smtp import body_of, link_in
from tests.test_account import _sign_in

SUBJECT = {"en": "The password of your account was changed", "fr": "Le mot de passe de votre compte a été modifié"}


@pytest.fixture(scope="module")
def live(live, tmp_path_factory):
    """A server apart: these tests make the database refuse a write on purpose."""
    yield from server_apart(live, tmp_path_factory)


def _reset_link(live, email: str) -> str:
    """A reset link for `email`, as "Forgot password?" mails it (issued here: the live
    server's hourly budget of reset asks from one address is the whole suite's)."""
    from idp import mail_tokens
    from idp.store import User, db

    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        return f"{live.issuer}/password/reset/{mail_tokens.issue(user, 'reset')}"


def _set_by_link(live, link: str, password: str, lang: str = "en"):
    b = Browser(live.issuer, lang)
    return b.submit(b.get(link), {"password": password})


def _told(live, email: str, count: int, lang: str = "en") -> None:
    """Once `count` mails to `email` arrived (and a moment for any other), they hold exactly
    one "password changed" notice, in `lang`, pointing at the reset page."""
    live.mailbox.wait_for(email, count)
    time.sleep(0.5)
    mails = live.mailbox.to(email)
    assert len(mails) == count, [str(m["Subject"]) for m in mails]
    told = [m for m in mails if str(m["Subject"]) == SUBJECT[lang]]
    assert len(told) == 1, [str(m["Subject"]) for m in mails]
    assert link_in(told[0], live.issuer) == f"{live.issuer}/password/forgot"


def _changed_on_the_account_page(live, email: str, current: str) -> None:
    b, _ = _sign_in(live, email, current)
    page = b.get(f"{live.issuer}/account/password")
    done = b.submit(page, {"current_password": current, "password": "changed-later-on-5"})
    assert done.status_code == 200 and done.url.startswith(f"{live.issuer}/account")


def _signs_in(live, email: str, password: str) -> bool:
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, password)
    return page.status_code == 200 and page.url.startswith(f"{live.issuer}/account")


def test_a_reset_link_tells_the_owner_in_their_language(live):
    """Medium: a password replaced through the reset link (someone who reads the mailbox for a
    moment) was never told, unlike a change on /account."""
    email = "told-of-reset@example.com"
    live.create_user(email, "first-password-1")
    link = _reset_link(live, email)
    done = _set_by_link(live, link, "second-password-2", "fr")
    assert done.status_code == 200
    _told(live, email, 1, "fr")
    assert all("second-password-2" not in body_of(m) for m in live.mailbox.to(email))


def test_a_change_on_the_account_page_is_told_in_the_accounts_language(live):
    email = "told-of-change-fr@example.com"
    live.create_user(email, "first-password-1", locale="fr")
    b, _ = _sign_in(live, email, "first-password-1")  # the browser asks for English
    page = b.get(f"{live.issuer}/account/password")
    done = b.submit(page, {"current_password": "first-password-1", "password": "second-password-2"})
    assert done.status_code == 200 and done.url.startswith(f"{live.issuer}/account")
    _told(live, email, 1, "fr")


@contextmanager
def _outbox_refusing(live):
    """The outbox refuses every new mail (a full disk, a lost connection mid-transaction)."""
    from idp.store import db

    with live.db():
        engine = db.engine
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            conn.execute(text("CREATE TRIGGER outbox_refusing BEFORE INSERT ON mail_outbox "
                              "BEGIN SELECT RAISE(ABORT, 'outbox refusing'); END"))
        else:
            conn.execute(text("CREATE FUNCTION outbox_refusing() RETURNS trigger LANGUAGE plpgsql AS "
                              "$$ BEGIN RAISE EXCEPTION 'outbox refusing'; END $$"))
            conn.execute(text("CREATE TRIGGER outbox_refusing BEFORE INSERT ON mail_outbox "
                              "FOR EACH ROW EXECUTE FUNCTION outbox_refusing()"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            if sqlite:
                conn.execute(text("DROP TRIGGER outbox_refusing"))
            else:
                conn.execute(text("DROP TRIGGER outbox_refusing ON mail_outbox"))
                conn.execute(text("DROP FUNCTION outbox_refusing()"))


def test_no_password_changes_untold_when_its_mail_cannot_be_stored(live):
    """Medium: the change on /account was committed first and its mail stored after, in a
    transaction of its own: a failure between the two (or of the outbox) left the password
    changed and the owner untold. The mail is now part of the change's commit."""
    email = "told-or-unchanged@example.com"
    live.create_user(email, "first-password-1")
    link = _reset_link(live, email)
    b, _ = _sign_in(live, email, "first-password-1")
    page = b.get(f"{live.issuer}/account/password")
    with _outbox_refusing(live):
        changed = b.submit(page, {"current_password": "first-password-1", "password": "second-password-2"})
        assert changed.status_code == 500
        reset = _set_by_link(live, link, "third-password-3")
        assert reset.status_code == 500
    assert _signs_in(live, email, "first-password-1")
    assert not _signs_in(live, email, "second-password-2") and not _signs_in(live, email, "third-password-3")
    assert Browser(live.issuer).get(link).status_code == 200  # the link was not spent either
    # the outbox back, both paths work and tell
    assert _set_by_link(live, link, "third-password-3").status_code == 200
    _told(live, email, 1)


def test_a_first_password_is_no_change(live):
    """An invitation accepted, or a reset that adopts a sign-up's unverified row (whose
    password someone else may have planted, and which is wiped first), sets the account's
    first password: no "password changed" notice. A later change is told, once: the notice
    that shows the sender had every earlier mail."""
    org_id, name, domain = new_org(live, "first-pw")
    boss = f"boss-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(live, name, boss)
    invitee = f"new-{uuid.uuid4().hex[:6]}@{domain}"
    admin = signed_in(live, boss)
    users = f"{live.issuer}/admin/orgs/{org_id}/users"
    assert admin.submit(admin.get(users), {"email": invitee, "name": "New"}, action=users).status_code == 200
    invite = link_in(live.mailbox.wait_for(invitee, 1)[0], live.issuer)
    b = Browser(live.issuer)
    assert "Your account is ready" in b.submit(b.get(invite), {"password": "a fine new pass 42"}).text
    _changed_on_the_account_page(live, invitee, "a fine new pass 42")
    _told(live, invitee, 2)

    from idp.passwords import hash_password
    from idp.store import User, db

    planted = "adopted-first@example.com"
    with live.db():  # what a sign-up with someone else's address leaves
        db.session.add(User(email=planted, password_hash=hash_password("attacker-password-9"), email_verified=False))
        db.session.commit()
    assert _set_by_link(live, _reset_link(live, planted), "owner-chose-this-7").status_code == 200
    _changed_on_the_account_page(live, planted, "owner-chose-this-7")
    _told(live, planted, 1)


def _verified_without_password(live, email: str) -> None:
    """What company, social or passkey sign-in only leaves (or SCIM's create): a verified
    account with no password."""
    from idp.store import User, db

    with live.db():
        db.session.add(User(email=email, password_hash=None, email_verified=True))
        db.session.commit()


def test_a_password_added_by_a_reset_link_is_told(live):
    """Low: a verified account with no password that a reset link gave one gained a way in
    (whoever read the mailbox for a moment may not be the owner), and nobody was told."""
    email = "told-of-added@example.com"
    _verified_without_password(live, email)
    assert _set_by_link(live, _reset_link(live, email), "added-password-8").status_code == 200
    _told(live, email, 1)
    assert _signs_in(live, email, "added-password-8")


def test_an_invitations_first_password_is_no_news(live):
    """SCIM makes its people verified, without a password, and invites them: accepting is
    the person arriving, not a change to tell of."""
    from idp import mail_tokens
    from idp.store import User, db

    email = "invited-verified@example.com"
    _verified_without_password(live, email)
    with live.db():
        token = mail_tokens.issue(db.session.query(User).filter_by(email=email).one(), "invite")
    b = Browser(live.issuer)
    assert "Your account is ready" in b.submit(b.get(f"{live.issuer}/invite/{token}"),
                                               {"password": "a fine new pass 43"}).text
    _changed_on_the_account_page(live, email, "a fine new pass 43")
    _told(live, email, 1)  # the later change only
