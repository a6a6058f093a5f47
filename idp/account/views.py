"""/account: the signed-in person's security, sessions, trusted devices, connected accounts, the
apps they allowed in, and recent activity."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for
from sqlalchemy import delete, select

from federation.social import label_for

from .. import accounts, audit, notices, sessions, social
from ..i18n import gettext as _
from ..signin.views import require_recent_sign_in, require_sign_in, signed_in_recently
from ..oauth.grants import withdraw_consent
from ..store import Client, Consent, LinkedIdentity, Passkey, TrustedDevice, db, utcnow

bp = Blueprint("account", __name__)


def _signed_in():
    browser = sessions.current()
    return browser, (require_sign_in(url_for("account.home")) if browser is None else None)


@bp.get("/account")
def home():
    browser, away = _signed_in()
    if away:
        return away
    user = browser.user
    devices = db.session.execute(
        select(TrustedDevice).where(TrustedDevice.user_id == user.id, TrustedDevice.revoked_at.is_(None),
                                    TrustedDevice.expires_at > utcnow())
        .order_by(TrustedDevice.last_seen_at.desc())
    ).scalars().all()
    from ..mfa.passkeys import user_passkeys
    from ..mfa.totp import has_totp, recovery_codes_left

    links = social.links_of(user)
    # The apps the person allowed on a consent screen, newest first (first-party apps never ask).
    apps = db.session.execute(
        select(Client.client_id, Client.name, Consent.scope, Consent.updated_at)
        .join(Consent, Consent.client_id == Client.client_id).where(Consent.user_id == user.id)
        .order_by(Consent.updated_at.desc())
    ).all()
    return render_template(
        "account/home.html", user=user, links=links, providers=social.enabled(),
        linked_names={link.provider for link in links}, label_of=label_for, browser=browser,
        sessions=sessions.open_sessions(user),
        devices=devices, apps=apps, events=audit.recent(user), has_totp=has_totp(user),
        recovery_left=recovery_codes_left(user), passkeys=user_passkeys(user),
        passkeys_allowed=accounts.passkeys_allowed(user), social_allowed=accounts.social_allowed(user),
    )


@bp.post("/account/sessions/<session_id>/revoke")
def revoke_session(session_id: str):
    browser, away = _signed_in()
    if away:
        return away
    user = browser.user
    if sessions.revoke(user, session_id):
        audit.record("session.revoked", user)
    if sessions.current() is None:
        return redirect(url_for("signin.email"))
    return redirect(url_for("account.home"))


@bp.post("/account/sessions/revoke-all")
def sign_out_everywhere():
    """Sign out everywhere; on request also remove the ways in someone else may have added
    (passkeys, linked accounts), which needs a recent sign-in and must leave one way in."""
    browser, away = _signed_in()
    if away:
        return away
    user = browser.user
    drop_passkeys = request.form.get("remove_passkeys") == "on"
    drop_links = request.form.get("unlink_all") == "on"
    if drop_passkeys or drop_links:
        if not signed_in_recently(browser):
            return require_recent_sign_in(browser, url_for("account.home"))
        from ..mfa.passkeys import has_passkey

        way_left = bool(user.password_hash) or accounts.own_idp_signs_in(user) \
            or (not drop_passkeys and has_passkey(user)) or (not drop_links and bool(social.links_of(user)))
        if not way_left:
            return render_template("error.html", message=_(
                "This would leave no way into your account: set a password first.")), 409
        # Only what was there is removed, recorded and told (a box ticked over nothing is no
        # change); each removal in one commit with its notice (notices.record).
        if drop_passkeys and db.session.execute(delete(Passkey).where(Passkey.user_id == user.id)).rowcount > 0:
            notices.record("passkey.removed", user, all=True)
        if drop_links and db.session.execute(
                delete(LinkedIdentity).where(LinkedIdentity.user_id == user.id)).rowcount > 0:
            notices.record("social.unlinked", user, all=True)
    sessions.sign_out_everywhere(user)
    audit.record("sessions.revoked", user)
    return render_template("signin/signed_out.html")


@bp.post("/account/devices/<device_id>/revoke")
def revoke_device(device_id: str):
    browser, away = _signed_in()
    if away:
        return away
    device = db.session.get(TrustedDevice, device_id[:32])
    if device is not None and device.user_id == browser.user_id and device.revoked_at is None:
        device.revoked_at = utcnow()
        db.session.commit()
        audit.record("device.revoked", browser.user)
    return redirect(url_for("account.home"))


@bp.post("/account/apps/<client_id>/remove")
def remove_app(client_id: str):
    """Take back an app's access: it asks for consent again and its tokens stop working."""
    browser, away = _signed_in()
    if away:
        return away
    client_id = client_id[:64]
    if withdraw_consent(browser.user_id, client_id):
        audit.record("app.access_removed", browser.user, client_id=client_id)  # commits, with the change
    return redirect(url_for("account.home"))


@bp.route("/account/password", methods=["GET", "POST"])
def change_password():
    """Change the password while signed in: the current one proves it is the person (and is
    throttled like a sign-in); the new one follows the reset page's policy."""
    from ..passwords import policy_problem, verify_password
    from ..ratelimit import throttle
    from ..signin.password_reset import POLICY_MESSAGES
    from ..signin.throttling import too_many_attempts

    browser, away = _signed_in()
    if away:
        return away
    user = browser.user
    if not user.password_hash:  # SSO, social or passkey only: a password is set by the reset link
        return redirect(url_for("password.forgot", email=user.email))
    if request.method == "GET":
        return render_template("account/password.html", user=user)
    limits = throttle()
    # counted before the check, as the password step counts (no race of parallel guesses)
    decision = limits.attempt("password:account", user.email)
    if not decision.allowed:
        return too_many_attempts("account/password.html", decision, user=user)
    if not verify_password(user.password_hash, request.form.get("current_password", "")):
        audit.record("signin.failure", user, method="pwd", reason="change password")
        return render_template("account/password.html", user=user,
                               error=_("Your current password is not right.")), 401
    limits.success("password:account", user.email)  # proved: a new password the policy refuses is no guess
    new = request.form.get("password", "")
    problem = policy_problem(new, (user.email, user.name))
    if problem:
        return render_template("account/password.html", user=user, error=POLICY_MESSAGES[problem]()), 400
    accounts.change_password(user, new)  # the owner is told; reset links sent before now die
    everywhere = request.form.get("sign_out_everywhere") == "on"
    audit.record("password.changed", user, signed_out_everywhere=everywhere)
    if everywhere:
        sessions.sign_out_everywhere(user)
        return render_template("signin/signed_out.html")
    sessions.renew_secret(browser)
    return redirect(url_for("account.home"))


@bp.get("/")
def index():
    return redirect(url_for("account.home"))
