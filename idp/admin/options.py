"""Admin Center, Sign-in options: not built yet (a placeholder so the section has its address)."""

from __future__ import annotations

from flask import render_template

from . import bp
from .access import Acting, admin_view


@bp.get("/admin/orgs/<org_id>/sign-in-options")
@admin_view
def options(acting: Acting):
    return render_template("admin/placeholder.html", org=acting.org, title="Sign-in options")
