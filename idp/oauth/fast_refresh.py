"""The refresh_token grant's success path without Authlib's general machinery.

A product keeps its people signed in by refreshing their tokens, so this grant is the
token endpoint's second most frequent request, and Authlib's path for it (request
wrapping, trying each client authentication method in turn, hooks) cost as much CPU as
the grant's own reads and writes. As `fast_token` does for client credentials, this module
answers only the plain case, with the rules of `grants.RefreshTokenGrant` in the same order
and from the same functions (`read_refresh_token`, `refresh_token_state`, `family_person`,
`rotate_refresh_token`, `token_body`, `add_id_token`): the client authenticates with its registered method
(client_secret_basic, client_secret_post, or a public client's client_id alone), may use
the grant, and presents a live refresh token of its own, optionally asking for a narrower
scope. Everything else returns None before anything is written, and Authlib's grant answers
with the RFC 6749 §5.2 error: there is one home for every error. That includes a spent token
presented again (and a token a concurrent request rotated first): the general path finds it
spent and revokes its family, exactly once. A `resource`, or a client that requires DPoP
and sends no proof, go to the general path too.

A DPoP proof (RFC 9449) is answered here too, with `dpop`'s rules (`unspent_token_proof`,
`key_fits`, `binds_refresh_family`): it is checked after every other check, and
its `jti`, which the general path spends before any grant runs, is spent here only with
the rotation, in the same commit (`dpop.spend` in the transaction on SQLite, the marker
in `rotate_and_store`'s one statement on PostgreSQL). So declining stays possible to the
very end: a bad proof, a proof of another key than the family's, a proof replayed (its
marker found there) or a token a concurrent request rotated first all leave nothing
written and the proof unspent, and the general path checks the proof again and gives the
answer, spending it as it always did; nothing spends a proof twice, and no error has a
second home here. A public client's family that a proof would bind (`bind_refresh_family`,
once a family) goes to the general path too.
"""

from __future__ import annotations

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.util import scope_to_list

from ..store import db
from ..store.clients import ClientRecord
from ..store.driver import DriverConnection
from ..store.own_connection import OwnConnection
from . import dpop, resources
from .grants import (
    LIVE,
    add_id_token,
    family_person,
    read_refresh_token,
    refresh_token_state,
    rotate_and_store,
    rotate_refresh_token,
    store_refresh_token,
    token_body,
)
from .fast_token import plain_grant_client, unspent_proof

GRANT_TYPE = "refresh_token"
PARAMETERS = frozenset(("grant_type", "refresh_token", "scope"))


# This thread's connection for the refresh grant's and the code exchange's statements.
OWN = OwnConnection(lambda: db.engine)


class Committed(Exception):
    """A fault once the rotation may have been committed: the presented token may be spent,
    so the general path must not answer (it would find the token spent and revoke its
    family). The caller answers server_error. `client_id`: the client that presented it."""

    def __init__(self, client_id: str):
        super().__init__(client_id)
        self.client_id = client_id


def grant(form: dict, authorization: str | None, proof: str | None = None) -> tuple[ClientRecord, dict] | None:
    """(the client, the token response) of a plain refresh request (its form, each
    parameter once, its Authorization header and its DPoP header `proof`), the presented
    token rotated, the proof spent, committed; None, with nothing written and the proof
    unspent, when the general path must answer. Raises `Committed` for a fault from the
    commit on; before it, whatever raised left nothing written."""
    client = plain_grant_client(form, authorization, GRANT_TYPE, PARAMETERS, with_proof=proof is not None)
    if client is None:
        return None
    value = form.get("refresh_token")
    if not value:
        return None
    # The thread's own connection at the driver level rather than the session's: the
    # session's bookkeeping, SQLAlchemy's execution machinery and the pool's checkout and
    # checkin cost more CPU than the statements.
    with DriverConnection(OWN) as connection:
        body = _rotate(connection, client, value, form.get("scope"), proof)
    return (client, body) if body is not None else None


def _rotate(connection, client, value: str, scope: str | None, proof: str | None) -> dict | None:
    """The new tokens, with the presented one rotated, the new refresh token stored and the
    proof spent (committed); None, with nothing written, when the general path must answer."""
    token, family, person = read_refresh_token(connection, value)
    if refresh_token_state(token, family) != LIVE or not token.check_client(client):
        return None  # a spent token is revoked with its family by the general path
    if scope:
        granted = set(scope_to_list(token.get_scope()) or ())
        if not granted or not granted.issuperset(scope_to_list(scope)):
            return None
    else:
        scope = token.get_scope()
    person = family_person(family, person)
    if person is None:
        return None
    try:
        audience = resources.token_audience(client, None, family.resource, from_grant=True)
    except OAuth2Error:
        return None
    fit, unspent = unspent_proof(proof)  # checked last; its jti is spent only with the rotation, below
    if not fit:
        return None  # refused by dpop.token_endpoint_response
    jkt = unspent.jkt if unspent else None
    if not dpop.key_fits(family, jkt) or dpop.binds_refresh_family(family, client, jkt):
        return None  # another key or none, refused; or a public client's family to bind, once
    body = token_body(client, person, scope, family, audience=audience, jkt=jkt, include_refresh_token=True)
    add_id_token(body, client, person, family)
    if connection.autocommits_alone:  # PostgreSQL: one statement, its own transaction
        try:
            rotated = rotate_and_store(connection, token, body["refresh_token"], family, client.client_id, unspent)
        except Exception as exc:  # committed or not, nobody can tell: never the general path
            raise Committed(client.client_id) from exc
        return body if rotated else None  # not rotated: a concurrent request spent it first, or the proof was
    if not rotate_refresh_token(connection, token):
        return None  # a concurrent request spent it first (rolled back on close): the general path finds it spent
    if unspent is not None and not dpop.spend(unspent, connection):
        return None  # a replayed proof (rolled back on close): the general path refuses it
    store_refresh_token(body["refresh_token"], family, client.client_id, connection)
    try:
        connection.commit()
    except Exception as exc:  # committed or not, nobody can tell: never the general path
        raise Committed(client.client_id) from exc
    return body
