"""Single-use links sent by mail (password reset, email verification, invitation, "Not you?
Remove it" in the notice of an added way in), stored only by hash."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from .store import MailToken, User, db, digest, new_secret, utcnow

LIFETIMES = {"reset": timedelta(minutes=60), "verify": timedelta(hours=24), "invite": timedelta(days=7),
             "undo": timedelta(days=7)}
# Purposes whose links each undo one change (their `target`): a later change's link leaves
# an earlier one alive, as the owner may not have read the first mail yet.
ONE_EACH = frozenset({"undo"})


def issue(user: User, purpose: str, value: str | None = None, *, commit: bool = True,
          new_account: bool = False, target: str | None = None, proof: str | None = None) -> str:
    """A new token for `purpose` (`value` when the caller made it already); any earlier
    unused one of the same purpose dies (not of a purpose in ONE_EACH). With `commit` False
    it waits for the caller's commit. `new_account`: the account is being made in the
    caller's transaction, so it has no earlier token (SCIM creates skip that statement).
    `target`: the one thing the link acts on; `proof`: the password hash the link will ask
    the password against (the account's when it was mailed)."""
    now = utcnow()
    if not new_account and purpose not in ONE_EACH:
        db.session.execute(
            update(MailToken)
            .where(MailToken.user_id == user.id, MailToken.purpose == purpose, MailToken.used_at.is_(None))
            .values(used_at=now)
        )
    value = value or new_secret(32)
    db.session.add(MailToken(token_hash=digest(value), user_id=user.id, purpose=purpose, created_at=now,
                             expires_at=now + LIFETIMES[purpose], target=target, password_hash=proof))
    if commit:
        db.session.commit()
    return value


def find(value: str, purpose: str) -> tuple[MailToken, User] | None:
    """The live token and its account, or None (unknown, used, expired, superseded)."""
    if not value or len(value) > 100:
        return None
    row = db.session.get(MailToken, digest(value))
    if row is None or row.purpose != purpose or row.used_at is not None or row.expires_at <= utcnow():
        return None
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        return None
    # A link that sets a password (reset, invitation) dies when the password changes by any other way.
    if purpose in ("reset", "invite") and user.password_changed_at and user.password_changed_at > row.created_at:
        return None
    return row, user


def issued_to(token_hash, user: User, purpose: str) -> bool:
    """True when `token_hash` (a token's digest) names a token of `purpose` issued to `user`,
    spent, superseded or not: this browser started what made that token."""
    if not isinstance(token_hash, str) or len(token_hash) != 64:
        return False
    row = db.session.get(MailToken, token_hash)
    return row is not None and row.user_id == user.id and row.purpose == purpose


def consume(row: MailToken) -> bool:
    """Mark used, atomically: False when another request used it first."""
    used = db.session.execute(
        update(MailToken).where(MailToken.token_hash == row.token_hash, MailToken.used_at.is_(None))
        .values(used_at=utcnow())
    ).rowcount
    return used == 1


def void_all(user: User) -> None:
    """Every unused link of `user` dies (the caller commits): their address changed, or the
    account was disabled or adopted."""
    db.session.execute(update(MailToken).where(MailToken.user_id == user.id, MailToken.used_at.is_(None))
                       .values(used_at=utcnow()))
