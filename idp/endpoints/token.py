"""Token (RFC 6749 §3.2), revocation (RFC 7009) and introspection (RFC 7662) endpoints."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import InvalidRequestError
from flask import Blueprint, Response, current_app, json, request

from ..oauth import fast_code, fast_refresh, fast_token
from ..oauth.authorization import named
from ..oauth.clients import sends_basic
from ..oauth.dpop import current_nonce, token_endpoint_response
from ..observability import metrics
from ..ratelimit import refused_from_address

bp = Blueprint("token", __name__)


def _server():
    return current_app.extensions["idp.oauth"]


# RFC 8707 §2: `resource` may be given several times; RFC 6749 §3.2: nothing else may.
MULTI_VALUED = frozenset(("resource",))
# What proves something goes in the body (RFC 6749 §2.3.1, §3.2; RFC 8693 §2.1; ASVS V8.3.1),
# never in the URL, which proxies and access logs keep.
CREDENTIALS = frozenset(("client_secret", "client_assertion", "code", "code_verifier", "refresh_token",
                         "device_code", "subject_token", "actor_token", "token"))


@bp.post("/token")
def token():
    response = fast_token.client_credentials(request)
    response = _plain_rotating_grant() if response is None else response
    if response is None:
        response = _refused_as_malformed()
    if response is None:
        response = token_endpoint_response(_server())  # sets its own DPoP-Nonce
    else:
        response.headers["DPoP-Nonce"] = current_nonce()  # as every token endpoint answer has (RFC 9449 §8)
    metrics.token_grant(request.form.get("grant_type"), response)
    return response


def _malformed() -> str | None:
    """Why the request is invalid_request (RFC 6749 §5.2) before any grant runs, so that
    nothing it presents is spent; None when it is not."""
    # The query string too: Authlib reads it with the body (`request.values`, query first),
    # so a parameter in both is as repeated as one given twice in the body (ASVS V5.1.1).
    repeated = next((name for name, values in request.values.lists()
                     if len(values) > 1 and name not in MULTI_VALUED), None)
    if repeated is not None:
        return f"{named(repeated)} repeated"  # a name is the client's to choose: any character
    # Authlib takes some of them (device_code, subject_token) from the query string too
    in_url = next((name for name in request.args if name in CREDENTIALS), None)
    if in_url is not None:
        return f"{in_url} must be sent in the request body, not in the URL"
    # RFC 6749 §2.3: one authentication method a request. Authlib took the first that
    # succeeded and ignored the others (a wrong client_secret beside good Basic credentials).
    basic = sends_basic(request.headers)
    if basic + ("client_secret" in request.form) + ("client_assertion" in request.form) > 1:
        return "more than one client authentication method"
    return None


# The grants whose plain case has a path without Authlib's machinery (as in front of Flask,
# endpoints/machine.py): what they present is spent once they answer.
ROTATING = {fast_refresh.GRANT_TYPE: fast_refresh, fast_code.GRANT_TYPE: fast_code}


def _plain_rotating_grant() -> Response | None:
    """A plain refresh grant or code exchange answered by its fast path; None when the
    general path must answer (nothing was written then)."""
    if request.mimetype != "application/x-www-form-urlencoded" or request.query_string:
        return None
    form = request.form
    grant = ROTATING.get(form.get("grant_type"))
    if grant is None or any(len(form.getlist(name)) > 1 for name in form):
        return None
    found = grant.grant(form.to_dict(), request.headers.get("Authorization"), request.environ.get("HTTP_DPOP"))
    if found is None:
        return None
    # Flask's JSON (sorted keys), as Authlib's answers use
    return Response(json.dumps(found[1]), status=200, headers=fast_token.HEADERS)


@bp.post("/revoke")
def revoke():
    return _refused_as_malformed() or _server().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect():
    return _refused_as_malformed() or _server().create_endpoint_response("introspection")


def _refused_as_malformed() -> Response | None:
    """RFC 7009 §2.1 and RFC 7662 §2.1 authenticate the client as the token endpoint does:
    one method a request, each parameter once."""
    problem = _malformed()
    return None if problem is None else _server().handle_error_response(None, InvalidRequestError(problem))


@bp.post("/device_authorization")
def device_authorization():
    # RFC 8628 §3.1 authenticates the client as the token endpoint does
    return _refused_as_malformed() or _public_flood() or _server().create_endpoint_response("device_authorization")


def _public_flood() -> Response | None:
    """A public client's device authorization stores a row on nobody's credentials: the 429
    when its address sent too many (`ratelimit`, public-request:ip), else None."""
    # where Authlib finds a public client's id: the query string too (`_malformed` saw it once)
    client = _server().query_client(request.values.get("client_id"))
    if client is None or client.token_endpoint_auth_method != "none":
        return None
    return refused_from_address("public-request:ip", "device authorizations")
