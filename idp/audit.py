"""The audit trail: security events with time, account, IP and user agent."""

from __future__ import annotations

import logging

from flask import has_request_context, request
from flask_babel import gettext as _
from sqlalchemy import select

from .store import SecurityEvent, User, db

log = logging.getLogger("idp.audit")



def record(kind: str, user: User | None = None, origin=None, *, org=None, actor: User | None = None,
           **detail) -> None:
    """Store one event (and commit). `detail` never holds secrets. `origin` (ip, user agent)
    is the request's unless given (background jobs pass the request's they came from).

    The event shows in the audit log of `org` (an Org or its id; by default the person's
    org); `actor` is who did it when not the person themself (an admin)."""
    assert kind in LABELS, kind
    org_id = getattr(org, "id", org) if org is not None else (user.org_id if user else None)
    ip = ua = None
    if origin is not None:
        ip, ua = origin.ip, origin.user_agent
    elif has_request_context():
        ip = request.remote_addr
        ua = (request.user_agent.string or "")[:300]
    db.session.add(SecurityEvent(user_id=user.id if user else None, kind=kind, detail=detail, ip=ip, user_agent=ua,
                                 org_id=org_id, actor_id=actor.id if actor else None))
    db.session.commit()
    log.info("%s user=%s by=%s ip=%s %s", kind, user.id if user else "-", actor.id if actor else "-", ip, detail)


LABELS = {
    "signin.success": lambda: _("Signed in"),
    "signin.failure": lambda: _("Failed sign-in attempt"),
    "signin.throttled": lambda: _("Sign-in attempts slowed down"),
    "signout": lambda: _("Signed out"),
    "password.reset_requested": lambda: _("Password reset requested"),
    "password.reset": lambda: _("Password reset"),
    "password.changed": lambda: _("Password changed"),
    "sessions.revoked": lambda: _("Signed out of all sessions"),
    "session.revoked": lambda: _("Session revoked"),
    "device.trusted": lambda: _("Device trusted"),
    "device.revoked": lambda: _("Trusted device revoked"),
    "totp.enabled": lambda: _("Authenticator app set up"),
    "totp.disabled": lambda: _("Authenticator app turned off"),
    "recovery.generated": lambda: _("New recovery codes"),
    "recovery.used": lambda: _("Recovery code used"),
    "mfa.locked": lambda: _("Verification codes blocked after too many wrong ones"),
    "passkey.added": lambda: _("Passkey added"),
    "passkey.removed": lambda: _("Passkey removed"),
    "social.linked": lambda: _("Connected account linked"),
    "social.unlinked": lambda: _("Connected account unlinked"),
    "signup": lambda: _("Account created"),
    "email.verified": lambda: _("Email address confirmed"),
    "account.adopted": lambda: _("Account cleared of everything its new owner did not prove"),
    "signing_key.revoked": lambda: _("Signing key revoked"),
    "admin.user_invited": lambda: _("Invited by an administrator"),
    "admin.user_disabled": lambda: _("Account disabled by an administrator"),
    "admin.user_enabled": lambda: _("Account enabled by an administrator"),
    "admin.made_admin": lambda: _("Made an administrator"),
    "admin.removed": lambda: _("No longer an administrator"),
    "admin.second_factor_reset": lambda: _("Second factor reset by an administrator"),
    "admin.signed_out": lambda: _("Signed out of all sessions by an administrator"),
    "invite.accepted": lambda: _("Invitation accepted"),
    "org.options_changed": lambda: _("Sign-in options changed"),
    "app.created": lambda: _("App registered"),
    "app.updated": lambda: _("App changed"),
    "app.secret_rotated": lambda: _("App secret renewed"),
    "app.deleted": lambda: _("App deleted"),
}


def event_label(kind: str) -> str:
    """The event's name for the account page, in the page's language."""
    label = LABELS.get(kind)
    return label() if label else kind


def recent(user: User, limit: int = 20) -> list[SecurityEvent]:
    return list(db.session.execute(
        select(SecurityEvent).where(SecurityEvent.user_id == user.id)
        .order_by(SecurityEvent.created_at.desc(), SecurityEvent.id.desc()).limit(limit)
    ).scalars())
