"""How large an RSA public key the server verifies signatures with, whoever supplied it: a
DPoP proof's key (anyone's, before authenticating), a client's registered `jwks` or the keys
its `jwks_uri` serves (private_key_jwt assertions, request objects). A public exponent as
long as the modulus costs ~150 times e=65537's verification, a 16384-bit modulus ~100 times a
2048-bit one: one request signed with such a key costs the server what a hundred others do.
Real clients use e=65537 and at most 4096 bits (Go's crypto/rsa refuses exponents over 31
bits too)."""

from __future__ import annotations

import binascii

MIN_RSA_BITS = 2048
MAX_RSA_BITS = 4096
MAX_RSA_EXPONENT_BITS = 32


def refusal(n: int, e: int) -> str | None:
    """Why an RSA public key (modulus `n`, exponent `e`) is refused, or None."""
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
        return f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits"
    if e.bit_length() > MAX_RSA_EXPONENT_BITS:
        return f"RSA public exponents must have at most {MAX_RSA_EXPONENT_BITS} bits"
    return None


def jwk_refusal(jwk: dict) -> str | None:
    """`refusal` for a JWK of kty RSA (its members base64url, RFC 7518 §6.3.1); None for any
    other key, whose size is fixed by its curve."""
    if jwk.get("kty") != "RSA":
        return None
    try:
        n, e = (int.from_bytes(_b64url(jwk.get(name)), "big") for name in ("n", "e"))
    except (ValueError, TypeError):  # not a key at all: refused where it is read
        return None
    return refusal(n, e)


def _b64url(value) -> bytes:
    if not isinstance(value, str):
        raise TypeError("not a string")
    return binascii.a2b_base64(value.encode("ascii").replace(b"-", b"+").replace(b"_", b"/")
                               + b"=" * (-len(value) % 4))
