"""A software WebAuthn authenticator for tests: the browser (client) and a platform authenticator in one object.

It produces real ceremonies: a fresh P-256 (ES256) key per credential, a COSE public key in the attested
credential data, and ECDSA-SHA256 signatures over ``authenticatorData || sha256(clientDataJSON)``. It takes the
options exactly as the server sends them to the page (the JSON of ``webauthn.options_to_json(...)``, as a dict or
a string) and returns what the page posts back (``PublicKeyCredential.toJSON()``), which
``webauthn.verify_registration_response`` / ``verify_authentication_response`` accept as a dict or JSON string.

Like a browser, it refuses origins and RP IDs that browsers refuse (it raises ``SecurityError``): per the
WebAuthn spec an RP ID must be a valid *domain* that is the origin's host or a registrable suffix of it, so an
origin such as ``http://127.0.0.1:5000`` cannot use WebAuthn at all; Chrome, Firefox and Safari all reject it.
Use ``http://localhost:PORT`` with RP ID ``localhost``. ``allow_ip_origin=True`` turns this check off to mimic a
non-conforming client; tests using it prove nothing about real browsers.

Errors are named after the DOMExceptions a browser would raise and subclass the built-in types the tests catch:
``SecurityError``, ``NotSupportedError``, ``InvalidStateError`` and ``DataError`` are ``ValueError``s;
``NotAllowedError`` (no usable credential / authenticator) is a ``LookupError``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "Credential",
    "DataError",
    "InvalidStateError",
    "NotAllowedError",
    "NotSupportedError",
    "SecurityError",
    "SoftwareAuthenticator",
    "b64url_decode",
    "b64url_encode",
]

ES256 = -7
FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
AAGUID = bytes(16)

EVIL_ORIGIN = "https://evil.example"
EVIL_RP_ID = "evil.example"

CREATE_TAMPERS = frozenset({"origin", "challenge", "rp", "uv", "up"})
GET_TAMPERS = frozenset({"signature", "origin", "challenge", "counter", "rp", "uv", "up"})


class SecurityError(ValueError):
    """The origin may not use WebAuthn, or the RP ID is not valid for it (DOMException SecurityError)."""


class NotSupportedError(ValueError):
    """No acceptable public-key algorithm (the authenticator only does ES256, COSE -7)."""


class InvalidStateError(ValueError):
    """The authenticator already holds one of ``excludeCredentials``."""


class DataError(ValueError):
    """Malformed options, e.g. a user.id that is empty or longer than 64 bytes."""


class NotAllowedError(LookupError):
    """No credential (or no authenticator able to do what was required) for this ceremony."""


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as WebAuthn JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(data: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


@dataclass
class Credential:
    """A credential held by the authenticator (a discoverable one: it remembers the user handle)."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0
    user_name: str = ""

    @property
    def public_key_cose(self) -> bytes:
        """The COSE_Key (CBOR) of the public key, byte for byte what registration puts in the authData."""
        return _cose_key(self.private_key.public_key())


def _cose_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public_key.public_numbers()
    # Insertion order 1, 3, -1, -2, -3 is the CTAP2 canonical order of these keys.
    return cbor2.dumps({1: 2, 3: ES256, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


def _as_dict(options: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(options, str):
        options = json.loads(options)
    if not isinstance(options, dict):
        raise TypeError("options must be a dict or a JSON object string")
    return options


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    # Browsers serialise clientDataJSON compactly, in this key order.
    return json.dumps(
        {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}, separators=(",", ":")
    ).encode()


def _other_challenge(challenge: str) -> str:
    while True:
        other = b64url_encode(os.urandom(32))
        if other != challenge:
            return other


class SoftwareAuthenticator:
    """A browser + platform authenticator in memory.

    ``create(options)`` answers ``navigator.credentials.create({publicKey: options})``;
    ``get(options)`` answers ``navigator.credentials.get({publicKey: options})``.

    ``tamper`` (negative tests) makes the response wrong in one way, everything else staying valid:
      "signature"  flip a bit of the assertion signature (get only)
      "origin"     clientDataJSON.origin = https://evil.example
      "challenge"  clientDataJSON.challenge = another random challenge
      "counter"    do not increment the sign counter: reuse the previous value, like a cloned authenticator
                   (get only; note that 0 then 0 is accepted by verifiers: a counter of 0 means "no counter")
      "rp"         rpIdHash = sha256("evil.example")
      "uv"         clear the UV flag (even if user verification was required)
      "up"         clear the UP flag
    """

    def __init__(
        self,
        origin: str,
        user_verification: bool = True,
        *,
        backup_eligible: bool = False,
        allow_ip_origin: bool = False,
    ) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) origin: {origin!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"an origin is scheme://host[:port] only: {origin!r}")
        self.origin = f"{parts.scheme}://{parts.netloc.lower()}"
        self.host = parts.hostname.lower()
        self.user_verification = user_verification
        self.backup_eligible = backup_eligible
        self.allow_ip_origin = allow_ip_origin
        self.credentials: list[Credential] = []

    # -- the client (browser) side -------------------------------------------------------------------------

    def _check_origin(self) -> None:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            ip = None
        if ip is not None and not self.allow_ip_origin:
            raise SecurityError(
                f"{self.origin}: an IP address is not a valid domain; browsers refuse WebAuthn here "
                "(use http://localhost:PORT and RP ID 'localhost')"
            )
        loopback = ip is not None and ip.is_loopback
        trustworthy = self.host == "localhost" or self.host.endswith(".localhost") or loopback
        if self.origin.startswith("http://") and not trustworthy:
            raise SecurityError(f"{self.origin} is not a secure context (https, or http on localhost)")

    def _rp_id(self, rp_id: str | None) -> str:
        """Validate an RP ID against the origin the way a browser does; None means the origin's host."""
        self._check_origin()
        if rp_id is None:
            return self.host
        if not isinstance(rp_id, str) or not rp_id or rp_id != rp_id.lower() or rp_id.endswith("."):
            raise SecurityError(f"invalid RP ID {rp_id!r}")
        if rp_id == self.host:
            return rp_id
        try:
            ipaddress.ip_address(rp_id)
        except ValueError:
            pass
        else:
            raise SecurityError(f"RP ID {rp_id!r} is an IP address, not a domain")
        if not self.host.endswith("." + rp_id):
            raise SecurityError(f"RP ID {rp_id!r} is not a registrable suffix of {self.host!r}")
        # Approximation of the public suffix list: a single-label suffix (e.g. "com") is not registrable.
        if "." not in rp_id:
            raise SecurityError(f"RP ID {rp_id!r} is a public suffix")
        return rp_id

    def _uv_flag(self, requirement: str | None) -> int:
        if requirement == "required" and not self.user_verification:
            raise NotAllowedError("user verification is required but this authenticator cannot verify the user")
        return FLAG_UV if self.user_verification else 0

    def _flags(self, options_uv: str | None, tamper: str | None) -> int:
        flags = FLAG_UP | self._uv_flag(options_uv)
        if self.backup_eligible:
            flags |= FLAG_BE | FLAG_BS
        if tamper == "uv":
            flags &= ~FLAG_UV
        if tamper == "up":
            flags &= ~FLAG_UP
        return flags

    # -- ceremonies -----------------------------------------------------------------------------------------

    def create(self, options: dict[str, Any] | str, tamper: str | None = None) -> dict[str, Any]:
        """Registration: PublicKeyCredentialCreationOptions JSON in, RegistrationResponseJSON out."""
        if tamper is not None and tamper not in CREATE_TAMPERS:
            raise ValueError(f"unknown tamper mode for create: {tamper!r} (one of {sorted(CREATE_TAMPERS)})")
        options = _as_dict(options)
        options = options.get("publicKey", options)
        rp = options.get("rp") or {}
        rp_id = self._rp_id(rp.get("id"))
        user = options.get("user") or {}
        user_handle = b64url_decode(user.get("id", ""))
        if not 1 <= len(user_handle) <= 64:
            raise DataError("user.id must be 1 to 64 bytes")
        challenge = options["challenge"]
        if not isinstance(challenge, str):
            raise DataError("challenge must be a base64url string")
        params = options.get("pubKeyCredParams") or []
        if params and not any(p.get("type") == "public-key" and p.get("alg") == ES256 for p in params):
            raise NotSupportedError("pubKeyCredParams does not allow ES256 (-7)")
        selection = options.get("authenticatorSelection") or {}
        if selection.get("authenticatorAttachment") == "cross-platform":
            raise NotAllowedError("a cross-platform authenticator was asked for; this one is a platform authenticator")
        excluded = {b64url_decode(c["id"]) for c in options.get("excludeCredentials") or []}
        for cred in self.credentials:
            if cred.rp_id == rp_id and cred.credential_id in excluded:
                raise InvalidStateError("the authenticator already holds a credential in excludeCredentials")

        flags = self._flags(selection.get("userVerification"), tamper) | FLAG_AT
        private_key = ec.generate_private_key(ec.SECP256R1())
        credential_id = os.urandom(32)
        cose_key = _cose_key(private_key.public_key())
        hashed_rp = EVIL_RP_ID if tamper == "rp" else rp_id
        auth_data = (
            hashlib.sha256(hashed_rp.encode()).digest()
            + bytes([flags])
            + struct.pack(">I", 0)
            + AAGUID
            + struct.pack(">H", len(credential_id))
            + credential_id
            + cose_key
        )
        client_data = _client_data(
            "webauthn.create",
            _other_challenge(challenge) if tamper == "challenge" else challenge,
            EVIL_ORIGIN if tamper == "origin" else self.origin,
        )
        attestation_object = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})

        # A discoverable credential replaces one for the same RP and user handle (WebAuthn §6.3.2 step 7).
        self.credentials = [c for c in self.credentials if not (c.rp_id == rp_id and c.user_handle == user_handle)]
        self.credentials.append(
            Credential(credential_id, private_key, rp_id, user_handle, sign_count=0, user_name=user.get("name", ""))
        )
        spki = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "id": b64url_encode(credential_id),
            "rawId": b64url_encode(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url_encode(client_data),
                "attestationObject": b64url_encode(attestation_object),
                "authenticatorData": b64url_encode(auth_data),
                "publicKey": b64url_encode(spki),
                "publicKeyAlgorithm": ES256,
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        options: dict[str, Any] | str,
        tamper: str | None = None,
        *,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """Authentication: PublicKeyCredentialRequestOptions JSON in, AuthenticationResponseJSON out.

        With a non-empty ``allowCredentials`` only those credentials qualify; with an empty one (a passkey /
        usernameless login) any credential for the RP does, and the most recently created is used unless
        ``credential_id`` picks one (the account chooser). Raises ``NotAllowedError`` (a LookupError) if none.
        """
        if tamper is not None and tamper not in GET_TAMPERS:
            raise ValueError(f"unknown tamper mode for get: {tamper!r} (one of {sorted(GET_TAMPERS)})")
        options = _as_dict(options)
        options = options.get("publicKey", options)
        rp_id = self._rp_id(options.get("rpId"))
        challenge = options["challenge"]
        if not isinstance(challenge, str):
            raise DataError("challenge must be a base64url string")
        candidates = [c for c in self.credentials if c.rp_id == rp_id]
        allowed = {b64url_decode(c["id"]) for c in options.get("allowCredentials") or []}
        if allowed:
            candidates = [c for c in candidates if c.credential_id in allowed]
        if credential_id is not None:
            candidates = [c for c in candidates if c.credential_id == credential_id]
        if not candidates:
            raise NotAllowedError(f"no credential for RP ID {rp_id!r} matching the request")
        cred = candidates[-1]

        flags = self._flags(options.get("userVerification"), tamper)
        if tamper != "counter":
            cred.sign_count += 1
        hashed_rp = EVIL_RP_ID if tamper == "rp" else rp_id
        auth_data = hashlib.sha256(hashed_rp.encode()).digest() + bytes([flags]) + struct.pack(">I", cred.sign_count)
        client_data = _client_data(
            "webauthn.get",
            _other_challenge(challenge) if tamper == "challenge" else challenge,
            EVIL_ORIGIN if tamper == "origin" else self.origin,
        )
        signature = cred.private_key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        if tamper == "signature":
            # Flip the low bit of the last byte (inside s): the DER stays well-formed, the signature is wrong.
            signature = signature[:-1] + bytes([signature[-1] ^ 0x01])
        return {
            "id": b64url_encode(cred.credential_id),
            "rawId": b64url_encode(cred.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url_encode(client_data),
                "authenticatorData": b64url_encode(auth_data),
                "signature": b64url_encode(signature),
                "userHandle": b64url_encode(cred.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    # -- inspection -------------------------------------------------------------------------------------------

    def credential(self, credential_id: bytes) -> Credential:
        """The credential with this id (KeyError if the authenticator does not hold it)."""
        for cred in self.credentials:
            if cred.credential_id == credential_id:
                return cred
        raise KeyError(credential_id)

    def remove(self, credential_id: bytes) -> None:
        """Forget a credential, as when the user deletes a passkey on the device."""
        self.credentials = [c for c in self.credentials if c.credential_id != credential_id]
