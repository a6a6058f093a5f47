"""Account pages for second factors: set up an authenticator app, recovery codes, passkeys.

Every change needs a recent sign-in with the second factor (`signed_in_recently`): a
session can be 30 days old, and whoever finds it open must not be able to swap the
factors that protect the account.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from .. import accounts, notices, sessions
from ..i18n import gettext as _
from ..signin.views import require_recent_sign_in, require_sign_in, signed_in_recently
from . import passkeys, totp

log = logging.getLogger(__name__)
bp = Blueprint("mfa", __name__)


def _recent_user(return_to: str | None = None):
    """(user, None) when signed in recently enough to change factors, else (None, the
    redirect to sign in or to confirm it is them)."""
    browser = sessions.current()
    if browser is None:
        return None, require_sign_in(url_for("account.home"))
    if not signed_in_recently(browser):
        return None, require_recent_sign_in(browser, return_to or url_for("account.home"))
    return browser.user, None


def _recent_user_json():
    """The same for the passkey API: JSON, with where to confirm identity; refused when the
    person's org does not allow passkeys."""
    browser = sessions.current()
    if browser is None:
        return None, (jsonify(error="sign in first"), 401)
    if not signed_in_recently(browser):
        return None, (jsonify(error=_("Confirm it is you first."), redirect=url_for("mfa.confirm_identity")), 401)
    if not accounts.passkeys_allowed(browser.user):
        return None, (jsonify(error=_("Your organization does not allow passkeys.")), 403)
    return browser.user, None


@bp.get("/account/confirm-identity")
def confirm_identity():
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("account.home"))
    return require_recent_sign_in(browser, url_for("account.home"))


@bp.get("/account/totp")
def setup_totp():
    user, away = _recent_user(url_for("mfa.setup_totp"))
    if away:
        return away
    secret = None if totp.has_totp(user) else totp.secret_to_show(user)
    if secret is None:  # set up (maybe a moment ago, by another request)
        return redirect(url_for("account.home"))
    return _setup_page(user, secret)


def _setup_page(user, secret, error=None, status=200):
    uri = totp.provisioning_uri(user, secret)
    return render_template("account/totp.html", secret=secret, qr=totp.qr_svg(uri), error=error), status


@bp.post("/account/totp")
def confirm_totp():
    user, away = _recent_user(url_for("mfa.setup_totp"))
    if away:
        return away
    if totp.has_totp(user):
        return redirect(url_for("account.home"))
    secret = totp.shown_secret(user)
    if secret is None:  # replaced meanwhile (another session): start over with a fresh one
        return redirect(url_for("mfa.setup_totp"))
    over = notices.refused(user)
    if over:
        return over
    if not totp.confirm_enrolment(user, request.form.get("code", "")):
        notices.unchanged()
        return _setup_page(user, secret, _("This code is not right. Enter the current code from the app."), 400)
    codes = totp.new_recovery_codes(user)
    sessions.factor_enrolled(sessions.current())
    notices.record("totp.enabled", user, added=f"totp:{totp.enrolment(user)}")
    return render_template("account/recovery_codes.html", codes=codes)


@bp.post("/account/recovery-codes")
def new_recovery_codes():
    user, away = _recent_user()
    if away:
        return away
    if not totp.has_totp(user):
        return redirect(url_for("account.home"))
    over = notices.refused(user)
    if over:
        return over
    codes = totp.new_recovery_codes(user)
    notices.record("recovery.generated", user)
    return render_template("account/recovery_codes.html", codes=codes)


@bp.post("/account/totp/remove")
def remove_totp():
    user, away = _recent_user()
    if away:
        return away
    if totp.has_totp(user):  # nothing to turn off, nothing to tell
        over = notices.refused(user)
        if over:
            return over
        totp.remove(user)
        notices.record("totp.disabled", user)
    return redirect(url_for("account.home"))


@bp.post("/account/passkeys/options")
def passkey_options():
    user, refused = _recent_user_json()
    if refused:
        return refused
    return Response(passkeys.registration_options(user), mimetype="application/json")


@bp.post("/account/passkeys")
def add_passkey():
    user, refused = _recent_user_json()
    if refused:
        return refused
    over = notices.refused(user, json=True)
    if over:
        return over
    try:
        body = passkeys.parse_body(request.get_data())
        row = passkeys.finish_registration(user, body.get("credential"), body.get("name"))
    except passkeys.PasskeyError as err:
        log.info("passkey registration refused: %s", err)
        notices.unchanged()
        return jsonify(error=_("This passkey could not be added.")), 400
    sessions.factor_enrolled(sessions.current())
    notices.record("passkey.added", user, added=f"passkey:{row.id}")
    return jsonify(id=row.id, redirect=url_for("account.home")), 201


@bp.post("/account/passkeys/<passkey_id>/remove")
def remove_passkey(passkey_id: str):
    user, away = _recent_user()
    if away:
        return away
    over = notices.refused(user)
    if over:
        return over
    if passkeys.remove(user, passkey_id):
        notices.record("passkey.removed", user)
    else:  # removed meanwhile, or never this account's
        notices.unchanged()
    return redirect(url_for("account.home"))
