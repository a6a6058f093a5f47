"""Token (RFC 6749 §3.2), revocation (RFC 7009) and introspection (RFC 7662) endpoints."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import Blueprint, current_app, request

from ..oauth import fast_code, fast_token
from ..oauth.fast_refresh import refresh_token as fast_refresh_token
from ..oauth.dpop import current_nonce, token_endpoint_response
from ..observability import metrics

bp = Blueprint("token", __name__)


def _server():
    return current_app.extensions["idp.oauth"]


# RFC 8707 §2: `resource` may be given several times; RFC 6749 §3.2: nothing else may.
MULTI_VALUED = frozenset(("resource",))


@bp.post("/token")
def token():
    response = fast_token.client_credentials(request)
    response = fast_refresh_token(request) if response is None else response
    response = fast_code.exchange(request) if response is None else response
    if response is None:
        repeated = next((name for name, values in request.form.lists()
                         if len(values) > 1 and name not in MULTI_VALUED), None)
        if repeated is not None:
            response = _server().handle_error_response(None, InvalidRequestError(f"{repeated} repeated"))
            response.headers["DPoP-Nonce"] = current_nonce()
        else:
            response = token_endpoint_response(_server())
    else:
        response.headers["DPoP-Nonce"] = current_nonce()  # as every token endpoint answer has (RFC 9449 §8)
    metrics.token_grant(request.form.get("grant_type"), response)
    return response


@bp.post("/revoke")
def revoke():
    return _server().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect():
    return _server().create_endpoint_response("introspection")


@bp.post("/device_authorization")
def device_authorization():
    return _server().create_endpoint_response("device_authorization")
