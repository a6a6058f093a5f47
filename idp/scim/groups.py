"""/Groups: the org's groups (RFC 7643 §4.2). Members are people of the same org, by id;
a group's display name is unique within the org. Products asking for the scope `groups`
get the names of a person's groups in the `groups` claim (`idp.oauth.claims`)."""

from __future__ import annotations

from flask import g, request
from sqlalchemy import delete, exists, func, select

from .. import audit
from ..store import Group, GroupMember, User, db, utcnow
from . import patch
from .errors import ScimError, invalid_filter, invalid_value, mutability, not_found, scim_response
from .tokens import ScimOrg
from .query import Custom, DateAttribute, StringAttribute, list_response, search, within_budget
from .users import in_org
from .views import (
    CORE_GROUP,
    base_url,
    check_if_match,
    org,
    project,
    read_json,
    resource_response,
    scim_route,
    selected,
    timestamp,
    version_of,
)

MAX_NAME = 256
# Ids per `IN (...)`: PostgreSQL binds at most 65,535 parameters to a statement, and an org's
# "All employees" group has more members than that.
BATCH = 10_000


def _batches(ids: set[str]):
    ordered = sorted(ids)
    for start in range(0, len(ordered), BATCH):
        yield ordered[start:start + BATCH]


def _membership(op: str, value):
    # a membership row of someone who has since left the org is no membership (`_members_of`)
    has_members = (select(GroupMember.user_id).join(User, User.id == GroupMember.user_id)
                   .where(GroupMember.group_id == Group.id, in_org(org())))
    if op == "pr":
        return exists(has_members)
    if op != "eq" or not isinstance(value, str):
        raise invalid_filter("members can be filtered with eq on a user id only")
    return exists(has_members.where(GroupMember.user_id == value))


FILTERABLE = {
    ("displayname", None): StringAttribute(Group.display_name),
    ("externalid", None): StringAttribute(Group.external_id, case_exact=True),
    ("id", None): StringAttribute(Group.id, case_exact=True),
    ("members", None): Custom(_membership),
    ("members", "value"): Custom(_membership),
    ("meta", "created"): DateAttribute(Group.created_at),
    ("meta", "lastmodified"): DateAttribute(Group.updated_at),
}
READ_ONLY = {"id", "meta"}


def _group(org_: ScimOrg, group_id: str) -> Group:
    group = db.session.execute(select(Group).where(Group.id == group_id[:32], Group.org_id == org_.id)
                               ).scalar_one_or_none()
    if group is None:
        raise not_found(f"Group {group_id} not found")
    return group


def _members_of(group_ids: list[str]) -> dict[str, list[User]]:
    """The members of the token's org's groups `group_ids` who are still people of that org
    (an account moved to another org keeps its membership rows until the group is written)."""
    found: dict[str, list[User]] = {gid: [] for gid in group_ids}
    if group_ids:
        rows = db.session.execute(select(GroupMember.group_id, User).join(User, User.id == GroupMember.user_id)
                                  .where(GroupMember.group_id.in_(group_ids), in_org(org())).order_by(User.email))
        for group_id, user in rows:
            found[group_id].append(user)
    return found


def representation(group: Group, members: list[User] | None) -> dict:
    doc = {"schemas": [CORE_GROUP], "id": group.id, "displayName": group.display_name}
    if group.external_id:
        doc["externalId"] = group.external_id
    if members:
        doc["members"] = [{"value": u.id, "display": u.name or u.email, "$ref": f"{base_url()}/Users/{u.id}",
                           "type": "User"} for u in members]
    doc["meta"] = {"resourceType": "Group", "created": timestamp(group.created_at),
                   "lastModified": timestamp(group.updated_at), "location": f"{base_url()}/Groups/{group.id}",
                   "version": version_of(group.updated_at)}
    return doc


def _one(group: Group) -> dict:
    return representation(group, _members_of([group.id])[group.id])


class Fields:
    def __init__(self, doc: dict, org_: ScimOrg):
        by_name = {k.lower(): v for k, v in doc.items()}
        name = by_name.get("displayname")
        if not isinstance(name, str) or not name.strip():
            raise invalid_value("displayName is required")
        if len(name.strip()) > MAX_NAME:
            raise invalid_value(f"displayName is longer than {MAX_NAME} characters")
        self.display_name = name.strip()
        external_id = by_name.get("externalid")
        if external_id is not None and (not isinstance(external_id, str) or len(external_id) > 255):
            raise invalid_value("externalId must be a string of at most 255 characters")
        self.external_id = external_id or None
        self.ident = by_name.get("id")
        members = by_name.get("members") or []
        if not isinstance(members, list):
            raise invalid_value("members must be a list")
        ids = set()
        for item in members:
            value = item.get(next((k for k in item if k.lower() == "value"), "value")) if isinstance(item, dict) \
                else None
            if not isinstance(value, str) or not value:
                raise invalid_value("Each member needs the value of a user id")
            ids.add(value)
        if ids:
            known = set()
            for batch in _batches(ids):
                known.update(db.session.execute(select(User.id).where(User.id.in_(batch), in_org(org_))).scalars())
            unknown = ids - known
            if unknown:
                raise invalid_value(f"Not users of this org: {', '.join(sorted(unknown)[:10])}")
        self.member_ids = ids


def _unique(org_: ScimOrg, fields: Fields, group: Group | None) -> None:
    clash = db.session.execute(select(Group.id).where(Group.org_id == org_.id,
                                                      Group.display_name == fields.display_name)).scalar()
    if clash is not None and (group is None or clash != group.id):
        raise ScimError(409, "displayName is already used by another group of the org", "uniqueness")


def _store(group: Group, fields: Fields) -> dict:
    """Write the group and its members; how many members were added and removed."""
    group.display_name = fields.display_name
    group.external_id = fields.external_id
    group.updated_at = utcnow()  # membership lives in another table: the version must move too
    current = set(db.session.execute(select(GroupMember.user_id).where(GroupMember.group_id == group.id)).scalars())
    gone, new = current - fields.member_ids, fields.member_ids - current
    for batch in _batches(gone):
        db.session.execute(delete(GroupMember).where(GroupMember.group_id == group.id,
                                                     GroupMember.user_id.in_(batch)))
    for user_id in new:
        db.session.add(GroupMember(group_id=group.id, user_id=user_id))
    return {"added": len(new), "removed": len(gone)}


@scim_route("/Groups", methods=["GET"])
def list_groups():
    return _search(request.args.to_dict())


@scim_route("/Groups/.search", methods=["POST"])
def search_groups():
    from .query import search_arguments

    args = search_arguments()
    g.scim_search_attributes = args.get("attributes")
    g.scim_search_excludedAttributes = args.get("excludedAttributes")
    return _search(args)


def _member_counts(groups: list[Group]) -> dict[str, int]:
    """How many members `_members_of` would read for each group of a list page."""
    if len(groups) < 2:  # a page always holds its first group
        return {}
    return dict(db.session.execute(
        select(GroupMember.group_id, func.count()).join(User, User.id == GroupMember.user_id)
        .where(GroupMember.group_id.in_([x.id for x in groups]), in_org(org())).group_by(GroupMember.group_id)).all())


def _search(args: dict):
    groups, total, page = search(Group, Group.org_id == org().id, FILTERABLE, args)
    members = {}
    if selected("members"):
        groups = within_budget(groups, _member_counts(groups))
        members = _members_of([x.id for x in groups])
    resources = [project(representation(x, members.get(x.id))) for x in groups]
    return scim_response(list_response(resources, total, page))


@scim_route("/Groups", methods=["POST"])
def create_group():
    org_ = org()
    fields = Fields(read_json(), org_)
    _unique(org_, fields, None)
    group = Group(org_id=org_.id, display_name=fields.display_name)
    db.session.add(group)
    db.session.flush()
    changes = _store(group, fields)
    audit.record("scim.group_created", None, org=org_, via="scim", group=group.id, name=group.display_name,
                 **changes)
    return resource_response(_one(group), 201)


@scim_route("/Groups/<group_id>", methods=["GET"])
def get_group(group_id: str):
    group = _group(org(), group_id)
    return resource_response(representation(group, _members_of([group.id])[group.id] if selected("members") else None))


def _replace(group: Group, doc: dict, org_: ScimOrg):
    fields = Fields(doc, org_)
    if fields.ident is not None and fields.ident != group.id:
        raise mutability("id cannot be changed")
    _unique(org_, fields, group)
    changes = _store(group, fields)
    audit.record("scim.group_updated", None, org=org_, via="scim", group=group.id, name=group.display_name,
                 **changes)
    return resource_response(_one(group))


@scim_route("/Groups/<group_id>", methods=["PUT"])
def replace_group(group_id: str):
    org_ = org()
    group = _group(org_, group_id)
    check_if_match(version_of(group.updated_at))
    return _replace(group, read_json(), org_)


@scim_route("/Groups/<group_id>", methods=["PATCH"])
def patch_group(group_id: str):
    org_ = org()
    group = _group(org_, group_id)
    check_if_match(version_of(group.updated_at))
    operations = patch.operations_of(read_json())
    before = _one(group)
    after = patch.apply(patch.Document(before, set(), READ_ONLY, {}), operations)
    after.pop("meta", None)
    return _replace(group, after, org_)


@scim_route("/Groups/<group_id>", methods=["DELETE"])
def delete_group(group_id: str):
    org_ = org()
    group = _group(org_, group_id)
    check_if_match(version_of(group.updated_at))
    db.session.execute(delete(GroupMember).where(GroupMember.group_id == group.id))
    db.session.delete(group)
    audit.record("scim.group_deleted", None, org=org_, via="scim", group=group.id, name=group.display_name)
    return scim_response(None, 204)
