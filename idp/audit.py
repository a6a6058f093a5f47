"""The audit trail: security events with time, account, IP and user agent."""

from __future__ import annotations

from flask import has_request_context, request
from sqlalchemy import insert, select

from .audit_events import event_row, log, log_event  # noqa: F401 - `log`: the audit logger, importable from here too
from .i18n import gettext as _
from .observability import metrics
from .store import SecurityEvent, User, db

_INSERT = insert(SecurityEvent.__table__)



def record(kind: str, user: User | None = None, origin=None, *, org=None, actor: User | None = None,
           commit: bool = True, **detail) -> None:
    """Store one event (and commit, unless `commit` is False: the caller's own commit then
    stores it with the change it records, in one transaction). `detail` never holds
    secrets. `origin` (ip, user agent) is the request's unless given (background jobs pass
    the request's they came from).

    The event shows in the audit log of `org` (an Org or its id; by default the person's
    org); `actor` is who did it when not the person themself (an admin)."""
    if kind not in LABELS:  # an event no page could name
        raise ValueError(f"unknown audit event {kind!r}")
    org_id = getattr(org, "id", org) if org is not None else (user.org_id if user else None)
    ip = ua = None
    if origin is not None:
        ip, ua = origin.ip, origin.user_agent
    elif has_request_context():
        ip = request.remote_addr
        ua = (request.user_agent.string or "")[:300]
    # A table insert built once, on the session's connection (in the caller's transaction,
    # so committed or rolled back with it): the unit of work cost more than the insert.
    # The flush first writes what the session holds (a new account the event names), as
    # the unit of work ordered it; it costs nothing when there is nothing to write.
    db.session.flush()
    db.session.connection().execute(_INSERT, event_row(
        kind, user_id=user.id if user else None, org_id=org_id, actor_id=actor.id if actor else None, ip=ip,
        user_agent=ua, detail=detail))
    if commit:
        db.session.commit()
    if kind.startswith("signin."):
        metrics.signin(detail.get("method"), kind.removeprefix("signin."))
    log_event(kind, user.id if user else None, actor.id if actor else None, ip, detail)


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
    "app.access_removed": lambda: _("App access removed"),
    "totp.enabled": lambda: _("Authenticator app set up"),
    "totp.disabled": lambda: _("Authenticator app turned off"),
    "recovery.generated": lambda: _("New recovery codes"),
    "recovery.used": lambda: _("Recovery code used"),
    "mfa.locked": lambda: _("Verification codes blocked after too many wrong ones"),
    "session.ended_wrong_codes": lambda: _("Signed out after too many wrong verification codes"),
    "passkey.added": lambda: _("Passkey added"),
    "passkey.removed": lambda: _("Passkey removed"),
    "social.linked": lambda: _("Connected account linked"),
    "social.unlinked": lambda: _("Connected account unlinked"),
    "signup": lambda: _("Account created"),
    "email.verified": lambda: _("Email address confirmed"),
    "account.adopted": lambda: _("Account cleared of everything its new owner did not prove"),
    "signing_key.revoked": lambda: _("Signing key revoked"),
    "signing_key.rotated": lambda: _("New signing key"),
    "client.deleted": lambda: _("Client deleted by an operator"),
    "client.created": lambda: _("Client registered by an operator"),
    "registration_token.created": lambda: _("Client registration token made by an operator"),
    "user.created": lambda: _("Account created by an operator"),
    "social.provider_added": lambda: _("Social provider added"),
    "social.provider_removed": lambda: _("Social provider removed"),
    "admin.user_invited": lambda: _("Invited by an administrator"),
    "admin.user_disabled": lambda: _("Account disabled by an administrator"),
    "admin.user_enabled": lambda: _("Account enabled by an administrator"),
    "admin.made_admin": lambda: _("Made an administrator"),
    "admin.removed": lambda: _("No longer an administrator"),
    "admin.second_factor_reset": lambda: _("Second factor reset by an administrator"),
    "admin.signed_out": lambda: _("Signed out of all sessions by an administrator"),
    "invite.accepted": lambda: _("Invitation accepted"),
    "admin.idp_metadata_saved": lambda: _("IdP metadata saved"),
    "org.idp_metadata_refreshed": lambda: _("IdP metadata refreshed from its source"),
    "org.idp_metadata_refresh_failed": lambda: _("IdP metadata not refreshed, last good copy kept"),
    "admin.oidc_saved": lambda: _("Enterprise OpenID provider saved"),
    "admin.sso_enforced": lambda: _("Enterprise Sign-In enforced"),
    "admin.sso_optional": lambda: _("Enterprise Sign-In no longer enforced"),
    "admin.sso_tested": lambda: _("Enterprise Sign-In connection tested"),
    "org.options_changed": lambda: _("Sign-in options changed"),
    "app.created": lambda: _("App registered"),
    "app.updated": lambda: _("App changed"),
    "app.secret_rotated": lambda: _("App secret renewed"),
    "app.deleted": lambda: _("App deleted"),
    "domain.claimed": lambda: _("Domain claimed, waiting for its DNS record"),
    "domain.verified": lambda: _("Domain verified by its DNS record"),
    "domain.check_failed": lambda: _("Domain check failed"),
    "domain.added": lambda: _("Domain added by an operator"),
    "domain.removed": lambda: _("Domain removed"),
    "domain.claim_withdrawn": lambda: _("Domain claim withdrawn"),
    "scim.user_created": lambda: _("Account created by the organization's directory"),
    "scim.user_adopted": lambda: _("Account joined the organization through its directory"),
    "scim.user_updated": lambda: _("Profile updated by the organization's directory"),
    "scim.user_disabled": lambda: _("Account deactivated by the organization's directory"),
    "scim.user_enabled": lambda: _("Account reactivated by the organization's directory"),
    "scim.user_deleted": lambda: _("Account removed by the organization's directory"),
    "scim.sign_up_removed": lambda: _("Unconfirmed sign-up at the new address removed by the organization's directory"),
    "scim.group_created": lambda: _("Group created by the organization's directory"),
    "scim.group_updated": lambda: _("Group updated by the organization's directory"),
    "scim.group_deleted": lambda: _("Group deleted by the organization's directory"),
    "scim.tokens_revoked": lambda: _("Directory provisioning tokens revoked"),
    "scim.token_issued": lambda: _("Directory provisioning token issued"),
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
