"""UserInfo (OpenID Connect Core §5.3): claims by scope, for a bearer access token (RFC 6750)
or a DPoP-bound one with its proof (RFC 9449 §7)."""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, current_app, jsonify, request

from ..oauth import dpop
from ..oauth.claims import user_claims
from ..oauth.tokens import verify_access_token
from ..store import User, db

bp = Blueprint("userinfo", __name__)


@bp.after_request
def _dpop_nonce(resp):
    resp.headers["DPoP-Nonce"] = dpop.current_nonce()
    return resp


def _bearer_error(error: str | None, status: int, description: str | None = None, scheme: str = "bearer"):
    """The error, challenged in the scheme the token came with (RFC 6750 §3, RFC 9449 §7.1)."""
    if scheme == "dpop" and error:
        value = dpop.challenge(OAuth2Error(description, error=error))
    else:
        value = 'Bearer realm="userinfo"'
        if error:
            value += f', error="{error}"'
            if description:
                value += f', error_description="{description}"'
    body = {"error": error or "invalid_token"}
    if description:
        body["error_description"] = description
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["WWW-Authenticate"] = value
    return resp


def _dpop_error(error: OAuth2Error):
    resp = jsonify(error=error.error, error_description=error.description)
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = dpop.challenge(error)
    return resp


def _presented_token() -> tuple[str, str | None, str | None]:
    """(scheme, token, problem): the token from the header or (POST) the form body, never
    both (RFC 6750 §2); the scheme is "bearer" or "dpop"."""
    header = request.headers.get("Authorization", "")
    form_token = request.form.get("access_token") if request.method == "POST" else None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() not in ("bearer", "dpop") or not value.strip():
            return "bearer", None, "invalid_request"
        if form_token:
            return "bearer", None, "invalid_request"
        return scheme.lower(), value.strip(), None
    if form_token:
        return "bearer", form_token, None
    return "bearer", None, None


def _for_userinfo(claims: dict) -> bool:
    """The token's audience lets this endpoint take it: the client itself (the audience
    when no resource was named), or this server. A token restricted to other resources
    (RFC 8707) must not buy their holder the person's profile (RFC 9700 §2.3)."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    issuer = current_app.extensions["idp.settings"].issuer
    return any(a in (claims.get("client_id"), issuer, f"{issuer}/userinfo") for a in audiences)


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    scheme, token, problem = _presented_token()
    if problem:
        return _bearer_error(problem, 400, "send the access token once, as a Bearer or DPoP token")
    if token is None:
        return _bearer_error(None, 401)
    claims = verify_access_token(token)
    if claims is None or not _for_userinfo(claims):
        return _bearer_error("invalid_token", 401, "the access token is invalid, expired or revoked", scheme)
    try:
        dpop.check_resource_request(scheme, token, claims)
    except OAuth2Error as error:
        return _dpop_error(error)
    scopes = claims.get("scope", "").split()
    if "openid" not in scopes:
        return _bearer_error("insufficient_scope", 403, "the openid scope is required", scheme)
    user = db.session.get(User, claims["sub"])
    if user is None or user.disabled:
        return _bearer_error("invalid_token", 401, "the account no longer exists", scheme)
    resp = jsonify(user_claims(user, claims["scope"]))
    resp.headers["Cache-Control"] = "no-store"
    return resp
