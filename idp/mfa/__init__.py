"""Second factors: TOTP authenticator apps, recovery codes, passkeys, trusted devices."""

from __future__ import annotations


def has_second_factor(user) -> bool:
    """True when the account has a factor to ask for after the password (a passkey counts
    only where the person's org allows passkeys)."""
    from .totp import has_totp

    return has_totp(user) or has_usable_passkey(user)


def has_usable_passkey(user) -> bool:
    """True when the account has a passkey and its org allows passkeys."""
    from ..accounts import passkeys_allowed
    from .passkeys import has_passkey

    return has_passkey(user) and passkeys_allowed(user)
