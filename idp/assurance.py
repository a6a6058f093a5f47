"""How strongly a person was authenticated: the `acr` values we issue and accept, and `amr` (RFC 8176)."""

from __future__ import annotations

ACR_SINGLE_FACTOR = "urn:myaccount:loa:1"
ACR_MULTI_FACTOR = "urn:myaccount:loa:2"
ACR_VALUES = (ACR_SINGLE_FACTOR, ACR_MULTI_FACTOR)

AMR_PASSWORD = ["pwd"]
AMR_TOTP = ["otp", "mfa"]  # added to the first factor's amr
AMR_RECOVERY = ["mfa"]
AMR_PASSKEY = ["hwk", "mfa"]  # a passkey that verified the person (PIN or biometrics)


def wants_second_factor(params: dict) -> bool:
    """True when the product asked for multi-factor assurance (acr_values)."""
    return ACR_MULTI_FACTOR in params.get("acr_values", "").split()
