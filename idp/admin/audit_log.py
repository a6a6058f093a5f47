"""Admin Center, Audit log: not built yet (a placeholder so the section has its address)."""

from __future__ import annotations

from flask import render_template

from . import bp
from .access import Acting, admin_view


@bp.get("/admin/orgs/<org_id>/audit-log")
@admin_view
def audit_log(acting: Acting):
    return render_template("admin/placeholder.html", org=acting.org, title="Audit log")
