"""Who may act in the Admin Center, and on which org: the one rule every admin view uses.

- nobody signed in: sign in first, then come back;
- signed in but neither an operator (`users.is_admin`) nor an org admin
  (`users.org_admin` of `users.org_id`): 403, no data;
- the pages about the whole deployment (clients, social providers, signing keys) are the
  operators' alone;
- an org admin acts on their own org only (any other org id, existing or not: 403);
  an operator on any org (an unknown id: 404);
- every admin page needs a recent sign-in (with the second factor when the admin has
  one), as changing one's own security settings does;
- a person named in the URL must belong to the acting org, else 404.

The org and the person come from the database by these checks, never from what the URL
or the form claims about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import abort, render_template, request, url_for

from .. import sessions
from ..i18n import gettext as _
from ..signin.views import require_recent_sign_in, require_sign_in, signed_in_recently
from ..store import Org, User, db

RECENT_ADMIN_SIGN_IN = 900  # seconds; older sign-ins are asked again before any admin page


@dataclass(frozen=True)
class Acting:
    """The signed-in admin, and the org this request acts on."""

    browser: object
    admin: User
    org: Org

    @property
    def operator(self) -> bool:
        return bool(self.admin.is_admin)


def is_admin(user: User) -> bool:
    return bool(user.is_admin or (user.org_admin and user.org_id))


def forbidden():
    return render_template("error.html", message=_("You cannot manage this.")), 403


def _back_here() -> str:
    """Where a new sign-in returns: this page, or for a form post the page it came from."""
    if request.method == "GET":
        return request.path
    org_id = (request.view_args or {}).get("org_id")
    return url_for("admin.users", org_id=org_id) if org_id else url_for("admin.home")


def signed_in_admin():
    """(browser, None) for a recently signed-in admin, else (None, the answer to give)."""
    browser = sessions.current()
    if browser is None:
        return None, require_sign_in(_back_here())
    if not is_admin(browser.user):
        return None, forbidden()
    if not signed_in_recently(browser, max_age=RECENT_ADMIN_SIGN_IN):
        return None, require_recent_sign_in(browser, _back_here())
    return browser, None


def admin_view(view):
    """For views under /admin/orgs/<org_id>/...: calls `view(acting, **rest)` once the
    rule above allows it."""

    @wraps(view)
    def wrapper(org_id: str, **rest):
        browser = sessions.current()
        if browser is None:
            return require_sign_in(_back_here())
        admin = browser.user
        if not is_admin(admin):
            return forbidden()
        if not admin.is_admin and admin.org_id != org_id:
            return forbidden()  # the same answer whether or not that org exists
        org = db.session.get(Org, org_id[:32])
        if org is None:
            abort(404)
        if not signed_in_recently(browser, max_age=RECENT_ADMIN_SIGN_IN):
            return require_recent_sign_in(browser, _back_here())
        return view(Acting(browser=browser, admin=admin, org=org), **rest)

    return wrapper


def operator_view(view):
    """For the operator's pages (every client, social provider, signing key): calls
    `view(admin, **rest)` for a recently signed-in operator; org admins get 403."""

    @wraps(view)
    def wrapper(**rest):
        browser, away = signed_in_admin()
        if away:
            return away
        if not browser.user.is_admin:
            return forbidden()
        return view(browser.user, **rest)

    return wrapper


def member(acting: Acting, user_id: str) -> User:
    """The person `user_id` names, when they belong to the acting org; else 404."""
    user = db.session.get(User, user_id[:32])
    if user is None or user.org_id != acting.org.id:
        abort(404)
    return user
