"""Admin Center, Enterprise Sign-In: not built yet (a placeholder so the section has its address)."""

from __future__ import annotations

from flask import render_template

from . import bp
from .access import Acting, admin_view


@bp.get("/admin/orgs/<org_id>/enterprise-sign-in")
@admin_view
def enterprise(acting: Acting):
    return render_template("admin/placeholder.html", org=acting.org, title="Enterprise Sign-In")
