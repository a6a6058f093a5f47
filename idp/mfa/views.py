"""Account pages for second factors: set up an authenticator app, recovery codes, turn off."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from .. import audit, sessions
from ..signin.views import require_sign_in
from . import passkeys, totp

log = logging.getLogger(__name__)
bp = Blueprint("mfa", __name__)


def _user():
    browser = sessions.current()
    return browser.user if browser else None


@bp.get("/account/totp")
def setup_totp():
    user = _user()
    if user is None:
        return require_sign_in(url_for("account.home"))
    if totp.has_totp(user):
        return redirect(url_for("account.home"))
    secret = totp.start_enrolment(user)
    return _setup_page(user, secret)


def _setup_page(user, secret, error=None, status=200):
    uri = totp.provisioning_uri(user, secret)
    return render_template("account/totp.html", secret=secret, qr=totp.qr_svg(uri), error=error), status


@bp.post("/account/totp")
def confirm_totp():
    user = _user()
    if user is None:
        return require_sign_in(url_for("account.home"))
    secret = totp.pending_secret(user)
    if secret is None:
        return redirect(url_for("account.home"))
    if not totp.confirm_enrolment(user, request.form.get("code", "")):
        return _setup_page(user, secret, _("This code is not right. Enter the current code from the app."), 400)
    codes = totp.new_recovery_codes(user)
    audit.record("totp.enabled", user)
    return render_template("account/recovery_codes.html", codes=codes)


@bp.post("/account/recovery-codes")
def new_recovery_codes():
    user = _user()
    if user is None or not totp.has_totp(user):
        return redirect(url_for("account.home"))
    codes = totp.new_recovery_codes(user)
    audit.record("recovery.generated", user)
    return render_template("account/recovery_codes.html", codes=codes)


@bp.post("/account/totp/remove")
def remove_totp():
    user = _user()
    if user is None:
        return require_sign_in(url_for("account.home"))
    totp.remove(user)
    audit.record("totp.disabled", user)
    return redirect(url_for("account.home"))


@bp.post("/account/passkeys/options")
def passkey_options():
    user = _user()
    if user is None:
        return jsonify(error="sign in first"), 401
    return Response(passkeys.registration_options(user), mimetype="application/json")


@bp.post("/account/passkeys")
def add_passkey():
    user = _user()
    if user is None:
        return jsonify(error="sign in first"), 401
    try:
        body = passkeys.parse_body(request.get_data())
        row = passkeys.finish_registration(user, body.get("credential"), body.get("name"))
    except passkeys.PasskeyError as err:
        log.info("passkey registration refused: %s", err)
        return jsonify(error=_("This passkey could not be added.")), 400
    audit.record("passkey.added", user)
    return jsonify(id=row.id, redirect=url_for("account.home")), 201


@bp.post("/account/passkeys/<passkey_id>/remove")
def remove_passkey(passkey_id: str):
    user = _user()
    if user is None:
        return require_sign_in(url_for("account.home"))
    if passkeys.remove(user, passkey_id):
        audit.record("passkey.removed", user)
    return redirect(url_for("account.home"))
