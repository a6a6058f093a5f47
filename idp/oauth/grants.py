"""Authlib grants with our storage hooks: authorization code, refresh token, client credentials.

Codes and refresh tokens are stored by hash and tied to a `Grant` (token family):
presenting a used code or a rotated refresh token revokes the whole family
(RFC 6749 §4.1.2, RFC 9700 §4.14).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import datetime, timedelta

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, InvalidScopeError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import CODE_VERIFIER_PATTERN
from authlib.oidc.core import OpenIDCode
from flask import current_app
from sqlalchemy import DateTime, String, Text, bindparam, delete, false, insert, select, update

from .. import sessions
from ..store import (
    AuthorizationCode,
    BrowserSession,
    CodeMethods,
    Consent,
    Grant,
    RefreshToken,
    RevokedToken,
    User,
    db,
    digest,
    new_id,
    new_secret,
    utcnow,
)
from . import dpop, online, resources, tokens
from .authorization import named

TOKEN_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]


def revoke_grant(grant_id: str) -> None:
    """Revoke a token family: its refresh tokens die, its access tokens fail checks."""
    now = utcnow()
    db.session.execute(update(Grant).where(Grant.id == grant_id, Grant.revoked_at.is_(None)).values(revoked_at=now))
    db.session.execute(update(RefreshToken).where(RefreshToken.grant_id == grant_id).values(revoked=True))
    db.session.commit()


def withdraw_consent(user_id: str, client_id: str) -> bool:
    """Take back what a person allowed a client (the account page's "Remove access"): the
    remembered consent, so the app must ask again, and every grant the app holds for the
    person, so its refresh tokens die and its access tokens fail checks. The caller commits.
    False, and nothing written, when there was no consent to take back."""
    mine = (Consent.user_id == user_id, Consent.client_id == client_id)
    if db.session.execute(delete(Consent).where(*mine)).rowcount == 0:
        return False
    revoke_families(Grant.user_id == user_id, Grant.client_id == client_id)
    return True


def revoke_families(*which) -> None:
    """Revoke every token family the conditions `which` (on Grant) select, and their refresh
    tokens; the caller commits (`revoke_grant` is the one family, committed)."""
    db.session.execute(update(Grant).where(*which, Grant.revoked_at.is_(None)).values(revoked_at=utcnow()))
    db.session.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(select(Grant.id).where(*which)),
                                                  RefreshToken.revoked.is_(False)).values(revoked=True))


@dataclass(slots=True)
class Family:
    """A `Grant` row as a token request reads it: plain values, no ORM state (a session
    `get` cost about four times as much CPU). The row is changed by statements only
    (`revoke_grant`, `dpop.bind_refresh_family`), never through this copy."""

    id: str
    client_id: str
    user_id: str
    scope: str
    sid: str | None
    auth_time: int | None
    amr: list
    acr: str | None
    dpop_jkt: str | None
    resource: list | None
    created_at: datetime
    revoked_at: datetime | None
    # Not the grant's own: when the browser session it came from (`sid`) expires, read with
    # it; None without that session's row. See `online_session_over`.
    session_expires_at: datetime | None
    # Nor this: whether that session still counts (`online.counts`), read with a refresh
    # token only; True when not read.
    session_counts: bool = True


def online_with_session(family: Family) -> bool:
    """The family was granted without offline_access, from a session whose row is there."""
    return family.session_expires_at is not None and "offline_access" not in family.scope.split()


def online_session_over(family: Family) -> bool:
    """A family granted without offline_access gives tokens only while the person's
    browser session lasts: OpenID Connect Core §11 keeps access "when the End-User is not
    present (not logged in)" for offline_access. Signing out or revoking the session
    revokes such a family (`sessions._end_online_grants`); its expiry is seen here, and so
    is a session that stopped counting without ending (`online.counts`: e.g. its org now
    requires a second factor it lacks), refused as long as it does not count. (A session
    row is deleted only with its account, whose grants go with it.)"""
    if not online_with_session(family):
        return False
    return family.session_expires_at <= utcnow() or not family.session_counts


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """A stored refresh token as the refresh grant reads it (Authlib's TokenMixin as used)."""

    token_hash: str
    grant_id: str
    client_id: str
    scope: str
    created_at: datetime
    expires_at: datetime
    rotated_at: datetime | None
    revoked: bool

    def check_client(self, client) -> bool:
        return self.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.scope


_GRANTS = Grant.__table__
_REFRESH = RefreshToken.__table__
_SESSIONS = BrowserSession.__table__
_FAMILY_COLUMNS = [_GRANTS.c[name] for name in Family.__slots__[:-2]] + [_SESSIONS.c.expires_at]
# A grant with the end of its browser session: read with an outer join wherever a Family is.
_GRANTS_AND_SESSIONS = _GRANTS.outerjoin(_SESSIONS, _SESSIONS.c.id == _GRANTS.c.sid)
_FAMILY_BY_ID = select(*_FAMILY_COLUMNS).select_from(_GRANTS_AND_SESSIONS).where(_GRANTS.c.id == bindparam("id"))
_REFRESH_COLUMNS = [_REFRESH.c[name] for name in RefreshRecord.__slots__]
_ROTATE = (
    update(_REFRESH)
    .where(_REFRESH.c.token_hash == bindparam("b_hash"), _REFRESH.c.rotated_at.is_(None))
    .values(rotated_at=bindparam("b_now"))
)
_STORE_REFRESH = insert(_REFRESH)
# PostgreSQL: _ROTATE and the successor's insert as one statement (a data-modifying CTE),
# atomic on its own: the successor is stored only if this request's UPDATE claimed the
# token, and a concurrent claim waits for the row lock and then claims nothing, as with
# the two statements. Two round trips (and BEGIN and COMMIT) fewer than those.
_CLAIMED = _ROTATE.returning(_REFRESH.c.grant_id).cte("claimed")
_ROTATE_AND_STORE = insert(_REFRESH).from_select(
    ["token_hash", "grant_id", "client_id", "scope", "created_at", "expires_at", "revoked"],
    select(bindparam("n_hash", type_=String()), _CLAIMED.c.grant_id, bindparam("n_client", type_=String()),
           bindparam("n_scope", type_=Text()), bindparam("n_created", type_=DateTime()),
           bindparam("n_expires", type_=DateTime()), false()).select_from(_CLAIMED),
)
# ... and with a DPoP proof, its jti marker (single_use) written only by the request whose
# UPDATE claimed the token: a replayed proof fails the whole statement on the marker's key,
# and a token rotated first leaves the proof unspent.
_MARKED = insert(RevokedToken.__table__).from_select(
    ["jti", "expires_at"],
    select(bindparam("m_jti", type_=String()), bindparam("m_expires", type_=DateTime())).select_from(_CLAIMED),
).cte("marked")
_ROTATE_STORE_AND_MARK = _ROTATE_AND_STORE.add_cte(_MARKED)


def family_of(oauth_request, grant_id: str) -> Family | None:
    """The token family a token request works on, read once per request."""
    family = getattr(oauth_request, "idp_family", None)
    if family is None or family.id != grant_id:
        row = db.session.connection().execute(_FAMILY_BY_ID, {"id": grant_id}).first()
        family = Family(*row) if row is not None else None
        oauth_request.idp_family = family
    return family


def rotate_and_store(connection, token: RefreshRecord, value: str, family: Family, client_id: str,
                     proof: dpop.Unspent | None = None) -> bool:
    """PostgreSQL only: `rotate_refresh_token` and `store_refresh_token` (of `value`), and
    `dpop.spend` of `proof` when given, in one statement, committed by itself on an
    autocommit connection; False, with nothing written, when a concurrent request rotated
    the token first or the proof was spent before."""
    settings = current_app.extensions["idp.settings"]
    now = utcnow()
    values = {
        "b_hash": token.token_hash, "b_now": now, "n_hash": digest(value), "n_client": client_id,
        "n_scope": family.scope, "n_created": now, "n_expires": now + timedelta(seconds=settings.refresh_token_ttl),
    }
    if proof is None:
        return connection.execute(_ROTATE_AND_STORE, alone=True, values=values).rowcount == 1
    values |= {"m_jti": dpop.marker_id(proof), "m_expires": proof.expires}
    try:
        return connection.execute(_ROTATE_STORE_AND_MARK, alone=True, values=values).rowcount == 1
    except db.engine.dialect.loaded_dbapi.IntegrityError:  # the marker was there: the statement failed whole
        return False


def store_refresh_token(value: str, family: Family, client_id: str, connection=None) -> None:
    """Keep a new refresh token of `family`, by hash (the caller commits), on `connection`
    (by default the session's)."""
    settings = current_app.extensions["idp.settings"]
    now = utcnow()
    (connection or db.session.connection()).execute(_STORE_REFRESH, {
        "token_hash": digest(value), "grant_id": family.id, "client_id": client_id, "scope": family.scope,
        "created_at": now, "expires_at": now + timedelta(seconds=settings.refresh_token_ttl),
        "rotated_at": None, "revoked": False,
    })


@dataclass(frozen=True, slots=True)
class Person:
    """The account a token is issued for, as tokens and claims read it (claims.user_claims):
    its id and profile only, read with one Core query (an ORM `get` cost twice the grant's
    other reads together), and never its password hash."""

    id: str
    email: str
    email_verified: bool
    name: str | None
    given_name: str | None
    family_name: str | None
    locale: str | None
    org_id: str | None
    updated_at: datetime | None
    disabled: bool

    def get_user_id(self) -> str:  # Authlib's user protocol
        return self.id


_USERS = User.__table__
_PERSON_BY_ID = select(*[_USERS.c[name] for name in Person.__slots__]).where(_USERS.c.id == bindparam("b_id"))
_PERSON_COLUMNS = [_USERS.c[name].label("u_" + name) for name in Person.__slots__]
# The token, its family and the family's person in one read (outer joins: a token whose
# family or person is gone reads as refused), one round trip instead of three; with what
# tells whether the family's session still counts (`online.COLUMNS`).
_REFRESH_WITH_FAMILY = (
    select(*_REFRESH_COLUMNS, *[c.label("f_" + c.name) for c in _FAMILY_COLUMNS], *_PERSON_COLUMNS,
           *online.COLUMNS)
    .select_from(online.joined(_REFRESH.outerjoin(_GRANTS, _GRANTS.c.id == _REFRESH.c.grant_id)
                               .outerjoin(_SESSIONS, _SESSIONS.c.id == _GRANTS.c.sid)
                               .outerjoin(_USERS, _USERS.c.id == _GRANTS.c.user_id)))
    .where(_REFRESH.c.token_hash == bindparam("token_hash"))
)


def live_user(user_id: str) -> Person | None:
    """The account if it may still get tokens (not disabled nor deprovisioned)."""
    row = db.session.connection().execute(_PERSON_BY_ID, {"b_id": user_id}).first()
    return Person(*row) if row is not None and not row.disabled else None


LIVE, REFUSED, REUSED = "live", "refused", "reused"


def read_refresh_token(connection, value: str) -> tuple[RefreshRecord | None, Family | None, Person | None]:
    """A presented refresh token with its family and the family's person, in one read;
    (None, None, None) when no such token is stored."""
    row = connection.execute(_REFRESH_WITH_FAMILY, {"token_hash": digest(value)}).first()
    if row is None:
        return None, None, None
    width, family_end = len(_REFRESH_COLUMNS), len(_REFRESH_COLUMNS) + len(_FAMILY_COLUMNS)
    person_end = family_end + len(_PERSON_COLUMNS)
    family = Family(*row[width:family_end]) if row[width] is not None else None
    person = Person(*row[family_end:person_end]) if row[family_end] is not None else None
    if family is not None and person is not None and online_with_session(family):
        family.session_counts = online.counts(row[person_end:], person)
    return RefreshRecord(*row[:width]), family, person


def refresh_token_state(token: RefreshRecord | None, family: Family | None) -> str:
    """LIVE: the token may be used; REUSED: it was spent and came back, so its family must be
    revoked (RFC 9700 §4.14.2); REFUSED: anything else (unknown, revoked, expired)."""
    if token is None or family is None or family.revoked_at is not None or token.revoked:
        return REFUSED
    if token.rotated_at is not None:
        return REUSED
    if token.expires_at <= utcnow() or online_session_over(family):
        return REFUSED
    return LIVE


def family_person(family: Family, person: Person | None) -> Person | None:
    """The family's person if they may still get tokens (not disabled nor deprovisioned);
    `person`: as read with the token, read again when it is not the family's."""
    if person is None or person.id != family.user_id:
        return live_user(family.user_id)
    return person if not person.disabled else None


def rotate_refresh_token(connection, token: RefreshRecord) -> bool:
    """Mark the token used (the caller commits); False when a concurrent request did first.
    Single use, race-safe: only the request whose UPDATE finds the token unrotated may go on
    (on PostgreSQL a concurrent UPDATE waits for this row's lock, then sees it rotated)."""
    rotated = connection.execute(_ROTATE, {"b_hash": token.token_hash, "b_now": utcnow()}).rowcount
    return rotated == 1


class IssuesSignedTokens:
    """Mixin: every grant's token response is built here (JWT access token, opaque refresh token)."""

    def token_family(self) -> Grant | None:
        return None

    def authenticate_token_endpoint_client(self):
        client = super().authenticate_token_endpoint_client()
        dpop.check_client_policy(client, self.request)
        return client

    def generate_token(self, user=None, scope=None, grant_type=None, expires_in=None, include_refresh_token=True):
        family = self.token_family()
        # RFC 8707: `resource` at the token endpoint picks the audience, within what was granted.
        audience = resources.token_audience(self.request.client, self.request.payload.datalist.get("resource"),
                                            family.resource if family else None, from_grant=family is not None)
        proof = dpop.proof_of(self.request)
        return token_body(self.request.client, user, scope, family, audience=audience,
                          jkt=proof.jkt if proof else None,
                          include_refresh_token=include_refresh_token and family is not None)


def token_body(client, user, scope: str | None, family: Family | None, *, audience, jkt: str | None,
               include_refresh_token: bool) -> dict:
    """The token response of every grant: a signed access token, and a new refresh token
    when asked for (the caller stores it)."""
    access_token, ttl = tokens.issue_access_token(client, user, scope or "", family, audience=audience, jkt=jkt)
    token = {"token_type": "DPoP" if jkt else "Bearer", "access_token": access_token, "expires_in": ttl}
    if scope:
        token["scope"] = scope
    if include_refresh_token:
        token["refresh_token"] = new_secret(32)
    return token


def add_id_token(token: dict, client, user, family: Family, nonce: str | None = None) -> None:
    """A code exchange (OIDC Core §3.1.3.3), a refresh grant (§12.2) or a device grant whose
    scope has `openid` answers with an ID token too, with the claims of that scope (a refresh
    may narrow it); `nonce`: the authorization request's, for a code."""
    scope = token.get("scope") or ""
    if "openid" in scope.split():
        token["id_token"] = tokens.issue_id_token(client, user, family, scope, nonce=nonce,
                                                  access_token=token["access_token"])



@dataclass(frozen=True, slots=True)
class CodeRecord(CodeMethods):
    """A stored authorization code as the exchange reads it, read with Core (Authlib's
    methods from `CodeMethods`, as the model has them)."""

    code_hash: str
    grant_id: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int | None
    amr: list
    acr: str | None
    sid: str | None
    dpop_jkt: str | None
    resource: list | None
    expires_at: datetime
    used_at: datetime | None


_CODES = AuthorizationCode.__table__
_CODE_COLUMNS = [_CODES.c[name] for name in CodeRecord.__slots__]
# The code, its family and its person in one read, as _REFRESH_WITH_FAMILY does for a token.
_CODE_WITH_FAMILY = (
    select(*_CODE_COLUMNS, *[c.label("f_" + c.name) for c in _FAMILY_COLUMNS], *_PERSON_COLUMNS)
    .select_from(_CODES.outerjoin(_GRANTS, _GRANTS.c.id == _CODES.c.grant_id)
                 .outerjoin(_SESSIONS, _SESSIONS.c.id == _GRANTS.c.sid)
                 .outerjoin(_USERS, _USERS.c.id == _CODES.c.user_id))
    .where(_CODES.c.code_hash == bindparam("b_hash"))
)
_CONSUME_CODE = (
    update(_CODES)
    .where(_CODES.c.code_hash == bindparam("b_hash"), _CODES.c.used_at.is_(None))
    .values(used_at=bindparam("b_now"))
)
_INSERT_GRANT = insert(Grant.__table__)
_INSERT_CODE = insert(_CODES)


def read_code(connection, value: str) -> tuple[CodeRecord | None, Family | None, Person | None]:
    """A presented code with its family and its person, in one read; (None, None, None)
    when no such code is stored."""
    row = connection.execute(_CODE_WITH_FAMILY, {"b_hash": digest(value)}).first()
    if row is None:
        return None, None, None
    width, family_end = len(_CODE_COLUMNS), len(_CODE_COLUMNS) + len(_FAMILY_COLUMNS)
    family = Family(*row[width:family_end]) if row[width] is not None else None
    person = Person(*row[family_end:]) if row[family_end] is not None else None
    return CodeRecord(*row[:width]), family, person


def consume_code(connection, code: CodeRecord) -> bool:
    """Mark the code used (the caller commits); False when it was used before, or a
    concurrent exchange used it first (the conditional UPDATE waits for that one's lock)."""
    return connection.execute(_CONSUME_CODE, {"b_hash": code.code_hash, "b_now": utcnow()}).rowcount == 1


def code_expired(code: CodeRecord) -> bool:
    return code.expires_at <= utcnow()


def code_person(code: CodeRecord, person: Person | None) -> Person | None:
    """The code's person if they may still get tokens; `person`: as read with the code."""
    if person is None or person.id != code.user_id:
        return live_user(code.user_id)
    return person if not person.disabled else None


def redirect_uri_matches(code: CodeRecord, redirect_uri: str | None) -> bool:
    """RFC 6749 §4.1.3: the exchange repeats the authorization request's redirect_uri exactly."""
    return not code.redirect_uri or redirect_uri == code.redirect_uri


def check_code_verifier(code: CodeRecord, verifier: str | None, public: bool) -> None:
    """PKCE at the exchange (RFC 7636 §4.6, RFC 9700 §4.8), with the errors Authlib's
    `CodeChallenge.validate_code_verifier` gives, and the comparison in constant time
    (Authlib's is `==`). `public`: the client authenticated with method none."""
    if public and not verifier:
        raise InvalidRequestError("Missing 'code_verifier'")
    challenge = code.code_challenge
    if not challenge and not verifier:
        return
    if not challenge:
        raise InvalidRequestError("The authorization request had no 'code_challenge', "
                                  "but a 'code_verifier' was provided.")
    if not verifier:
        raise InvalidRequestError("Missing 'code_verifier'")
    if not CODE_VERIFIER_PATTERN.fullmatch(verifier):  # its '$' alone lets a final newline through
        raise InvalidRequestError("Invalid 'code_verifier'")
    if (code.code_challenge_method or "S256") != "S256":  # the authorization endpoint refuses any other
        raise RuntimeError(f"No verify method for '{code.code_challenge_method}'")
    computed = urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
    if not hmac.compare_digest(computed, challenge.encode("ascii", "replace")):
        raise InvalidGrantError(description="Code challenge failed.")


class AuthorizationCodeGrant(IssuesSignedTokens, grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def token_family(self):
        return family_of(self.request, self.request.authorization_code.grant_id)

    @staticmethod
    def validate_authorization_redirect_uri(request, client):
        uri = request.payload.redirect_uri
        if uri and not client.check_redirect_uri(uri):
            # Authlib's own refusal names the URI as sent, and cannot be built when it
            # holds a character no error description may (a ValueError: a 500).
            raise InvalidRequestError(f"Redirect URI {named(uri)} is not supported by client.")
        return grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)

    def generate_authorization_code(self):
        # 288 random bits, as Authlib's 48 characters of 62 give (285), from one call to
        # the OS's generator instead of one SystemRandom draw per character.
        return secrets.token_urlsafe(36)

    def save_authorization_code(self, code, request):
        settings = current_app.extensions["idp.settings"]
        browser = sessions.current()
        payload = request.payload.data
        # Two table inserts, not ORM objects: nothing in this request reads them back, and
        # the unit of work (two flushes, the family's id first) cost more than the inserts.
        family = {
            "id": new_id(),
            "client_id": request.client.client_id,
            "user_id": request.user.id,
            "scope": request.scope or "",
            "sid": browser.id if browser else None,
            "auth_time": browser.auth_time if browser else None,
            "amr": list(browser.amr) if browser else [],
            "acr": browser.acr if browser else None,
            "resource": payload.get("resource") or None,
            "created_at": utcnow(),
        }
        # Statements built once, run on the session's connection: a fresh `insert().values()`
        # computed its cache key over every value on each request (most of this step's CPU).
        connection = db.session.connection()
        connection.execute(_INSERT_GRANT, family)
        connection.execute(_INSERT_CODE, {
            "code_hash": digest(code),
            "grant_id": family["id"],
            "client_id": family["client_id"],
            "user_id": family["user_id"],
            "redirect_uri": payload.get("redirect_uri"),
            "scope": family["scope"],
            "nonce": payload.get("nonce"),
            "dpop_jkt": payload.get("dpop_jkt"),
            "code_challenge": payload.get("code_challenge"),
            "code_challenge_method": payload.get("code_challenge_method"),
            "auth_time": family["auth_time"],
            "amr": family["amr"],
            "acr": family["acr"],
            "sid": family["sid"],
            "resource": family["resource"],
            "expires_at": utcnow() + timedelta(seconds=settings.code_ttl),
        })
        db.session.commit()

    def query_authorization_code(self, code, client):
        connection = db.session.connection()
        row, family, person = read_code(connection, code)
        if row is None or row.client_id != client.client_id:
            return None
        self.request.idp_family, self.request.idp_person = family, person
        # Consume atomically, so two concurrent exchanges cannot both succeed; committed at
        # once, so a code is spent even when a later check (PKCE, DPoP) refuses the exchange.
        consumed = consume_code(connection, row)
        db.session.commit()
        if not consumed:
            # Reuse: refuse, and revoke what the first exchange issued (RFC 6749 §4.1.2).
            revoke_grant(row.grant_id)
            return None
        if code_expired(row):
            return None
        if family is None or family.revoked_at is not None:
            # revoked after the code was issued (sign out everywhere): no tokens, not even an ID token
            return None
        return row

    def delete_authorization_code(self, authorization_code):
        pass  # already marked used in query_authorization_code; kept to detect reuse

    def authenticate_user(self, authorization_code):
        return code_person(authorization_code, getattr(self.request, "idp_person", None))  # read with the code


class OpenIDCodeExtension(OpenIDCode):
    """ID tokens from our key ring, with at_hash, auth_time, amr, acr and sid."""

    def exists_nonce(self, nonce, request):
        return False  # codes are single-use; a nonce is the client's to check

    def process_token(self, grant, response):
        _, token, _ = response
        request = grant.request
        code = request.authorization_code
        add_id_token(token, request.client, request.user, family_of(request, code.grant_id), nonce=code.nonce)
        return token


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) with S256 only: `plain` is refused (RFC 9700 §2.1.1), and
    public clients must use it."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        method = data.get("code_challenge_method")
        if grant.request.client.is_public and not challenge:
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        if challenge and not re.fullmatch(r"[A-Za-z0-9\-._~]{43,128}", challenge):
            raise InvalidRequestError("Invalid 'code_challenge'")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant, result):
        request = grant.request
        check_code_verifier(request.authorization_code, request.form.get("code_verifier"),
                            self.required and request.auth_method == "none")


class RefreshTokenGrant(IssuesSignedTokens, grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation on every use

    def token_family(self):
        return family_of(self.request, self.request.refresh_token.grant_id)

    def authenticate_refresh_token(self, refresh_token):
        token, family, person = read_refresh_token(db.session.connection(), refresh_token)
        self.request.idp_family = family
        self.request.idp_person = person
        state = refresh_token_state(token, family)
        if state == REUSED:
            revoke_grant(token.grant_id)  # an old token came back: the family is compromised
        return token if state == LIVE else None

    def authenticate_user(self, refresh_token):
        family = family_of(self.request, refresh_token.grant_id)
        if family is None:
            return None
        dpop.check_refresh_binding(family, self.request)
        return family_person(family, getattr(self.request, "idp_person", None))  # read with the token

    def save_token(self, token):
        """Rotate the old token and keep the new one in one transaction: the conditional
        UPDATE first, so a concurrent use of the same token waits for it and then fails."""
        old = self.request.refresh_token
        if not rotate_refresh_token(db.session.connection(), old):  # a concurrent request used it first: reuse too
            revoke_grant(old.grant_id)  # nothing is stored yet: this commits the revocation only
            raise InvalidGrantError("refresh token already used")
        self.server.store_token(token, self.request)
        db.session.commit()

    def revoke_old_credential(self, refresh_token):
        pass  # rotated in save_token, in the same commit as the new token

    def issue_token(self, user, refresh_token):
        token = super().issue_token(user, refresh_token)
        add_id_token(token, self.request.client, user, self.token_family())
        return token


class ClientCredentialsGrant(IssuesSignedTokens, grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def validate_requested_scope(self):
        # Authlib checks the scope against the server's list only: a service gets no scope
        # that was not registered for it (RFC 6749 §3.3 leaves refusing or narrowing to us;
        # Keycloak refuses too). idp/oauth/fast_token.py answers only when this holds.
        super().validate_requested_scope()
        wanted = set((self.request.payload.scope or "").split())
        if not wanted <= set(self.request.client.scope.split()):
            raise InvalidScopeError("scope not registered for this client")
