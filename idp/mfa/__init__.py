"""Second factors: TOTP authenticator apps, recovery codes, passkeys, trusted devices."""

from __future__ import annotations

from sqlalchemy import bindparam, exists, select


def has_second_factor(user) -> bool:
    """True when the account has a factor to ask for after the password (a passkey counts
    only where the person's org allows passkeys).

    One statement for both kinds (`totp.has_totp` and `passkeys.has_passkey` ask the same
    questions one at a time): every sign-in and every resumed request asks this."""
    from ..accounts import passkeys_allowed
    from ..session_rules import factor_counts
    from ..store import db

    db.session.flush()  # a factor added in this request counts (as autoflush did); free when clean
    totp, passkey = db.session.connection().execute(_factors_query(), {"b_user": user.id}).one()
    return factor_counts(bool(totp), bool(passkey), lambda: passkeys_allowed(user))


_FACTORS = []


def _factors_query():
    """`has_second_factor`'s statement, built once (the models are imported on first use)."""
    if not _FACTORS:
        from ..store import Passkey, TotpFactor

        _FACTORS.append(select(
            exists().where(TotpFactor.user_id == bindparam("b_user"), TotpFactor.confirmed_at.is_not(None)),
            exists().where(Passkey.user_id == bindparam("b_user")),
        ))
    return _FACTORS[0]


def has_usable_passkey(user) -> bool:
    """True when the account has a passkey and its org allows passkeys."""
    from ..accounts import passkeys_allowed
    from .passkeys import has_passkey

    return has_passkey(user) and passkeys_allowed(user)
