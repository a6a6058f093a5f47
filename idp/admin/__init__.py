"""The Admin Center (/admin): org admins manage their own org, operators any org.

Every view goes through `access.admin_view` (or `access.signed_in_admin` for /admin
itself): one rule, checked on the server, that decides who acts and on which org.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("admin", __name__)

from . import audit_log, domains, enterprise, invite, operator, options, users  # noqa: E402,F401  (the views register themselves on bp)
