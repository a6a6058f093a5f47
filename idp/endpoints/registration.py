"""Dynamic client registration (RFC 7591) and client configuration (RFC 7592).

`IDP_REGISTRATION`: `token` needs an initial access token, `open` lets anyone
register (never first-party), `off` turns the endpoint off.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from .. import audit
from ..clients import ClientMetadataError, create_client, needs_secret, update_client
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
    try:
        update_client(client, meta)
    except ClientMetadataError as err:
        return _error(err.error, err.description)
    audit.record("app.updated", None, client_id=client.client_id, via=VIA)
    return _registration_response(client, None, _bearer(), 200)
