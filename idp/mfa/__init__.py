"""Second factors: TOTP authenticator apps, recovery codes, passkeys, trusted devices."""

from __future__ import annotations


def has_second_factor(user) -> bool:
    """True when the account has a factor to ask for after the password."""
    from .passkeys import has_passkey
    from .totp import has_totp

    return has_totp(user) or has_passkey(user)
