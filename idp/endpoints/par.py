"""Pushed authorization requests (RFC 9126): the client posts its request, gets a request_uri.

The pushed request goes through the same checks as one sent to /authorize, and
is kept as a `PendingAuthorization` for 60 seconds, usable once.
"""

from __future__ import annotations

from datetime import timedelta

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error
from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import update

from ..oauth import dpop
from ..oauth.authorization import StoredAuthorizationRequest, duplicated_parameter, request_params, run_checks
from ..oauth.grants import TOKEN_AUTH_METHODS
from ..oauth.request_objects import authorization_parameters
from ..oauth.resources import check_authorization_resources
from ..ratelimit import refused_from_address
from ..store import PendingAuthorization, db, utcnow

bp = Blueprint("par", __name__)

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
PUSHED_TTL = 60
PUSHED = "pushed"
# Client authentication travels in the same body; it is not part of the request kept.
CLIENT_AUTH_PARAMS = {"client_secret", "client_assertion", "client_assertion_type"}


def _error(error: OAuth2Error):
    resp = jsonify(error=error.error, error_description=error.description or "")
    resp.status_code = error.status_code if error.error == "invalid_client" else 400
    resp.headers["Cache-Control"] = "no-store"
    for name, value in error.get_headers() if error.error == "invalid_client" else []:
        if name.lower() == "www-authenticate":
            resp.headers[name] = value
    return resp


@bp.post("/par")
def pushed_authorization_request():
    server = current_app.extensions["idp.oauth"]
    try:
        client = server.authenticate_client(server.create_oauth2_request(None), TOKEN_AUTH_METHODS, "token")
        duplicate = duplicated_parameter(request.form)
        if duplicate:
            raise InvalidRequestError(f"{duplicate} repeated")
        params = request_params(request.form, skip=CLIENT_AUTH_PARAMS)
        if "request_uri" in params:
            raise InvalidRequestError("request_uri cannot be pushed")
        params.setdefault("client_id", client.client_id)  # another one was refused (authenticate_client)
        params = authorization_parameters(params, client)  # RFC 9126 §3: a request object may be pushed
        dpop.bind_pushed_request(params)
        # prompt=none cannot be judged before a browser shows up; its syntax is checked below.
        shape = {k: v for k, v in params.items() if k != "prompt"}
        server.get_consent_grant(StoredAuthorizationRequest(shape, request.url), end_user=None)
        run_checks(params)
        check_authorization_resources(params, client)
    except OAuth2Error as err:
        return _error(err)
    # Counted once the request is known good (a refused one stores nothing).
    if client.token_endpoint_auth_method == "none" and (
            refused := refused_from_address("public-request:ip", "pushed requests")):
        return refused
    row = PendingAuthorization(client_id=client.client_id, params=params, note=PUSHED,
                               expires_at=utcnow() + timedelta(seconds=PUSHED_TTL))
    db.session.add(row)
    db.session.commit()
    resp = jsonify(request_uri=REQUEST_URI_PREFIX + row.id, expires_in=PUSHED_TTL)
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp


def take_pushed_request(request_uri: str, client_id: str | None) -> PendingAuthorization | None:
    """The pushed request named by `request_uri` for `client_id`, claimed for this one use."""
    if not request_uri.startswith(REQUEST_URI_PREFIX) or not client_id:
        return None
    ident = request_uri[len(REQUEST_URI_PREFIX):]
    if len(ident) != 32:  # as /par made it: nothing before, nothing after
        return None
    row = db.session.get(PendingAuthorization, ident)
    if row is None or row.note != PUSHED or row.client_id != client_id or row.expires_at <= utcnow():
        return None
    # Claimed atomically: of two browsers racing with one request_uri, one gets it. From
    # here it is an ordinary pending request, which the caller binds to its browser.
    claimed = db.session.execute(
        update(PendingAuthorization).where(PendingAuthorization.id == row.id, PendingAuthorization.note == PUSHED)
        .values(note=None).execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    if claimed != 1:
        return None
    row.note = None
    return row
