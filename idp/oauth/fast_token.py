"""The client_credentials grant's success path without Authlib's general machinery.

A service asking for a token with its id and secret is the token endpoint's most frequent
request, and Authlib's path for it (request wrapping, trying each grant and each client
authentication method in turn) cost more CPU than the work itself. This module answers
only the plain case, with the same checks in the same order as that path: the client
authenticates with its registered method and secret, may use the grant, and asks only for
scopes registered for it; a DPoP proof, when sent, is checked by `dpop.verify_proof` last,
after every check without a side effect (its `jti` is spent only when the proof is good,
so nothing can fail after it). Everything else (another authentication method, a wrong
secret, a bad proof, a `resource`, a repeated parameter, a client that may not) returns
None and goes to Authlib's grant, which gives the answers RFC 6749 §5.2 and RFC 9449 name:
there is one home for every error.
"""

from __future__ import annotations

import json

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Request, Response

from . import dpop, tokens
from .server import lookup_client

_PLAIN = frozenset(("grant_type", "scope"))
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


def client_credentials(request: Request) -> Response | None:
    """The token response, or None when the general path must answer."""
    if request.mimetype != "application/x-www-form-urlencoded":
        return None
    form = request.form
    if form.get("grant_type") != "client_credentials" or not _PLAIN.issuperset(form.keys()):
        return None
    if any(len(form.getlist(name)) > 1 for name in form):
        return None
    client_id, secret = extract_basic_authorization(request.headers)
    if not client_id or not secret:
        return None
    client = lookup_client(client_id) if len(client_id) <= 64 else None
    if client is None or not client.check_endpoint_auth_method("client_secret_basic", "token"):
        return None
    if not client.check_client_secret(secret) or not client.check_grant_type("client_credentials"):
        return None
    scope = form.get("scope") or ""
    if not set(scope.split()) <= set(client.scope.split()):
        return None
    jkt = None
    if "DPoP" in request.headers:
        try:
            value = dpop.presented_proof()
            jkt = dpop.verify_proof(value, method=request.method, url=dpop.endpoint_url(), nonce="required").jkt
        except OAuth2Error:
            return None  # the general path checks the proof again and answers (the jti was not spent)
    elif client.require_dpop:
        return None
    access_token, ttl = tokens.issue_access_token(client, None, scope, None, jkt=jkt)
    body = {"token_type": "DPoP" if jkt else "Bearer", "access_token": access_token, "expires_in": ttl}
    if scope:
        body["scope"] = scope
    return Response(json.dumps(body), status=200, headers=HEADERS)
