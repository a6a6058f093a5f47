"""TOTP (RFC 6238, via pyotp) and single-use recovery codes.

The shared secret is sealed at rest with the instance secret; a code's time step
is remembered so the same code cannot be used twice (no replay within its window).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
from flask import current_app, session
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from keys import seal, unseal

from ..store import RecoveryCode, TotpFactor, User, db, digest, utcnow

ISSUER_NAME = "myaccount"
PURPOSE = b"totp secrets"
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no look-alikes


def _secret_key() -> str:
    return current_app.extensions["idp.settings"].secret_key


def has_totp(user: User) -> bool:
    row = db.session.get(TotpFactor, user.id)
    return row is not None and row.confirmed_at is not None


def enrolment(user: User) -> str | None:
    """Which set-up of the app `user` has (None: none): a hash of its sealed secret, new at
    every set-up, so a link that removes one set-up leaves a later one alone."""
    row = db.session.get(TotpFactor, user.id)
    if row is None or row.confirmed_at is None:
        return None
    return hashlib.sha256(row.sealed_secret).hexdigest()


def start_enrolment(user: User, retry: bool = True) -> str | None:
    """A fresh, unconfirmed secret for `user` (replacing an unconfirmed one); returns it in
    base32, or None when an app is set up (maybe a moment ago, by another request)."""
    secret = pyotp.random_base32()
    sealed = seal(_secret_key(), secret.encode(), user.id, PURPOSE)
    row = db.session.get(TotpFactor, user.id)
    if row is None:
        db.session.add(TotpFactor(user_id=user.id, sealed_secret=sealed, last_step=None))
    elif row.confirmed_at is not None:
        return None
    # Replaced only while still unconfirmed, as the database has it now: a set-up confirmed
    # since this request read the row keeps the secret its owner scanned.
    elif not _write_unconfirmed(user, sealed_secret=sealed, last_step=None):
        db.session.rollback()
        return None
    try:
        db.session.commit()
    except IntegrityError:
        # The page loaded twice at once (another server's insert won): the row is there now,
        # so the second pass replaces its secret, as a reload does.
        db.session.rollback()
        if retry:
            return start_enrolment(user, retry=False)
        raise
    return secret


def _write_unconfirmed(user: User, *conditions, **values) -> bool:
    """Write `values` on `user`'s unconfirmed row (and `conditions`), by one statement that
    decides against the committed row, never this request's earlier read of it: True when it
    did. Set-up pages of several sign-ins (a reload, a confirmation) race across processes."""
    done = db.session.execute(
        update(TotpFactor).where(TotpFactor.user_id == user.id, TotpFactor.confirmed_at.is_(None), *conditions)
        .values(**values).execution_options(synchronize_session=False)).rowcount == 1
    row = db.session.get(TotpFactor, user.id)
    if row is not None:
        db.session.expire(row)  # read again: what the statement wrote, or what another request did
    return done


def pending_secret(user: User) -> str | None:
    row = db.session.get(TotpFactor, user.id)
    if row is None or row.confirmed_at is not None:
        return None
    return unseal(_secret_key(), row.sealed_secret, user.id, PURPOSE).decode()


SHOWN = "totp_shown"  # in the flow cookie: the digest of the pending secret this browser was shown


def shown_secret(user: User) -> str | None:
    """The pending secret when it is the one this browser was shown, else None."""
    secret = pending_secret(user)
    shown = session.get(SHOWN)
    if secret is None or not isinstance(shown, str) or not hmac.compare_digest(shown, digest(secret)):
        return None
    return secret


def secret_to_show(user: User) -> str | None:
    """The secret for this browser's set-up page: the one it was shown (a reload, a prefetch
    never replaces the one being scanned), else a fresh one (None: an app is set up). Never
    one another browser was shown or made (another session, another sign-in with the password
    at the required set-up): whoever saw it would hold the account's factor too, unbeknown to
    the owner."""
    secret = shown_secret(user)
    if secret is None:
        secret = start_enrolment(user)
        if secret is not None:  # None: the app was set up meanwhile
            session[SHOWN] = digest(secret)
    return secret


def provisioning_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER_NAME)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code, rendered here (no third party sees the secret)."""
    # segno only here, when someone sets up an authenticator app: not in every worker (issue 14)
    import segno

    return segno.make(uri, error="m").svg_inline(scale=4, omitsize=False)


ASCII_DIGITS = frozenset("0123456789")


def _matching_step(secret: str, code: str, now: float) -> int | None:
    # ASCII digits only: str.isdigit() also takes "١٢٣" and "²", which compare_digest refuses.
    code = "".join(ch for ch in code if ch in ASCII_DIGITS)
    if len(code) != 6:
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // totp.interval)
    for candidate in (step - 1, step, step + 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.at(candidate * totp.interval), code):
            return candidate
    return None


def confirm_enrolment(user: User, code: str, now: float | None = None) -> bool:
    """True, the app set up, when `code` is current for the pending secret. The caller
    commits (with the notice of it, notices.record): the code's step is marked used in the
    same row, so in the same commit as the enrolment, and cannot be played again."""
    row = db.session.get(TotpFactor, user.id)
    secret = pending_secret(user)
    if secret is None:
        return False
    step = _matching_step(secret, code, now or time.time())
    if step is None:
        return False
    # Confirmed only while the row holds the secret the code was checked against: another
    # sign-in's set-up page, loaded meanwhile, may have replaced it with one shown to them.
    return _write_unconfirmed(user, TotpFactor.sealed_secret == row.sealed_secret, confirmed_at=utcnow(),
                              last_step=step)


def verify(user: User, code: str, now: float | None = None) -> bool:
    """True for a current code not used before; the step is claimed atomically."""
    row = db.session.get(TotpFactor, user.id)
    if row is None or row.confirmed_at is None:
        return False
    secret = unseal(_secret_key(), row.sealed_secret, user.id, PURPOSE).decode()
    step = _matching_step(secret, code, now or time.time())
    if step is None:
        return False
    claimed = db.session.execute(
        update(TotpFactor)
        .where(TotpFactor.user_id == user.id,
               (TotpFactor.last_step.is_(None)) | (TotpFactor.last_step < step))
        .values(last_step=step)
    ).rowcount
    db.session.commit()
    return claimed == 1


def remove(user: User) -> None:
    """Turn the app and its recovery codes off; the caller commits (notices.record)."""
    from .devices import revoke_all

    db.session.execute(delete(TotpFactor).where(TotpFactor.user_id == user.id))
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    revoke_all(user)  # the trust was earned with this factor: it must not skip the next one


def _normalize_recovery(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch in RECOVERY_ALPHABET)


def _recovery_hash(user: User, normalized: str) -> str:
    """The stored form of a recovery code: keyed with the instance secret and the account.
    A code holds ~49 bits; as a plain SHA-256 one offline search of a leaked table would
    find every account's codes at once (the TOTP secrets beside them are sealed)."""
    message = b"recovery code\x00" + user.id.encode() + b"\x00" + normalized.encode()
    return hmac.new(_secret_key().encode(), message, hashlib.sha256).hexdigest()


def new_recovery_codes(user: User, count: int = 10) -> list[str]:
    """Ten fresh single-use codes (older ones die), shown once, stored hashed; the caller
    commits (notices.record)."""
    # One list at a time per account (the app's row locked, PostgreSQL; SQLite's writers take
    # turns anyway): two at once each deleted only the codes its statement could see, and
    # the list not shown last stayed good.
    db.session.execute(select(TotpFactor.user_id).where(TotpFactor.user_id == user.id).with_for_update())
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
        codes.append(f"{raw[:5]}-{raw[5:]}")
        db.session.add(RecoveryCode(code_hash=_recovery_hash(user, raw), user_id=user.id))
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    normalized = _normalize_recovery(code)
    if len(normalized) != 10:
        return False
    used = db.session.execute(
        update(RecoveryCode)
        # codes made before they were keyed (a plain digest) work until they are replaced
        .where(RecoveryCode.code_hash.in_((_recovery_hash(user, normalized), digest(normalized))),
               RecoveryCode.user_id == user.id,
               RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
    ).rowcount
    db.session.commit()
    return used == 1


def recovery_codes_left(user: User) -> int:
    return db.session.execute(
        select(func.count()).select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).scalar_one()
