"""Admin Center, Sign-in options: the org's login policy (second factor required, social
sign-in, passkeys). What each option does at sign-in is decided in `idp.accounts`."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from .. import audit
from ..i18n import gettext as _
from ..mfa import has_second_factor
from ..store import db
from . import bp
from .access import Acting, admin_view

OPTIONS = ("require_mfa", "allow_social", "allow_passkeys")


def _page(acting: Acting, status: int = 200, error: str | None = None, values: dict | None = None):
    values = values or {name: getattr(acting.org, name) for name in OPTIONS}
    return render_template("admin/options.html", acting=acting, org=acting.org, values=values, error=error,
                           saved=request.args.get("saved") == "1"), status


@bp.get("/admin/orgs/<org_id>/sign-in-options")
@admin_view
def options(acting: Acting):
    return _page(acting)


@bp.post("/admin/orgs/<org_id>/sign-in-options")
@admin_view
def save_options(acting: Acting):
    values = {name: request.form.get(name) == "on" for name in OPTIONS}
    org = acting.org
    # Requiring a factor of everyone while having none would lock the admin out of this
    # very session (it stops counting at once): set one up first.
    if values["require_mfa"] and not org.require_mfa and acting.admin.org_id == org.id \
            and not has_second_factor(acting.admin):
        return _page(acting, 409, _("Set up a second factor on your own account before requiring one of "
                                    "every member."), values)
    for name, value in values.items():
        setattr(org, name, value)
    db.session.commit()
    audit.record("org.options_changed", None, org=org, actor=acting.admin, **values)
    return redirect(url_for("admin.options", org_id=org.id, saved=1))
