"""Second factors: TOTP authenticator apps, recovery codes, trusted devices."""
