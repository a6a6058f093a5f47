"""Dynamic client registration (RFC 7591) and client configuration (RFC 7592).

`IDP_REGISTRATION`: `token` needs an initial access token, `open` lets anyone
register (never first-party), `off` turns the endpoint off.

The registration access token manages a client's metadata but does not stand in for its
credentials: an update that moves a client off its secret sends the current
`client_secret`, and one that changes a private_key_jwt client's `jwks`, `jwks_uri` or
method sends `client_assertion_type` and `client_assertion`, a JWT signed by one of its
current keys (key rotation: the new keys, proven with the old).
"""

from __future__ import annotations

import hmac

from authlib.oauth2.rfc6749 import InvalidClientError
from flask import Blueprint, Response, current_app, jsonify, request

from .. import audit
from ..clients import ClientMetadataError, create_client, needs_secret, update_client
from ..oauth.clients import PrivateKeyJWT
from ..ratelimit import refused_from_address
from ..store import Client, RegistrationToken, db, digest, new_secret, utcnow

bp = Blueprint("registration", __name__)
VIA = "dynamic registration"  # an audit event's `via`: not the portal, not the CLI


def _settings():
    return current_app.extensions["idp.settings"]


def _error(error: str, description: str, status: int = 400, bearer: bool = False):
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    if bearer:
        resp.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return resp


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _initial_token_ok() -> bool:
    token = _bearer()
    if token is None:
        return False
    row = db.session.get(RegistrationToken, digest(token))
    return row is not None and (row.expires_at is None or row.expires_at > utcnow())


def _body() -> dict | None:
    if not request.is_json:
        return None
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes (silent covers ValueError only)
        return None
    return data if isinstance(data, dict) else None


def _registration_response(client: Client, secret: str | None, reg_token: str | None, status: int):
    data = client.to_metadata()
    if secret:
        data["client_secret"] = secret
        data["client_secret_expires_at"] = 0
    if reg_token:
        data["registration_access_token"] = reg_token
    data["registration_client_uri"] = f"{_settings().issuer}/register/{client.client_id}"
    resp = jsonify(data)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/register")
def register():
    mode = _settings().registration
    if mode == "off":
        return _error("access_denied", "dynamic client registration is disabled", 403)
    if mode == "token" and not _initial_token_ok():
        return _error("invalid_token", "a valid initial access token is required", 401, bearer=True)
    # Anyone may register: one address must not fill the clients table. (An initial access
    # token is the operator's to hand out, and its holder's registrations are theirs to bound.)
    if mode == "open" and (refused := refused_from_address("register:ip", "registrations")):
        return refused
    meta = _body()
    if meta is None:
        return _error("invalid_client_metadata", "send the client metadata as a JSON object")
    try:
        client, secret = create_client(meta, first_party=False)
    except ClientMetadataError as err:
        return _error(err.error, err.description)
    reg_token = new_secret(32)
    client.registration_token_hash = digest(reg_token)
    # In the server's audit trail (and log) as the portal's changes are; no person made it.
    audit.record("app.created", None, commit=False, client_id=client.client_id, via=VIA)
    db.session.commit()
    return _registration_response(client, secret, reg_token, 201)


def _configured_client(client_id: str) -> Client | None:
    """The client whose registration access token was presented (RFC 7592 §2)."""
    token = _bearer()
    if token is None or "\x00" in client_id:  # PostgreSQL text holds no NUL: no client has one
        return None
    client = db.session.get(Client, client_id[:64])
    if client is None or not client.registration_token_hash:
        return None
    if not hmac.compare_digest(digest(token), client.registration_token_hash):
        return None
    return client


def _changes_keys(client: Client, meta: dict, method: str) -> bool:
    """Whether an update changes how the client proves who it is: its method or its keys
    (compared as sent: `update_client` stores them so)."""
    return (method != client.token_endpoint_auth_method or meta.get("jwks") != client.jwks
            or meta.get("jwks_uri") != (client.metadata_extra or {}).get("jwks_uri"))


def _key_possession_refusal(client: Client, meta: dict) -> str | None:
    """Why the update's `client_assertion` is no proof of one of the client's current keys
    (RFC 7523, as at /token, for the issuer or this registration client URI); None when it
    is one. Neither field is client metadata: `update_client` stores neither."""
    assertion, kind = meta.get("client_assertion"), meta.get("client_assertion_type")
    if kind != PrivateKeyJWT.CLIENT_ASSERTION_TYPE or not isinstance(assertion, str) or not assertion:
        return ("send a client_assertion (client_assertion_type jwt-bearer) signed by one of the client's "
                "current keys to change its jwks, jwks_uri or token_endpoint_auth_method")
    try:
        PrivateKeyJWT(f"/register/{client.client_id}").verify_for(client, assertion)
    except InvalidClientError as err:
        return f"client_assertion refused: {err.description}"
    return None


@bp.route("/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def configure(client_id: str):
    if _settings().registration == "off":
        return _error("access_denied", "dynamic client registration is disabled", 403)
    client = _configured_client(client_id)
    if client is None:
        return _error("invalid_token", "the registration access token is invalid", 401, bearer=True)
    # RFC 7592 §3: a read or update answers with the registration access token too; only its
    # hash is stored, so it is the one just presented (not rotated).
    if request.method == "GET":
        return _registration_response(client, None, _bearer(), 200)
    if request.method == "DELETE":
        audit.record("app.deleted", None, commit=False, client_id=client.client_id, via=VIA)
        db.session.delete(client)
        db.session.commit()
        return Response(status=204)
    meta = _body()
    if meta is None:
        return _error("invalid_client_metadata", "send the client metadata as a JSON object")
    if meta.get("client_id") not in (None, client.client_id):
        return _error("invalid_client_metadata", "client_id does not match")
    secret = meta.get("client_secret")
    if secret is not None and not client.check_client_secret(str(secret)):
        return _error("invalid_client_metadata", "client_secret does not match")
    # The registration access token manages the client; it does not stand in for its secret.
    # Moving off the secret (to none, or to keys the caller brings) without it would let
    # whoever holds the token alone redeem the client's codes.
    method = meta.get("token_endpoint_auth_method") or "client_secret_basic"
    if needs_secret(client.token_endpoint_auth_method) and not needs_secret(method) and secret is None:
        return _error("invalid_client_metadata", "send the current client_secret to stop using it")
    # The same for a client's keys: the token alone would let its holder register keys of
    # its own (or none), and redeem codes without the client's private key.
    if client.token_endpoint_auth_method == "private_key_jwt" and _changes_keys(client, meta, method):
        refusal = _key_possession_refusal(client, meta)
        if refusal:
            return _error("invalid_client_metadata", refusal)
    try:
        update_client(client, meta)
    except ClientMetadataError as err:
        return _error(err.error, err.description)
    audit.record("app.updated", None, client_id=client.client_id, via=VIA)
    return _registration_response(client, None, _bearer(), 200)
