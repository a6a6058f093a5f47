"""/device: a signed-in person types the code their device shows, then allows or denies it."""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for

from .. import sessions
from ..i18n import gettext as _
from ..oauth.device import decide, find_by_user_code
from ..ratelimit import throttle
from ..store import Client, db
from .throttling import too_many_attempts
from .views import require_sign_in

bp = Blueprint("device", __name__)


@bp.get("/device")
def enter_code():
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("device.enter_code", user_code=request.args.get("user_code")))
    return render_template("signin/device.html", user_code=request.args.get("user_code", ""))


@bp.post("/device")
def submit_code():
    browser = sessions.current()  # a live session of a verified, enabled account, or None
    if browser is None:
        return require_sign_in(url_for("device.enter_code"))
    user_code = request.form.get("user_code", "")
    limits = throttle()
    # Counted before the code is looked up (concurrent guesses cannot race past the limit),
    # and never forgotten when a code is found: anyone can start a device flow and hold a
    # valid code of their own, so forgetting would give a guesser a fresh budget at will.
    # A person connecting a device spends two attempts (code, then decision) of the hour's ten.
    decision = limits.attempt("device-code:account", browser.user.id)
    if not decision.allowed:
        return too_many_attempts("signin/device.html", decision, user_code=user_code)
    row = find_by_user_code(user_code)
    if row is None:
        return render_template("signin/device.html", user_code=user_code,
                               error=_("This code is not valid or has expired.")), 400
    if "decision" not in request.form:
        client = db.session.get(Client, row.client_id)
        return render_template("signin/device_confirm.html", client=client, scopes=row.scope.split(),
                               user_code=user_code, user=browser.user)
    if not decide(row, browser.user, browser, approve=request.form["decision"] == "allow"):
        return render_template("signin/device.html", user_code=user_code,
                               error=_("This code is not valid or has expired.")), 400
    message = _("Your device is connected. You can return to it.") if request.form["decision"] == "allow" \
        else _("The device was not connected.")
    return render_template("signin/device_done.html", message=message)

