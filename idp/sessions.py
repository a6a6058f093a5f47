"""Server-side browser sessions: the cookie holds only a random secret, the row holds the rest.

Because every session is a row, sessions can be listed, revoked, and ended all at
once (`sign_out_everywhere`), and every server process sees the same state.
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import current_app, g, has_request_context, request, session
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from .store import (
    BrowserSession,
    Grant,
    RefreshToken,
    TrustedDevice,
    User,
    db,
    digest,
    new_id,
    new_secret,
    utcnow,
)

COOKIE = "idp_session"
SEEN_RESOLUTION = 300  # seconds between last_seen_at updates
# What the flow cookie keeps when it is renewed at sign-in: the key that binds this
# browser's pending authorization requests, and the page to return to.
FLOW_KEPT_AT_SIGN_IN = ("bk", "return_to")
FLOW_BINDING = "sk"  # in the flow cookie: which session cookie its CSRF token belongs to
_INSERT = insert(BrowserSession.__table__)
_COLUMNS = tuple(BrowserSession.__table__.c.keys())
_USER_COLUMNS = tuple(User.__table__.c.keys())
# Built once, run on the session's connection: every page asks (`current`), and the ORM's
# execute and loading layers cost more than the join itself. The session's and its
# account's columns come in one row (the account's prefixed `u_`).
_BY_SECRET = (
    select(*BrowserSession.__table__.c, *(c.label(f"u_{c.key}") for c in User.__table__.c))
    .join_from(BrowserSession.__table__, User.__table__, BrowserSession.__table__.c.user_id == User.__table__.c.id)
    .where(BrowserSession.__table__.c.secret_hash == bindparam("b_hash"))
)


def _settings():
    return current_app.extensions["idp.settings"]


def cookie_name(base: str) -> str:
    """`__Host-` names on an https issuer: the browser then refuses the cookie unless it is
    Secure, for the whole host and set by it (no sibling domain can plant or shadow it)."""
    return f"__Host-{base}" if _settings().secure_cookies else base


def flow_binding(secret: str | None) -> str:
    """A short hash of a session cookie, kept in the flow cookie to tie its CSRF token to it."""
    return digest(secret or "")[:16]


def _renew_flow(secret: str | None, keep: tuple[str, ...] = ()) -> None:
    """Start the flow cookie afresh at sign-in and sign-out: nothing from before survives
    (a planted or stale flow state, the old CSRF token) except `keep`, and its CSRF token
    is bound to the new session cookie."""
    kept = {k: session[k] for k in keep if k in session}
    session.clear()
    session.update(kept)
    session[FLOW_BINDING] = flow_binding(secret)
    # Flask-WTF keeps the token it made for this request; one made before the renewal is
    # worthless now, and a page answered after it (the consent page, right after the
    # sign-in) must carry a token of the new flow cookie.
    g.pop("csrf_token", None)


def start(user: User, *, persistent: bool, amr: list[str], acr: str | None = None,
          second_factor: bool = False, idp_org_id: str | None = None, auth_time: float | None = None,
          ends_by: float | None = None, trusted_device_id: str | None = None,
          commit: bool = True) -> BrowserSession:
    """Sign `user` in on this browser; the cookie is set on the response.

    `commit=False` leaves the new row (its id already set) to the caller's commit, which
    must follow before the response is sent: the sign-in then writes its session, audit
    event and pending request in one transaction. `idp_org_id`: the org whose own IdP
    signed the person in (SAML or enterprise OpenID). `auth_time`: when the person
    authenticated, if before now (an IdP's unsolicited answer); never later than now.
    `ends_by`: when the IdP that signed the person in says their session ends (epoch; SAML's
    SessionNotOnOrAfter): this one ends then at the latest. `trusted_device_id`: the trusted
    device that let it open without its second factor."""
    settings = _settings()
    ttl = settings.remember_me_ttl if persistent else settings.session_ttl
    if ends_by is not None:
        ttl = max(1, min(ttl, int(ends_by - time.time())))
    previous = held()
    if previous is not None and previous.user_id == user.id:
        # The same person again (prompt=login, max_age, the recent-sign-in check): the
        # session the products hold (its `sid`) goes on, with a new secret (no fixation)
        # and this sign-in's facts, so a later sign-out still reaches them all.
        return _renewed(previous, persistent=persistent, ttl=ttl, amr=amr, acr=acr,
                        second_factor=second_factor, idp_org_id=idp_org_id, auth_time=auth_time,
                        trusted_device_id=trusted_device_id, commit=commit)
    if previous is not None:
        # Another person: the old session ends (no fixation), and the products holding it
        # are told (back-channel logout) once the sign-in is committed (`apply_cookie`).
        previous.ended_at = utcnow()
        _end_online_grants([previous.id], previous.ended_at)  # as any ended session's
        g.replaced_session = (previous.user_id, previous.id)
    secret = new_secret()
    now = utcnow()
    row = BrowserSession(
        id=new_id(),  # known before the insert: the caller may point at it in the same commit
        secret_hash=digest(secret),
        user_id=user.id,
        persistent=persistent,
        auth_time=_auth_time(auth_time),
        amr=amr,
        acr=acr,
        mfa_time=int(time.time()) if second_factor else None,
        idp_org_id=idp_org_id,
        trusted_device_id=trusted_device_id,
        ip=request.remote_addr,
        user_agent=(request.user_agent.string or "")[:500],
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=ttl),
        ended_at=None,
    )
    # Written by a table insert built once (the unit of work cost more than the insert),
    # then handed to the session as the persistent row it now is: the request goes on
    # reading it (`current`, its `user`) and later changes to it are flushed as usual.
    db.session.flush()  # what the session holds first (the old session's end), as before
    db.session.connection().execute(_INSERT, {c: getattr(row, c) for c in _COLUMNS})
    # Every column is set, so nothing is left to load; `row.user` comes from the identity
    # map (or one read) when asked, as for any row the session loaded.
    make_transient_to_detached(row)
    db.session.add(row)
    if commit:
        db.session.commit()
    _hand_out(row, secret)
    return row


def _auth_time(said: float | None) -> int:
    now = int(time.time())
    return now if said is None else max(0, min(now, int(said)))


def _renewed(row: BrowserSession, *, persistent: bool, ttl: int, amr: list[str], acr: str | None,
             second_factor: bool, idp_org_id: str | None, auth_time: float | None,
             trusted_device_id: str | None, commit: bool) -> BrowserSession:
    secret = new_secret()
    now = utcnow()
    row.secret_hash = digest(secret)
    row.persistent = persistent
    row.auth_time = _auth_time(auth_time)
    row.amr = amr
    row.acr = acr
    row.mfa_time = int(time.time()) if second_factor else None
    row.idp_org_id = idp_org_id
    # A trust that opened it once stays its: its step-up codes keep adding up with that
    # device's other sessions' however it was renewed
    row.trusted_device_id = trusted_device_id or row.trusted_device_id
    row.ip = request.remote_addr
    row.user_agent = (request.user_agent.string or "")[:500]
    row.last_seen_at = now
    row.expires_at = now + timedelta(seconds=ttl)
    if commit:
        db.session.commit()
    _hand_out(row, secret)
    return row


def _hand_out(row: BrowserSession, secret: str) -> None:
    """This browser's cookie now carries `secret`, the session's new one (until the row
    expires when remembered, else until the browser closes), and a fresh flow cookie: its
    CSRF token belonged to the secret before."""
    ttl = int((row.expires_at - utcnow()).total_seconds())
    g.session_cookie = (secret, max(ttl, 1) if row.persistent else None)
    g.browser_session = row
    _renew_flow(secret, keep=FLOW_KEPT_AT_SIGN_IN)


def current() -> BrowserSession | None:
    """The live session of this browser, or None."""
    if "browser_session" in g:
        return g.browser_session
    found = None
    values = _cookie_row()
    # Only a verified, enabled account holds a session (idp.accounts): a row from before
    # a disable, or of an unverified account, is no session at all.
    if values is not None and not values.u_disabled and values.u_email_verified and not _idle(values):
        row = _attached(values)
        if _meets_org_policy(row):
            found = row
            now = utcnow()
            if (now - row.last_seen_at).total_seconds() > SEEN_RESOLUTION:
                row.last_seen_at = now  # for the account page's list; not on every request
                db.session.commit()
    g.browser_session = found
    return found


def _idle(values) -> bool:
    """Whether the session went unused for longer than it may (`Settings.session_idle`):
    it then no longer signs the browser in. It is not ended: the products it signed in keep
    their online tokens until its end of life, and a sign-out from the browser (`held`)
    still ends it and tells them. Seen to `SEEN_RESOLUTION`, so the limit is met up to
    five minutes late."""
    settings = _settings()
    limit = settings.remember_me_idle if values.persistent else settings.session_idle
    return (utcnow() - values.last_seen_at).total_seconds() > limit


def _cookie_row():
    """The unended, unexpired row this browser's cookie names, with its account's columns
    (`_BY_SECRET`), whether or not it counts as a session now (`current`); or None."""
    secret = request.cookies.get(cookie_name(COOKIE))
    if not secret:
        return None
    db.session.flush()  # as the ORM's autoflush did: the read sees this request's changes
    values = db.session.connection().execute(_BY_SECRET, {"b_hash": digest(secret)}).first()
    if values is None or values.ended_at is not None or values.expires_at <= utcnow():
        return None
    return values


def held() -> BrowserSession | None:
    """This browser's session, or else the row its cookie names that does not count now (one
    opened before its org required a second factor, or left idle): still the browser's, and its products
    still hold it (their online refresh tokens too), so a sign-out ends it and a sign-in
    renews or replaces it as it would a counted one."""
    row = current()
    if row is None:
        values = _cookie_row()
        row = _attached(values) if values is not None else None
    return row


def recheck_started() -> None:
    """Hold the session this request started to the rules `current` holds a cookie's to:
    the request goes on to answer an authorization request right after its sign-in (as the
    next request, /authorize/resume, once did), and sees no session where that one would
    have seen none."""
    row = g.get("browser_session")
    if row is None:
        return
    user = row.user
    if row.ended_at is not None or row.expires_at <= utcnow() or user.disabled or not user.email_verified \
            or not _meets_org_policy(row):
        g.browser_session = None


def _attached(values) -> BrowserSession:
    """The session row and its account read by `_BY_SECRET`, as the ORM's persistent rows
    (later changes are flushed as usual). Rows this session holds already win, as they do
    for an ORM query: the request may have changed them."""
    mapping = values._mapping
    identity = db.session.identity_map
    user = identity.get(db.session.identity_key(User, values.u_id))
    if user is None:
        user = attach_loaded(User, {c: mapping[f"u_{c}"] for c in _USER_COLUMNS})
    row = identity.get(db.session.identity_key(BrowserSession, values.id))
    if row is None:
        row = attach_loaded(BrowserSession, {c: mapping[c] for c in _COLUMNS})
        set_committed_value(row, "user", user)
    return row


def attach_loaded(model, values: dict):
    """An instance of `model` holding `values` (a whole row read by a Core statement) as
    loaded state, added to the session (as
    `make_transient_to_detached` and `add` do; the constructor's per-attribute events,
    which only record changes to be discarded, are skipped). No ORM `load` event fires:
    should a model ever listen for one (a Mutable column), it must be read by the ORM."""
    obj = model.__mapper__.class_manager.new_instance()
    instance_state(obj).dict.update(values)
    make_transient_to_detached(obj)
    db.session.add(obj)
    return obj


def _meets_org_policy(row: BrowserSession) -> bool:
    # Nor does an account its org requires a second factor of, without one (idp.accounts).
    from .accounts import session_meets_policy

    return session_meets_policy(row)


def step_up(row: BrowserSession, amr: list[str], acr: str) -> None:
    """Record that this session just passed a second factor (asked by a product). The
    session's secret is replaced: a cookie copied before the step-up is worth nothing."""
    secret = new_secret()
    row.secret_hash = digest(secret)
    row.amr = sorted(set(row.amr) | set(amr))
    row.acr = acr
    row.mfa_time = int(time.time())
    db.session.commit()
    _hand_out(row, secret)


def renew_secret(row: BrowserSession) -> None:
    """Give this browser's session a new secret, the products' `sid` unchanged: after the
    person proved their password again, a cookie copied before is worth nothing."""
    secret = new_secret()
    row.secret_hash = digest(secret)
    db.session.commit()
    _hand_out(row, secret)


def factor_enrolled(row: BrowserSession) -> None:
    """The person just proved a new second factor in this session (its first code, a new
    passkey): the session counts as having passed a factor now, so managing factors right
    after enrolling one does not ask for a sign-in again. The caller commits (with the
    factor and its notice)."""
    row.mfa_time = int(time.time())


def end_current() -> BrowserSession | None:
    """Sign this browser out; returns the session that ended."""
    row = held()
    if row is not None:
        row.ended_at = utcnow()
        _end_online_grants([row.id], row.ended_at)
        db.session.commit()
        _notify_products(row.user_id, [row.id])
    g.browser_session = None
    g.session_cookie = ("", 0)
    _renew_flow(None)
    return row


def open_sessions(user: User) -> list[BrowserSession]:
    """The person's live sessions, newest activity first."""
    return list(db.session.execute(
        select(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.ended_at.is_(None),
               BrowserSession.expires_at > utcnow())
        .order_by(BrowserSession.last_seen_at.desc())
    ).scalars())


def revoke(user: User, session_id: str) -> bool:
    """End one of the person's sessions (from the account page); products holding it are told."""
    row = db.session.get(BrowserSession, session_id[:32])
    if row is None or row.user_id != user.id or row.ended_at is not None:
        return False
    row.ended_at = utcnow()
    _end_online_grants([row.id], row.ended_at)
    db.session.commit()
    _notify_products(user.id, [row.id])
    if g.get("browser_session") is not None and g.browser_session.id == row.id:
        g.browser_session = None
        g.session_cookie = ("", 0)
        _renew_flow(None)
    return True


def sign_out_everywhere(user: User) -> None:
    """End every session of `user`, revoke every grant (so every refresh token) and every
    trusted device, and tell every product that holds a session (back-channel logout).

    The one function the reset page, the account page and the Admin Center call. This
    browser is signed out too when its session is one of `user`'s.
    """
    mine = this_browsers()
    end_everything(user)
    db.session.commit()
    signed_out_everywhere(user, mine)


def this_browsers() -> BrowserSession | None:
    """`current()`, or None outside a request: the session `signed_out_everywhere` may end."""
    return current() if has_request_context() else None


def end_everything(user: User) -> None:
    """The writes of `sign_out_everywhere`, left to the caller's commit (with the change that
    calls for them: the mailed "Not you? Remove it" link); then `signed_out_everywhere`."""
    from .oauth.grants import revoke_families  # here: it imports this module

    now = utcnow()
    db.session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user.id, BrowserSession.ended_at.is_(None))
        .values(ended_at=now)
    )
    revoke_families(Grant.user_id == user.id)
    db.session.execute(
        update(TrustedDevice).where(TrustedDevice.user_id == user.id, TrustedDevice.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def signed_out_everywhere(user: User, mine: BrowserSession | None) -> None:
    """What follows the commit of `end_everything`: the products are told, and this browser,
    whose session was `mine` (`current()` read before), is signed out if it was `user`'s."""
    # Every product the person signed in to (within the back-channel's look-back), not only
    # those of the sessions open now: a product whose session a later sign-in in the same
    # browser replaced, or that expired, still holds the person.
    from .backchannel import notify_logout

    notify_logout(user.id, None)
    if mine is not None and mine.user_id == user.id:
        g.browser_session = None
        g.session_cookie = ("", 0)
        _renew_flow(None)


def _end_online_grants(session_ids: list[str], now) -> None:
    """Revoke the grants (so the refresh tokens) these sessions gave without offline_access:
    they live as long as the session (OpenID Connect Back-Channel Logout 1.0 section 2.7);
    offline ones outlive it by design."""
    online = select(Grant.id).where(Grant.sid.in_(session_ids), Grant.revoked_at.is_(None),
                                    ~Grant.scope.contains("offline_access"))
    ids = list(db.session.execute(online).scalars())
    if ids:
        db.session.execute(update(Grant).where(Grant.id.in_(ids)).values(revoked_at=now))
        db.session.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(ids)).values(revoked=True))


def _notify_products(user_id: str, session_ids: list[str]) -> None:
    from .backchannel import notify_logout

    if session_ids:
        notify_logout(user_id, session_ids)


def _notify_replaced(user_id: str, session_id: str) -> None:
    """Tell the products of a session another person's sign-in replaced, when that sign-in
    was committed (a sign-in that failed before its commit ended nothing)."""
    db.session.rollback()  # nothing of this request is left to commit; read what is stored
    ended = db.session.execute(
        select(BrowserSession.ended_at).where(BrowserSession.id == session_id)).scalar_one_or_none()
    db.session.commit()
    if ended is not None:
        _notify_products(user_id, [session_id])


def apply_cookie(response):
    """after_request: write or clear the session cookie decided during the request."""
    replaced = g.pop("replaced_session", None)
    if replaced is not None:
        _notify_replaced(*replaced)
    pending = g.get("session_cookie")
    if pending is None:
        return response
    secret, max_age = pending
    settings = _settings()
    name = cookie_name(COOKIE)
    if max_age == 0:
        response.delete_cookie(name, path="/", secure=settings.secure_cookies, httponly=True, samesite="Lax")
    else:
        response.set_cookie(
            name, secret, max_age=max_age, path="/", secure=settings.secure_cookies,
            httponly=True, samesite="Lax",
        )
    return response
