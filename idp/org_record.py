"""What a person leaves behind in an org they leave: the org's own record of them (its
directory's externalId and attributes, the admin role there; their memberships of its
groups go too). Apart from `idp.accounts` so that `idp orgs admin`, which writes with
SQLAlchemy Core (issue 14), clears the same columns as `accounts.leave_org`. Which org
they left is not cleared but remembered (`users.left_org_id`, set by `leave_org`, cleared
when they join an org: `accounts.join_org`, and that command)."""

from __future__ import annotations

LEFT_BEHIND = {"org_admin": False, "external_id": None, "scim_data": None}
