"""A second writer racing one request: it deletes an account's row as a directory's rename
removes a stranger's unverified sign-up at its new address (`accounts.remove_unproven`), in a
transaction of its own, at one chosen moment of the request.

A race is hard to time over HTTP, so the request runs in the test's process (the app's test
client on the live server's database), and the moments are counted there: before each of the
request's write statements, and after each of its commits. When the request's transaction
holds a lock the DELETE needs, the writer waits, as a real one would, until that transaction
commits (its lock wait is cut short and retried then)."""

from __future__ import annotations

from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

WRITES = ("INSERT", "UPDATE", "DELETE")


class SecondWriter:
    """Deletes the row as `remove_unproven` does (only while it is an unverified sign-up), on
    its own connection, at the `at`-th moment (counted from 0) of the request it is armed for."""

    def __init__(self, url: str, user_id: str, at: int):
        self.engine = create_engine(url, poolclass=NullPool,
                                    connect_args={"timeout": 0} if url.startswith("sqlite") else {})
        self.user_id, self.at, self.moments, self.waiting, self.deleted = user_id, at, 0, False, False

    def act(self) -> None:
        """The write, at its moment, in a transaction of its own; when it must wait for the
        request's transaction, again after that commits."""
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SET LOCAL lock_timeout = '300ms'"))
                self.deleted |= self.write(conn)
            self.waiting = False
        except OperationalError:  # the request's transaction holds what it needs: wait for its commit
            self.waiting = True

    def write(self, conn) -> bool:
        """The DELETE: whether it removed the row (a subclass may write something else, and
        say whether it came first)."""
        return conn.execute(text(
            "DELETE FROM users WHERE id = :id AND email_verified = :no AND org_id IS NULL "
            "AND is_admin = :no"), {"id": self.user_id, "no": False}).rowcount == 1

    def _moment(self) -> None:
        if self.moments == self.at:
            self.act()
        self.moments += 1

    def before_statement(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(WRITES):
            self._moment()

    def after_commit(self, session):
        if self.waiting:
            self.act()
        self._moment()

    def during(self, live, send):
        """`send()` (a request on the app's test client), with this writer armed: its answer."""
        from idp.store import db

        with live.app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", self.before_statement)
        event.listen(Session, "after_commit", self.after_commit)
        try:
            resp = send()
        finally:
            event.remove(engine, "before_cursor_execute", self.before_statement)
            event.remove(Session, "after_commit", self.after_commit)
        if self.waiting:  # the request has ended: the waiting write runs now
            self.act()
        self.engine.dispose()
        return resp


def row_of(live, user_id: str):
    """(email_verified, or None when the row is gone; the kinds of its audit events, sorted)."""
    from sqlalchemy import select

    from idp.store import SecurityEvent, User, db

    with live.db():
        user = db.session.get(User, user_id)
        kinds = sorted(db.session.execute(select(SecurityEvent.kind).where(SecurityEvent.user_id == user_id)).scalars())
        return (None if user is None else user.email_verified), kinds


def every_moment(live, attempt, limit: int = 60) -> list[bool]:
    """`attempt(at)` for at = 0, 1, ... until the request it makes ended before its moment
    `at` (every moment was tried): whether the writer's write came first (`deleted`), per
    attempt. Both outcomes must have happened, or the race was not run."""
    outcomes = []
    for at in range(limit):
        writer = attempt(at)
        outcomes.append(writer.deleted)
        if writer.moments <= at:
            break
    else:
        raise AssertionError("the request has more write moments than this test tries")
    assert True in outcomes and False in outcomes, outcomes
    return outcomes


def account_with_link(live, email: str, password: str, purpose: str, *, verified: bool = False) -> tuple[str, str]:
    """An account (a stranger's sign-up, as `signup._register` leaves it, unless `verified`)
    with `password`, and its mailed `purpose` link's token: (user id, token)."""
    from idp import mail_tokens
    from idp.passwords import hash_password
    from idp.store import User, db

    with live.db():
        user = User(email=email, name="Someone", password_hash=hash_password(password), email_verified=verified,
                    locale="en")
        db.session.add(user)
        db.session.commit()
        return user.id, mail_tokens.issue(user, purpose)
