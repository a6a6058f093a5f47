"""The client_credentials grant's success path without Authlib's general machinery.

A service asking for a token with its id and secret is the token endpoint's most frequent
request, and Authlib's path for it (request wrapping, trying each grant and each client
authentication method in turn) cost more CPU than the work itself. This module answers
only the plain case, with the same checks in the same order as that path: the client
authenticates with its registered method and secret, may use the grant, and asks only for
scopes registered for it; a DPoP proof, when sent, is checked (`dpop.unspent_token_proof`)
and spent (`dpop.spend`) last, after every check without a side effect (its `jti` is spent
only when the proof is good, so nothing can fail after it). Everything else (another authentication method, a wrong
secret, a bad proof, a `resource`, a repeated parameter, a client that may not) returns
None and goes to Authlib's grant, which gives the answers RFC 6749 §5.2 and RFC 9449 name:
there is one home for every error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Request, Response

from ..store.clients import ClientRecord
from . import dpop, tokens
from .server import lookup_client

_PLAIN = frozenset(("grant_type", "scope"))
_POST = frozenset(("client_id", "client_secret"))
_PUBLIC = frozenset(("client_id",))
HEADERS = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


def client_credentials(request: Request) -> Response | None:
    """The token response, or None when the general path must answer."""
    # Authlib's path reads parameters from the query string too (`request.values`)
    if request.mimetype != "application/x-www-form-urlencoded" or request.query_string:
        return None
    found = plain_request(request.form.items(multi=True), request.headers.get("Authorization"))
    if found is None:
        return None
    client, scope = found
    bound, jkt = dpop_binding(client, request.environ.get("HTTP_DPOP"), dpop.endpoint_url())
    if not bound:
        return None
    return Response(token_body(client, scope, jkt), status=200, headers=HEADERS)


def dpop_binding(client: ClientRecord, proof: str | None, url: str) -> tuple[bool, str | None]:
    """(True, the DPoP key's thumbprint or None for a Bearer token) for a request to `url`
    with the `DPoP` header `proof`, or (False, None) when the general path must answer: a
    bad proof (its jti is not spent then, so that path checks it again and gives the
    error), or none from a client that requires one. Called last: a good proof's jti is
    spent, and nothing may fail after it."""
    if proof is None:
        return not client.require_dpop, None
    checked = dpop.unspent_token_proof(proof, url)
    if checked is None or not dpop.spend(checked):  # spent before: the general path refuses it as replayed
        return False, None
    return True, checked.jkt


def unspent_proof(proof: str | None) -> tuple[bool, dpop.Unspent | None]:
    """A refresh grant's or code exchange's DPoP header, checked with its `jti` left unspent
    (the grant spends it in its own commit): (whether the plain path may go on, the proof,
    None without one). A refused proof is `dpop.token_endpoint_response`'s to answer."""
    if proof is None:
        return True, None
    unspent = dpop.unspent_token_proof(proof, dpop.token_endpoint_url())
    return unspent is not None, unspent


def plain_request(form: Iterable[tuple[str, str]], authorization: str | None) -> tuple[ClientRecord, str] | None:
    """The client and scope of a plain client_credentials request (the form's pairs and the
    Authorization header given), every check but DPoP passed; else None."""
    fields = {}
    for name, value in form:
        if name in fields:  # a repeated parameter: RFC 6749 §3.2 makes it an error
            return None
        fields[name] = value
    if fields.get("grant_type") != "client_credentials" or not _PLAIN.issuperset(fields):
        return None
    try:
        client_id, secret = extract_basic_authorization({"Authorization": authorization})
    except UnicodeError:  # not UTF-8 once decoded: security.refuse_undecodable_basic answers
        return None
    if not client_id or not secret:
        return None
    client = lookup_client(client_id) if len(client_id) <= 64 else None
    if client is None or not client.check_endpoint_auth_method("client_secret_basic", "token"):
        return None
    if not client.check_client_secret(secret) or not client.check_grant_type("client_credentials"):
        return None
    scope = fields.get("scope") or ""
    if not set(scope.split()) <= set(client.scope.split()):
        return None
    return client, scope


def plain_grant_client(form: dict, authorization: str | None, grant_type: str,
                       parameters: frozenset, *, with_proof: bool = False) -> ClientRecord | None:
    """`plain_client` for a form of `grant_type` whose client may use that grant, without a
    DPoP proof unless `with_proof` (the plain refresh grant and code exchange); else None."""
    if form.get("grant_type") != grant_type:
        return None
    client = plain_client(form, authorization, parameters)
    if client is None or (client.require_dpop and not with_proof) or not client.check_grant_type(grant_type):
        return None
    return client


def plain_client(form: dict, authorization: str | None, parameters: frozenset) -> ClientRecord | None:
    """The client as Authlib's client authentication finds it for the plain methods
    (client_secret_basic, client_secret_post, or a public client's client_id alone), from a
    form (each parameter once) whose other parameters are among the grant's `parameters`
    and its Authorization header; else None."""
    try:
        client_id, secret = extract_basic_authorization({"Authorization": authorization})
    except UnicodeError:  # not UTF-8 once decoded: security.refuse_undecodable_basic answers
        return None
    if client_id or secret:
        method = "client_secret_basic"
        if not client_id or not secret or not parameters.issuperset(form.keys()):
            return None
    elif authorization is not None:
        return None
    elif "client_secret" in form:
        method, client_id, secret = "client_secret_post", form.get("client_id"), form["client_secret"]
        if not client_id or not secret or not (parameters | _POST).issuperset(form.keys()):
            return None
    else:
        method, client_id = "none", form.get("client_id")
        if not client_id or not (parameters | _PUBLIC).issuperset(form.keys()):
            return None
    client = lookup_client(client_id) if len(client_id) <= 64 else None
    if client is None or not client.check_endpoint_auth_method(method, "token"):
        return None
    if secret is not None and not client.check_client_secret(secret):
        return None
    return client


def token_body(client: ClientRecord, scope: str, jkt: str | None) -> str:
    """The token response's JSON: a new access token for the client itself."""
    access_token, ttl = tokens.issue_access_token(client, None, scope, None, jkt=jkt)
    body = {"token_type": "DPoP" if jkt else "Bearer", "access_token": access_token, "expires_in": ttl}
    if scope:
        body["scope"] = scope
    return json.dumps(body)
