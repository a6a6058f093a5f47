"""The authorization code exchange's success path without Authlib's general machinery.

Every sign-in at a relying party ends with this request, and Authlib's path for it (request
wrapping, trying each client authentication method in turn, three extensions' hooks, a
commit for the code and another for the tokens) cost more CPU than its reads, writes and
signatures. As `fast_refresh` does for the refresh grant, this module answers only the
plain case, with the rules of `grants.AuthorizationCodeGrant` and its extensions from the
same functions (`read_code`, `redirect_uri_matches`, `check_code_verifier`, `code_expired`,
`code_person`, `consume_code`, `token_body`, `add_id_token`, `store_refresh_token`): the
client authenticates with client_secret_basic, client_secret_post or as a public client,
may use the grant, and presents a live code of its own with the redirect_uri and PKCE
verifier of its authorization request. All of that is checked before anything is written;
anything else returns None with nothing written, and Authlib's grant answers, spending the
code as it always did: there is one home for every error. That includes a used code
presented again (and a code a concurrent exchange used first): the general path finds it
used and revokes what it issued. A `resource`, or a client that requires DPoP and sends no
proof, go to the general path too.

A DPoP proof (RFC 9449) is answered here too, as `fast_refresh` answers it and with `dpop`'s
rules (`unspent_token_proof`, `key_fits`, `binds_refresh_family`, `bind_family`): the
access token gets `cnf.jkt`, a code asked for with `dpop_jkt` is exchanged only with a
proof of that key, and a public client's new refresh-token family is bound to the key. The
proof is checked after every other check, and its `jti`, which the general path spends
before any grant runs, is spent here only with the code, in the same commit. So a bad
proof, a proof of another key than the code's (or none), or a proof replayed (its marker
found there) leave nothing written, neither code nor proof spent, and the general path
checks the proof again and gives the answer as it always did: a code refused for its key
is spent there, as Authlib spends a code before its extensions' checks.

The code is spent, the proof's marker written, the family bound and the refresh token
stored in one commit (Authlib's path commits them apart); a fault from that commit on
raises `fast_refresh.Committed`: the code may be spent, so the general path must not answer.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Error

from ..store.clients import ClientRecord
from ..store.driver import DriverConnection
from . import dpop, resources
from .fast_refresh import OWN, Committed
from .fast_token import plain_grant_client, unspent_proof
from .grants import (
    add_id_token,
    check_code_verifier,
    code_expired,
    code_person,
    consume_code,
    read_code,
    redirect_uri_matches,
    store_refresh_token,
    token_body,
)

GRANT_TYPE = "authorization_code"
PARAMETERS = frozenset(("grant_type", "code", "redirect_uri", "code_verifier"))


def grant(form: dict, authorization: str | None, proof: str | None = None) -> tuple[ClientRecord, dict] | None:
    """(the client, the token response) of a plain code exchange (its form, each parameter
    once, its Authorization header and its DPoP header `proof`), the code and the proof
    spent and the refresh token stored, committed; None, with nothing written and the proof
    unspent, when the general path must answer. Raises `Committed` for a fault from the
    commit on."""
    client = plain_grant_client(form, authorization, GRANT_TYPE, PARAMETERS, with_proof=proof is not None)
    if client is None:
        return None
    value = form.get("code")
    if not value:
        return None
    with DriverConnection(OWN) as connection:
        body = _exchange(connection, client, value, form, proof,
                         public=authorization is None and "client_secret" not in form)
    return (client, body) if body is not None else None


def _exchange(connection, client: ClientRecord, value: str, form: dict, proof: str | None, *,
              public: bool) -> dict | None:
    code, family, person = read_code(connection, value)
    # the checks of AuthorizationCodeGrant.query_authorization_code and validate_token_request,
    # then its extensions' (PKCE, DPoP binding), then create_token_response's
    if code is None or code.client_id != client.client_id or code.used_at is not None or code_expired(code):
        return None  # a used code is refused, and what it issued revoked, by the general path
    if not redirect_uri_matches(code, form.get("redirect_uri")):
        return None
    try:
        check_code_verifier(code, form.get("code_verifier"), public)
    except OAuth2Error:
        return None
    if family is None or family.id != code.grant_id or family.revoked_at is not None:
        return None  # a revoked grant (sign out everywhere): the general path spends the code and refuses it
    person = code_person(code, person)
    if person is None:
        return None
    try:
        audience = resources.token_audience(client, None, family.resource, from_grant=True)
    except OAuth2Error:
        return None
    fit, unspent = unspent_proof(proof)  # checked last; its jti is spent only with the code, below
    if not fit:
        return None  # refused by dpop.token_endpoint_response
    jkt = unspent.jkt if unspent else None
    if not dpop.key_fits(code, jkt):
        return None  # another key or none: the general path spends the code and refuses it
    scope = code.get_scope()
    body = token_body(client, person, scope, family, audience=audience, jkt=jkt,
                      include_refresh_token=client.check_grant_type("refresh_token"))
    add_id_token(body, client, person, family, nonce=code.nonce)
    if not consume_code(connection, code):
        return None  # a concurrent exchange used it first (rolled back on close): the general path finds it used
    if unspent is not None and not dpop.spend(unspent, connection):
        return None  # a replayed proof (rolled back on close, the code unspent): the general path refuses it
    if "refresh_token" in body:
        if dpop.binds_refresh_family(family, client, jkt):
            dpop.bind_family(connection, family, jkt)
        store_refresh_token(body["refresh_token"], family, client.client_id, connection)
    try:
        connection.commit()
    except Exception as exc:  # committed or not, nobody can tell: never the general path
        raise Committed(client.client_id) from exc
    return body
