"""/account: who is signed in, and the way out. (Security, sessions and devices come with issue 3.)"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, url_for

from .. import sessions
from ..signin.views import require_sign_in

bp = Blueprint("account", __name__)


@bp.get("/account")
def home():
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("account.home"))
    return render_template("account/home.html", user=browser.user, browser=browser)


@bp.get("/")
def index():
    return redirect(url_for("account.home"))
