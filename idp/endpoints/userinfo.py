"""UserInfo (OpenID Connect Core §5.3): claims by scope, for a bearer access token (RFC 6750)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from ..oauth.claims import user_claims
from ..oauth.tokens import verify_access_token
from ..store import User, db

bp = Blueprint("userinfo", __name__)


def _bearer_error(error: str | None, status: int, description: str | None = None):
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


def _presented_token() -> tuple[str | None, str | None]:
    """The bearer token from the header or (POST) the form body, never both (RFC 6750 §2)."""
    header = request.headers.get("Authorization", "")
    form_token = request.form.get("access_token") if request.method == "POST" else None
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None, "invalid_request"
        if form_token:
            return None, "invalid_request"
        return value.strip(), None
    if form_token:
        return form_token, None
    return None, None


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo():
    token, problem = _presented_token()
    if problem:
        return _bearer_error(problem, 400, "send the access token once, as a Bearer token")
    if token is None:
        return _bearer_error(None, 401)
    claims = verify_access_token(token)
    if claims is None:
        return _bearer_error("invalid_token", 401, "the access token is invalid, expired or revoked")
    scopes = claims.get("scope", "").split()
    if "openid" not in scopes:
        return _bearer_error("insufficient_scope", 403, "the openid scope is required")
    user = db.session.get(User, claims["sub"])
    if user is None or user.disabled:
        return _bearer_error("invalid_token", 401, "the account no longer exists")
    resp = jsonify(user_claims(user, claims["scope"]))
    resp.headers["Cache-Control"] = "no-store"
    return resp
