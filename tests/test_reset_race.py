"""A password reset link opened while its unverified sign-up row is deleted by another
transaction (a directory's rename removes a stranger's sign-up at its new address:
`accounts.remove_unproven`). Whatever moment the row goes, the person gets a readable page that
tells what the database holds: "password changed" with the row verified and adopted, or the
expired link's page with the row gone; never a 500. The second writer: tests/second_writer.py."""

from __future__ import annotations

import re
from datetime import timedelta

from tests.second_writer import SecondWriter, account_with_link, every_moment, row_of

PLANTED = "planted-password-race-1"
CHOSEN = "chosen-password-race-2"
EXPIRED = "This link has expired or was already used"
CHANGED = "Your new password is ready."


def _account_with_reset_link(live, email: str, *, verified: bool) -> tuple[str, str]:
    """An account (a stranger's sign-up when not `verified`) and its mailed reset link's token."""
    return account_with_link(live, email, PLANTED, "reset", verified=verified)


def _open_link(live, token: str, writer: SecondWriter | None = None):
    """The link's page, then its new password sent (the step whose writes the writer races)."""
    client = live.app.test_client()
    page = client.get(f"/password/reset/{token}", base_url=live.issuer)
    assert page.status_code == 200 and 'name="password"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def send():
        return client.post(f"/password/reset/{token}", base_url=live.issuer,
                           data={"csrf_token": csrf, "password": CHOSEN, "sign_out_everywhere": "on"})

    return send() if writer is None else writer.during(live, send)


def _password_and_name(live, user_id: str):
    from idp.passwords import verify_password
    from idp.store import User, db

    with live.db():
        user = db.session.get(User, user_id)
        return verify_password(user.password_hash, CHOSEN), user.name


def test_a_row_deleted_at_any_moment_of_the_reset_gives_a_readable_page(live):
    def attempt(at):
        user_id, token = _account_with_reset_link(live, f"reset-race-{at}@example.com", verified=False)
        writer = SecondWriter(live.env["IDP_DATABASE_URL"], user_id, at)
        resp = _open_link(live, token, writer)
        verified, events = row_of(live, user_id)
        body = resp.get_data(as_text=True)
        assert resp.status_code != 500, (at, body[:300])
        if writer.deleted:  # the row went first: the link died with it
            assert verified is None
            assert resp.status_code == 400 and EXPIRED in body, (at, body[:300])
        else:  # the reset went first: the row is verified and adopted, the DELETE left it alone
            assert verified is True and {"account.adopted", "password.reset"} <= set(events), (at, events)
            assert _password_and_name(live, user_id) == (True, None), at
            assert resp.status_code == 200 and CHANGED in body, (at, body[:300])
        return writer

    every_moment(live, attempt)


def test_without_a_second_writer_a_reset_adopts_an_unverified_row_once(live):
    user_id, token = _account_with_reset_link(live, "reset-race-none@example.com", verified=False)
    resp = _open_link(live, token)
    assert resp.status_code == 200 and CHANGED in resp.get_data(as_text=True)
    assert row_of(live, user_id) == (True, ["account.adopted", "password.reset"])
    assert _password_and_name(live, user_id) == (True, None)  # the planted name went with the row's adoption
    again = live.app.test_client().post(f"/password/reset/{token}", base_url=live.issuer,
                                        data={"password": "another-password-race-3"})
    assert again.status_code in (400, 403)
    assert live.app.test_client().get(f"/password/reset/{token}", base_url=live.issuer).status_code == 400
    assert row_of(live, user_id) == (True, ["account.adopted", "password.reset"])
    assert _password_and_name(live, user_id) == (True, None)


def test_without_a_second_writer_a_reset_of_a_verified_row_keeps_it_and_works_once(live):
    user_id, token = _account_with_reset_link(live, "reset-race-verified@example.com", verified=True)
    resp = _open_link(live, token)
    assert resp.status_code == 200 and CHANGED in resp.get_data(as_text=True)
    assert row_of(live, user_id) == (True, ["password.reset"])
    assert _password_and_name(live, user_id) == (True, "Someone")  # a proven account keeps its name
    assert live.mailbox.wait_for("reset-race-verified@example.com")  # the owner is told of the change
    dead = live.app.test_client().get(f"/password/reset/{token}", base_url=live.issuer)
    assert dead.status_code == 400 and EXPIRED in dead.get_data(as_text=True)


def test_the_reset_its_event_and_the_end_of_every_session_are_one_commit(live):
    """No crash between two commits can leave a password changed with no `password.reset` event,
    or with the sessions the person asked to end still open. The products are told after it
    (the back-channel logouts' queue, its own commit)."""
    import traceback

    from sqlalchemy import event, select

    from idp.store import BrowserSession, SecurityEvent, db
    from tests.conftest import Browser

    user_id, token = _account_with_reset_link(live, "reset-one-commit@example.com", verified=True)
    other = Browser(live.issuer)
    page = other.sign_in(other.get(f"{live.issuer}/account"), "reset-one-commit@example.com", PLANTED)
    assert page.url.startswith(f"{live.issuer}/account"), page.text[:300]
    with live.db():
        engine = db.engine
        assert db.session.execute(select(BrowserSession.id).where(BrowserSession.user_id == user_id)).all()
    commits = []

    def listener(_conn):  # which of our functions committed
        ours = [f for f in traceback.extract_stack() if "/idp/" in f.filename]
        commits.append(f"{ours[-1].filename.rsplit('/', 1)[1]}:{ours[-1].name}")

    event.listen(engine, "commit", listener)
    try:
        resp = _open_link(live, token)
    finally:
        event.remove(engine, "commit", listener)
    assert resp.status_code == 200 and CHANGED in resp.get_data(as_text=True)
    assert commits == ["accounts.py:_changed_by_link", "backchannel.py:queue_logouts"]
    with live.db():
        assert db.session.execute(select(BrowserSession.id).where(
            BrowserSession.user_id == user_id, BrowserSession.ended_at.is_(None))).all() == []
        details = db.session.execute(select(SecurityEvent.detail).where(
            SecurityEvent.user_id == user_id, SecurityEvent.kind == "password.reset")).scalars().all()
    assert [d.get("signed_out_everywhere") for d in details] == [True]
    assert other.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")


class PasswordChangedElsewhere(SecondWriter):
    """The owner changes the password on /account (as `accounts.change_password` writes it), in
    a transaction of its own, at one moment of the reset. `deleted` here: it came first, before
    the reset's password was there."""

    def write(self, conn) -> bool:
        from sqlalchemy import select, update

        from idp.passwords import hash_password
        from idp.store import User, utcnow

        users = User.__table__
        first = conn.execute(select(users.c.password_hash).where(users.c.id == self.user_id)).scalar() == self.planted
        conn.execute(update(users).where(users.c.id == self.user_id).values(
            password_hash=hash_password(OWN), password_changed_at=utcnow() + timedelta(seconds=1)))
        return first


OWN = "owners-own-new-password-4"


def test_a_password_changed_at_any_moment_of_the_reset_is_never_overwritten_by_it(live):
    """`mail_tokens.find` refuses a reset link once the password changed; checked again as the
    reset writes the row, a change at any moment in between still ends the link: the owner's
    newer password stands, whichever came first."""
    from idp.passwords import verify_password
    from idp.store import User, db

    def attempt(at):
        user_id, token = _account_with_reset_link(live, f"reset-changed-{at}@example.com", verified=True)
        writer = PasswordChangedElsewhere(live.env["IDP_DATABASE_URL"], user_id, at)
        with live.db():
            writer.planted = db.session.get(User, user_id).password_hash
        resp = _open_link(live, token, writer)
        body = resp.get_data(as_text=True)
        with live.db():
            stored = db.session.get(User, user_id).password_hash
        if writer.moments <= at:  # the reset ended before this moment: the owner changed nothing
            assert resp.status_code == 200 and verify_password(stored, CHOSEN), at
            return writer
        assert verify_password(stored, OWN), at  # the owner's change, made last or first, stands
        if writer.deleted:  # the owner's change came first: the link died with it
            assert resp.status_code == 400 and EXPIRED in body, (at, body[:300])
        else:
            assert resp.status_code == 200 and CHANGED in body, (at, body[:300])
        return writer

    every_moment(live, attempt)
