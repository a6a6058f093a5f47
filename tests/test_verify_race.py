"""A mailed verification link opened while its unverified sign-up row is deleted by another
transaction (a directory's rename removes a stranger's sign-up at its new address:
`accounts.remove_unproven`). Whatever moment the row goes, the person gets a readable page that
tells what the database holds: "confirmed" with the row verified, or the expired link's page
with the row gone; never a 500.

A race is hard to time over HTTP, so the request runs in this process (the app's test client on
the live server's database) and a second writer, on a connection of its own, deletes the row at
one chosen moment of the request: before one of its write statements, or after one of its
commits. When the request's transaction holds a lock the DELETE needs, the writer waits, as a
real one would, until that transaction commits (its lock wait is cut short and retried then)."""

from __future__ import annotations

import re

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

PASSWORD = "sign-up-password-race-1"
EXPIRED = "This link has expired or was already used"
CONFIRMED = "Email address confirmed"
WRITES = ("INSERT", "UPDATE", "DELETE")


class SecondWriter:
    """Deletes the row as `remove_unproven` does (only while it is an unverified sign-up), on
    its own connection, at the `at`-th moment (counted from 0) of the request it is armed for."""

    def __init__(self, url: str, user_id: str, at: int):
        self.engine = create_engine(url, poolclass=NullPool,
                                    connect_args={"timeout": 0} if url.startswith("sqlite") else {})
        self.user_id, self.at, self.moments, self.waiting, self.deleted = user_id, at, 0, False, False

    def delete(self) -> None:
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
                self.deleted |= conn.execute(text(
                    "DELETE FROM users WHERE id = :id AND email_verified = :no AND org_id IS NULL "
                    "AND is_admin = :no"), {"id": self.user_id, "no": False}).rowcount == 1
            self.waiting = False
        except OperationalError:  # the request's transaction holds what it needs: wait for its commit
            self.waiting = True

    def _moment(self) -> None:
        if self.moments == self.at:
            self.delete()
        self.moments += 1

    def before_statement(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(WRITES):
            self._moment()

    def after_commit(self, session):
        if self.waiting:
            self.delete()
        self._moment()


def _unverified_sign_up(live, email: str) -> tuple[str, str]:
    """A sign-up row and its mailed link's token, as `signup._register` leaves them."""
    from idp import mail_tokens
    from idp.passwords import hash_password
    from idp.store import User, db

    with live.db():
        user = User(email=email, name="Someone", password_hash=hash_password(PASSWORD), email_verified=False,
                    locale="en")
        db.session.add(user)
        db.session.commit()
        return user.id, mail_tokens.issue(user, "verify")


def _open_link(live, token: str, writer: SecondWriter | None = None):
    """Another browser than the one that signed up: the link's page, then its password step
    (the step whose writes the second writer races)."""
    from idp.store import db

    client = live.app.test_client()
    page = client.get(f"/signup/verify/{token}", base_url=live.issuer)
    assert page.status_code == 200 and 'name="password"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    if writer is None:
        return client.post(f"/signup/verify/{token}", data={"csrf_token": csrf, "password": PASSWORD},
                           base_url=live.issuer)
    with live.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", writer.before_statement)
    event.listen(Session, "after_commit", writer.after_commit)
    try:
        resp = client.post(f"/signup/verify/{token}", data={"csrf_token": csrf, "password": PASSWORD},
                           base_url=live.issuer)
    finally:
        event.remove(engine, "before_cursor_execute", writer.before_statement)
        event.remove(Session, "after_commit", writer.after_commit)
    if writer.waiting:  # the request has ended: the waiting DELETE runs now
        writer.delete()
    writer.engine.dispose()
    return resp


def _row(live, user_id: str):
    from idp.store import SecurityEvent, User, db

    with live.db():
        user = db.session.get(User, user_id)
        kinds = sorted(db.session.execute(select(SecurityEvent.kind).where(SecurityEvent.user_id == user_id)).scalars())
        return (None if user is None else user.email_verified), kinds


def test_a_row_deleted_at_any_moment_of_the_verification_gives_a_readable_page(live):
    outcomes = []
    for at in range(60):
        user_id, token = _unverified_sign_up(live, f"race-{at}@example.com")
        writer = SecondWriter(live.env["IDP_DATABASE_URL"], user_id, at)
        resp = _open_link(live, token, writer)
        verified, events = _row(live, user_id)
        body = resp.get_data(as_text=True)
        assert resp.status_code != 500, (at, body[:300])
        if writer.deleted:  # the row went first: the link died with it
            assert verified is None
            assert resp.status_code == 400 and EXPIRED in body, (at, body[:300])
        else:  # the verification went first: the row is verified, the DELETE left it alone
            assert verified is True and {"account.adopted", "email.verified"} <= set(events), (at, events)
            assert resp.status_code == 200 and CONFIRMED in body, (at, body[:300])
        outcomes.append(writer.deleted)
        if writer.moments <= at:  # the request ended before this moment: every moment was tried
            break
    else:
        raise AssertionError("the verification has more write moments than this test tries")
    assert True in outcomes and False in outcomes, outcomes


def test_without_a_second_writer_the_link_verifies_once_then_reads_as_expired(live):
    user_id, token = _unverified_sign_up(live, "race-none@example.com")
    resp = _open_link(live, token)
    assert resp.status_code == 200 and CONFIRMED in resp.get_data(as_text=True)
    verified, events = _row(live, user_id)
    assert verified is True and events == ["account.adopted", "email.verified"]
    again = live.app.test_client().get(f"/signup/verify/{token}", base_url=live.issuer)
    assert again.status_code == 400 and EXPIRED in again.get_data(as_text=True)
    assert _row(live, user_id) == (True, ["account.adopted", "email.verified"])
