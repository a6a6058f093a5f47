"""/developer: the signed-in person's client apps. Every route declares its rule by its
decorator: `signed_in` (any person, their own list) or `app_owner` (the app in the URL is
loaded only if this person registered it; any other id is a 404)."""

from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, make_response, redirect, render_template, request, url_for

from .. import sessions
from ..clients import ClientMetadataError
from ..i18n import gettext as _
from ..signin.views import require_recent_sign_in, require_sign_in, signed_in_recently
from . import apps

bp = Blueprint("developer", __name__)


def signed_in(view):
    """Rule: a signed-in person (else sign in first, then back here)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        browser = sessions.current()
        if browser is None:
            return require_sign_in(request.path if request.method == "GET" else url_for("developer.home"))
        return view(browser, *args, **kwargs)
    return wrapper


def app_owner(view):
    """Rule: a signed-in person who registered the app named by `client_id`."""
    @wraps(view)
    @signed_in
    def wrapper(browser, client_id: str, **kwargs):
        client = apps.owned_app(browser.user, client_id)
        if client is None:
            abort(404)
        return view(browser, client, **kwargs)
    return wrapper


def _recent(browser, client, action: str):
    """None when the sign-in is recent enough for a destructive action, else the way to renew it."""
    if signed_in_recently(browser):
        return None
    return require_recent_sign_in(browser, url_for(action, client_id=client.client_id))


@bp.get("/developer")
@signed_in
def home(browser):
    return render_template("developer/index.html", apps=apps.apps_of(browser.user), kind_of=apps.kind_of)


@bp.route("/developer/apps/new", methods=["GET", "POST"])
@signed_in
def new_app(browser):
    form = {"name": "", "kind": "web", "redirect_uris": "", "post_logout_uris": ""}
    if request.method == "GET":
        return render_template("developer/new.html", form=form, kinds=apps.KINDS.values(), error=None)
    form = {key: request.form.get(key, "") for key in form}
    try:
        client, secret = apps.register(browser.user, form["kind"], form["name"], apps.lines(form["redirect_uris"]),
                                       apps.lines(form["post_logout_uris"]))
    except ClientMetadataError as err:
        return render_template("developer/new.html", form=form, kinds=apps.KINDS.values(),
                               error=_said(err)), 400
    return _no_store(render_template("developer/secret.html", client=client, secret=secret, created=True))


@bp.route("/developer/apps/<client_id>", methods=["GET", "POST"])
@app_owner
def app_page(browser, client):
    if request.method == "GET":
        return render_template("developer/app.html", client=client, kind=apps.kind_of(client), error=None,
                               form=_form_of(client))
    form = {key: request.form.get(key, "") for key in ("name", "redirect_uris", "post_logout_uris")}
    redirect_uris, post_logout_uris = apps.lines(form["redirect_uris"]), apps.lines(form["post_logout_uris"])
    if (redirect_uris, post_logout_uris) != (list(client.redirect_uris), list(client.post_logout_redirect_uris)):
        # Where the app's codes go weighs as much as its secret: a public app's code is its
        # tokens, so a session taken a while ago must not redirect them.
        away = _recent(browser, client, "developer.app_page")
        if away:
            return away
    try:
        apps.edit(browser.user, client, form["name"], redirect_uris, post_logout_uris)
    except ClientMetadataError as err:
        return render_template("developer/app.html", client=client, kind=apps.kind_of(client),
                               error=_said(err), form=form), 400
    return redirect(url_for("developer.app_page", client_id=client.client_id), 303)


def _form_of(client) -> dict:
    return {"name": client.name, "redirect_uris": "\n".join(client.redirect_uris),
            "post_logout_uris": "\n".join(client.post_logout_redirect_uris)}


@bp.route("/developer/apps/<client_id>/rotate-secret", methods=["GET", "POST"])
@app_owner
def rotate_secret(browser, client):
    if not client.client_secret_hash:
        return render_template("error.html", message=_("This app has no secret: it is a public client.")), 409
    away = _recent(browser, client, "developer.rotate_secret")
    if away:
        return away
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("developer/confirm.html", client=client, button=_("Rotate secret"),
                               action=url_for("developer.rotate_secret", client_id=client.client_id),
                               message=_("The current secret stops working at once. "
                                         "Put the new one in your app right after."))
    secret = apps.rotate_secret(browser.user, client)
    return _no_store(render_template("developer/secret.html", client=client, secret=secret, created=False))


@bp.route("/developer/apps/<client_id>/delete", methods=["GET", "POST"])
@app_owner
def delete(browser, client):
    away = _recent(browser, client, "developer.delete")
    if away:
        return away
    if request.method == "GET" or request.form.get("confirm") != "yes":
        return render_template("developer/confirm.html", client=client, button=_("Delete"),
                               action=url_for("developer.delete", client_id=client.client_id),
                               message=_("The app and every token it holds stop working at once. "
                                         "This cannot be undone."))
    apps.delete(browser.user, client)
    return redirect(url_for("developer.home"), 303)


def _said(err: ClientMetadataError) -> str:
    """The error in the page's language (its `description` is the English of RFC 7591)."""
    return _(err.message, **err.variables)


def _no_store(html: str):
    """A page with a secret on it: never cached, by the browser or on the way."""
    resp = make_response(html)
    resp.headers["Cache-Control"] = "no-store"
    return resp
