"""Second factors: TOTP authenticator apps, recovery codes, passkeys, trusted devices."""

from __future__ import annotations

from sqlalchemy import exists, select


def has_second_factor(user) -> bool:
    """True when the account has a factor to ask for after the password (a passkey counts
    only where the person's org allows passkeys).

    One statement for both kinds (`totp.has_totp` and `passkeys.has_passkey` ask the same
    questions one at a time): every sign-in and every resumed request asks this."""
    from ..accounts import passkeys_allowed
    from ..store import Passkey, TotpFactor, db

    totp, passkey = db.session.execute(select(
        exists().where(TotpFactor.user_id == user.id, TotpFactor.confirmed_at.is_not(None)),
        exists().where(Passkey.user_id == user.id),
    )).one()
    return bool(totp) or (bool(passkey) and passkeys_allowed(user))


def has_usable_passkey(user) -> bool:
    """True when the account has a passkey and its org allows passkeys."""
    from ..accounts import passkeys_allowed
    from .passkeys import has_passkey

    return has_passkey(user) and passkeys_allowed(user)
