"""SCIM 2.0 provisioning (RFC 7643/7644) at /scim/v2: an org's directory (Entra ID, Okta,
OneLogin ...) creates, updates, deactivates and deletes the org's people and groups.

Every route answers only to a bearer token of one org (`tokens.org_of_request`, applied by
the blueprint's `before_request`) and sees that org alone. Errors are SCIM error bodies.
"""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")

from . import groups, users, views  # noqa: E402,F401  (the views register themselves on bp)
