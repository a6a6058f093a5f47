"""Passkeys (WebAuthn, via the `webauthn` library): a second factor, and passwordless sign-in.

The relying party is the issuer: its host is the RP ID and its origin the only one
accepted. Each ceremony's challenge lives in the browser's signed flow cookie for
five minutes and is spent once (remembered in the database until it would expire),
so a captured response cannot be played again.
"""

from __future__ import annotations

import json
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, session
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from ..single_use import claim
from ..store import Passkey, User, db, utcnow

# `webauthn` (with pyasn1-modules and pyOpenSSL) is imported by the ceremonies below, not
# here: every page asking "has this person a passkey?" imports this module, and a worker
# that never runs a ceremony is spared its import time and memory (issue 14).

CHALLENGE_TTL = 300
# WebAuthn allows credential ids of up to 1023 bytes (§7.1 step 25); the column holds 700
# base64url characters, which is 525 bytes: a longer one is refused, not truncated.
MAX_CREDENTIAL_ID = 525
RP_NAME = "myaccount"


class PasskeyError(Exception):
    """The ceremony failed; the message is for the log, the person sees a generic one."""


def _issuer_parts():
    parts = urlsplit(current_app.extensions["idp.settings"].issuer)
    return parts.hostname, f"{parts.scheme}://{parts.netloc}"


def user_passkeys(user: User) -> list[Passkey]:
    return list(db.session.execute(
        select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at)).scalars())


def has_passkey(user: User) -> bool:
    return db.session.execute(select(Passkey.id).where(Passkey.user_id == user.id).limit(1)).first() is not None


def _remember_challenge(kind: str, challenge: bytes, user_id: str | None) -> None:
    from webauthn.helpers import bytes_to_base64url

    session[f"webauthn_{kind}"] = {"challenge": bytes_to_base64url(challenge), "user": user_id,
                                   "at": int(time.time())}


def _take_challenge(kind: str) -> dict:
    state = session.pop(f"webauthn_{kind}", None)
    if not state or time.time() - state.get("at", 0) > CHALLENGE_TTL:
        raise PasskeyError("no current challenge")
    return state


def _spend(challenge_b64: str) -> None:
    """A challenge answers one ceremony only, across every process."""
    if not claim("webauthn", challenge_b64, utcnow() + timedelta(seconds=CHALLENGE_TTL)):
        raise PasskeyError("challenge already used")


def registration_options(user: User) -> str:
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    rp_id, _ = _issuer_parts()
    challenge = secrets.token_bytes(32)
    options = generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_name=user.email, user_id=user.id.encode(),
        user_display_name=user.name or user.email, challenge=challenge,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
                             for p in user_passkeys(user)],
    )
    _remember_challenge("register", challenge, user.id)
    return options_to_json(options)


def finish_registration(user: User, credential: dict, name: str | None = None) -> Passkey:
    """The verified new passkey, written but not committed: the caller commits it with its
    notice (notices.record)."""
    from webauthn import verify_registration_response
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
    from webauthn.helpers.exceptions import WebAuthnException

    if name is not None and not isinstance(name, str):
        raise PasskeyError("name is not a string")
    name = name.replace("\x00", "") if name else None  # PostgreSQL text refuses NUL
    state = _take_challenge("register")
    if state["user"] != user.id:
        raise PasskeyError("challenge of another account")
    rp_id, origin = _issuer_parts()
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=base64url_to_bytes(state["challenge"]),
            expected_rp_id=rp_id, expected_origin=origin)
    except (WebAuthnException, ValueError, KeyError, TypeError) as err:
        raise PasskeyError(f"registration refused: {err}") from None
    if len(verified.credential_id) > MAX_CREDENTIAL_ID:
        raise PasskeyError("credential id too long")
    _spend(state["challenge"])
    # (the library also takes the credential as a JSON string: then no hints are kept)
    transports = credential.get("response", {}).get("transports") if isinstance(credential, dict) else None
    # Hints for the browser only (WebAuthn §5.8.4): keep well-formed names, drop anything else.
    transports = [t for t in transports if isinstance(t, str) and 0 < len(t) <= 32 and t.isascii()
                  and t.isprintable()] if isinstance(transports, list) else []
    row = Passkey(user_id=user.id, credential_id=bytes_to_base64url(verified.credential_id),
                  public_key=verified.credential_public_key, sign_count=verified.sign_count,
                  transports=transports[:5], name=(name or "Passkey")[:100])
    db.session.add(row)
    try:
        db.session.flush()  # a duplicate credential id is refused here, before the notice is written
    except IntegrityError:
        db.session.rollback()
        raise PasskeyError("this passkey is already registered") from None
    return row


def authentication_options(user: User | None) -> str:
    """Options for a sign-in (`user` None: any discoverable passkey) or a second factor."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers import base64url_to_bytes
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor, UserVerificationRequirement

    rp_id, _ = _issuer_parts()
    challenge = secrets.token_bytes(32)
    allow = [] if user is None else [PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
                                     for p in user_passkeys(user)]
    options = generate_authentication_options(rp_id=rp_id, challenge=challenge, allow_credentials=allow,
                                              user_verification=UserVerificationRequirement.PREFERRED)
    _remember_challenge("authenticate", challenge, user.id if user else None)
    return options_to_json(options)


def finish_authentication(credential: dict) -> tuple[User, bool]:
    """(the account, whether the authenticator verified the person: PIN or biometrics)."""
    from webauthn import verify_authentication_response
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
    from webauthn.helpers.exceptions import WebAuthnException

    state = _take_challenge("authenticate")
    try:
        credential_id = bytes_to_base64url(base64url_to_bytes(credential.get("rawId") or credential["id"]))
        user_handle = credential.get("response", {}).get("userHandle")
        # Decoded here, before the lookup: a handle that is not base64url is a malformed answer.
        if user_handle is not None and not isinstance(user_handle, str):
            raise TypeError("userHandle is not a string")
        user_handle = base64url_to_bytes(user_handle) if user_handle else None
    except (AttributeError, KeyError, TypeError, ValueError):
        raise PasskeyError("malformed credential") from None
    if state["user"] is None and not user_handle:
        # WebAuthn §7.2 step 6: a sign-in that named no account must be told by the
        # authenticator whose key it is (a discoverable credential always carries it).
        raise PasskeyError("user handle missing")
    row = db.session.execute(select(Passkey).where(Passkey.credential_id == credential_id)).scalar_one_or_none()
    if row is None:
        raise PasskeyError("unknown passkey")
    # The library checks the signature, not whose key it is: that is ours to check.
    if state["user"] is not None and row.user_id != state["user"]:
        raise PasskeyError("passkey of another account")
    if user_handle and user_handle != row.user_id.encode():
        raise PasskeyError("user handle does not match the passkey")
    rp_id, origin = _issuer_parts()
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=base64url_to_bytes(state["challenge"]),
            expected_rp_id=rp_id, expected_origin=origin, credential_public_key=row.public_key,
            credential_current_sign_count=row.sign_count)
    except (WebAuthnException, ValueError, KeyError, TypeError) as err:
        raise PasskeyError(f"authentication refused: {err}") from None
    _spend(state["challenge"])
    user = db.session.get(User, row.user_id)
    if user is None or user.disabled:
        raise PasskeyError("account unavailable")
    row.sign_count = verified.new_sign_count
    row.last_used_at = utcnow()
    db.session.commit()
    return user, bool(verified.user_verified)


def remove(user: User, passkey_id: str) -> bool:
    """True when `user`'s passkey is removed; the caller commits (notices.record)."""
    row = db.session.get(Passkey, passkey_id[:32])
    if row is None or row.user_id != user.id:
        return False
    db.session.delete(row)
    from . import has_second_factor
    from .devices import revoke_all

    if not has_second_factor(user):  # the last factor: trust earned with it must not skip the next
        revoke_all(user)
    return True


def parse_body(raw: bytes) -> dict:
    try:
        data = json.loads(raw or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        raise PasskeyError("body is not JSON") from None
    if not isinstance(data, dict):
        raise PasskeyError("body is not a JSON object")
    return data
