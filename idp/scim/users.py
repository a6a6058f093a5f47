"""/Users: the org's people as SCIM User resources (RFC 7643 §4.1, RFC 7644 §3).

Mapping: `userName` is the account's email (normalised, in one of the org's domains);
`name.givenName`/`familyName` and `displayName` (else `name.formatted`, else given and
family names joined) are the profile's claims; `externalId` is kept for the directory;
`active` is "not disabled", changed only through `accounts.disable`/`enable`, so that
deactivating signs the person out everywhere (back-channel logout included). Everything
else the directory sends (emails, phone numbers, title, the enterprise extension ...) is
kept in `scim_data` and returned as sent. A password in a request is ignored: people of
an org sign in by its IdP, or with a password they choose from the invitation mail.

Decisions:
- A token sees the org's members except operators (`is_admin`): an org's directory
  never manages this deployment's operators (like an org admin cannot).
- Creating a user whose address already has an account: an account of this org is a 409
  (uniqueness), so is one of another org or an operator's. An account in no org is adopted
  into the org, as a just-in-time SSO sign-in would (`accounts.join_org`): the org proved
  the domain. An unverified row, or one another org let go (DELETE; the domain may have
  changed hands since), is first wiped of all it holds (`accounts.wipe_unproven`): its
  password, passkeys, linked accounts, factors, sessions and grants.
- A new account is verified (the org vouches for its domain), has no password and is
  mailed the invitation once, when it is created active and the org has no IdP of its own;
  so is an adopted account that was wiped.
- DELETE disables the account (signed out everywhere, no method signs it in), takes it out
  of the org and its groups, forgets its SCIM data and remembers which org it left
  (`left_org_id`); the row stays, so the address can be neither signed up for nor signed
  in with again. Provisioning the same userName again adopts that row back (by the rule
  above): by the same org (a rehire) with everything it held, by another org wiped.
- Renaming a person (PUT or PATCH of userName) to an address held by an unverified sign-up
  in no org (not an operator's) removes that row, its links and events with it; any other
  holder is a 409.
- PUT replaces; an `active` left out of a PUT leaves the account as it is.
"""

from __future__ import annotations

from flask import request
from sqlalchemy import bindparam, false, func, or_, select

from federation.discovery import domain_of

from .. import accounts, audit, mail_tokens
from ..admin.invite import prepare_invitation
from ..emails import normalize
from ..store import Group, GroupMember, User, db, new_id, utcnow
from . import patch
from .errors import ScimError, invalid_value, mutability, not_found, scim_response
from .tokens import ScimOrg
from .query import BooleanAttribute, DateAttribute, StringAttribute, list_response, search, within_budget
from .views import (
    CORE_USER,
    ENTERPRISE_USER,
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

FILTERABLE = {
    ("username", None): StringAttribute(User.email, stored_lower=True),
    ("emails", None): StringAttribute(User.email, stored_lower=True),
    ("emails", "value"): StringAttribute(User.email, stored_lower=True),
    ("externalid", None): StringAttribute(User.external_id, case_exact=True),
    ("id", None): StringAttribute(User.id, case_exact=True),
    ("displayname", None): StringAttribute(User.name),
    ("name", "formatted"): StringAttribute(User.name),
    ("name", "givenname"): StringAttribute(User.given_name),
    ("name", "familyname"): StringAttribute(User.family_name),
    ("active", None): BooleanAttribute(User.disabled, negated=True),
    ("meta", "created"): DateAttribute(User.created_at),
    ("meta", "lastmodified"): DateAttribute(User.updated_at),
}
BOOLEANS = {("active", None)} | {(a, "primary") for a in (
    "emails", "phonenumbers", "ims", "photos", "addresses", "entitlements", "roles", "x509certificates")}
READ_ONLY = {"id", "meta", "groups"}
EXTENSIONS = {ENTERPRISE_USER.lower(): ENTERPRISE_USER}
# Attributes with a column (or none at all): everything else goes to scim_data.
MAPPED = {"schemas", "id", "meta", "username", "name", "displayname", "externalid", "active", "groups", "password"}
LIMITS = {"givenName": 100, "familyName": 100, "displayName": 200, "externalId": 255}


def in_org(org_: ScimOrg):
    """The one scope of every query here: the org's people, operators excepted."""
    return (User.org_id == org_.id) & (User.is_admin == false())


def member(org_: ScimOrg, user_id: str) -> User:
    """The person `user_id` names, when the token's org may see them; else 404."""
    user = db.session.execute(select(User).where(User.id == user_id[:32], in_org(org_))).scalar_one_or_none()
    if user is None:
        raise not_found(f"User {user_id} not found")
    return user


# --- representation -------------------------------------------------------------------

# Only the token's org's groups: someone moved here from another org keeps that org's
# membership rows until its directory writes the group (`groups._members_of` reads them so too).
_GROUPS_OF = (select(GroupMember.user_id, Group).join(Group, Group.id == GroupMember.group_id)
              .where(GroupMember.user_id.in_(bindparam("user_ids", expanding=True)),
                     Group.org_id == bindparam("org_id"))
              .order_by(Group.display_name))


def groups_of(user_ids: list[str]) -> dict[str, list[Group]]:
    found: dict[str, list[Group]] = {uid: [] for uid in user_ids}
    if user_ids:
        rows = db.session.execute(_GROUPS_OF, {"user_ids": user_ids, "org_id": org().id})
        for user_id, group in rows:
            found[user_id].append(group)
    return found


def _group_counts(users: list[User]) -> dict[str, int]:
    """How many groups `groups_of` would read for each person of a list page."""
    if len(users) < 2:  # a page always holds its first person
        return {}
    return dict(db.session.execute(
        select(GroupMember.user_id, func.count()).join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id.in_([u.id for u in users]), Group.org_id == org().id)
        .group_by(GroupMember.user_id)).all())


def representation(user: User, groups: list[Group]) -> dict:
    data = dict(user.scim_data or {})
    name = dict(data.pop("name", None) or {})
    emails = data.pop("emails", None) or [{"value": user.email, "type": "work", "primary": True}]
    doc: dict = {"schemas": [CORE_USER] + [urn for urn in EXTENSIONS.values() if urn in data], "id": user.id}
    if user.external_id:
        doc["externalId"] = user.external_id
    doc["userName"] = user.email
    if user.given_name:
        name["givenName"] = user.given_name
    if user.family_name:
        name["familyName"] = user.family_name
    if name:
        doc["name"] = name
    if user.name:
        doc["displayName"] = user.name
    doc["active"] = not user.disabled
    doc["emails"] = emails
    doc.update(data)
    if groups:
        doc["groups"] = [{"value": g.id, "display": g.display_name, "$ref": f"{base_url()}/Groups/{g.id}",
                          "type": "direct"} for g in groups]
    doc["meta"] = {"resourceType": "User", "created": timestamp(user.created_at),
                   "lastModified": timestamp(user.updated_at), "location": f"{base_url()}/Users/{user.id}",
                   "version": version_of(user.updated_at)}
    return doc


def _one(user: User) -> dict:
    return representation(user, groups_of([user.id])[user.id])


# --- reading a request ----------------------------------------------------------------

def _string(value, label: str, limit: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid_value(f"{label} must be a string")
    value = value.strip()
    if limit and len(value) > limit:
        raise invalid_value(f"{label} is longer than {limit} characters")
    return value or None


def _boolean(value, label: str) -> bool | None:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if value is not None and not isinstance(value, bool):
        raise invalid_value(f"{label} must be true or false")
    return value


class Fields:
    """A User document read and checked: what goes into columns, and the rest. `current` is
    the person's address when the document replaces theirs."""

    def __init__(self, doc: dict, org_: ScimOrg, current: str | None = None):
        by_name = {k.lower(): (k, v) for k, v in doc.items()}

        def get(name):
            return by_name.get(name, (None, None))[1]

        user_name = get("username")
        if not isinstance(user_name, str) or not user_name.strip():
            raise invalid_value("userName is required")
        self.email = normalize(user_name)
        if self.email is None:
            raise invalid_value("userName must be one email address")
        # An address being given must be at one of the org's domains; one the person has kept
        # stays theirs when the org gives its domain up, or every later write (their
        # deactivation too) would be refused.
        if self.email != current and domain_of(self.email) not in org_.domains:
            raise invalid_value("userName must be an address in one of the org's domains")
        self.external_id = _string(get("externalid"), "externalId", LIMITS["externalId"])
        name = get("name")
        if name is not None and not isinstance(name, dict):
            raise invalid_value("name must be an object")
        name = {k: v for k, v in (name or {}).items()}
        name_by = {k.lower(): k for k in name}
        self.given_name = _string(name.pop(name_by.get("givenname"), None), "name.givenName", LIMITS["givenName"])
        self.family_name = _string(name.pop(name_by.get("familyname"), None), "name.familyName",
                                   LIMITS["familyName"])
        formatted = _string(name.get(name_by.get("formatted")), "name.formatted", LIMITS["displayName"])
        display = _string(get("displayname"), "displayName", LIMITS["displayName"])
        self.name = display or formatted or accounts.joined_name(self.given_name, self.family_name)
        self.active = _boolean(get("active"), "active")
        extras = {k: v for k, v in doc.items() if k.lower() not in MAPPED}
        if name:
            extras["name"] = name
        for key in list(extras):
            if key.lower() in EXTENSIONS:
                extension = extras.pop(key)
                if not isinstance(extension, dict):
                    raise invalid_value(f"{key} must be an object")
                extras[EXTENSIONS[key.lower()]] = _enterprise(extension)
            elif key.lower().startswith("urn:"):
                raise invalid_value(f"Unknown schema extension {key}")
        emails = next((v for k, v in extras.items() if k.lower() == "emails"), None)
        if emails is not None and not isinstance(emails, list):
            raise invalid_value("emails must be a list")
        self.scim_data = extras or None
        self.ident = get("id")


def _enterprise(extension: dict) -> dict:
    """Entra ID sends the manager as a bare id; RFC 7643 §4.3 makes it an object."""
    out = dict(extension)
    for key in [k for k in out if k.lower() == "manager"]:
        if isinstance(out[key], str):
            out[key] = {"value": out[key]}
        elif out[key] is not None and not isinstance(out[key], dict):
            raise invalid_value("manager must be an object")
    return out


def _unique(org_: ScimOrg, fields: Fields, user: User) -> None:
    """409 for an externalId or a userName another account holds; but the new address of a
    rename held by a stranger's unverified sign-up is freed instead, in the caller's
    transaction (`accounts.remove_unproven`, which deletes only such a row)."""
    if fields.external_id is not None:
        clash = db.session.execute(select(User.id).where(in_org(org_), User.external_id == fields.external_id)
                                   ).scalar()
        if clash is not None and clash != user.id:
            raise ScimError(409, "externalId is already used by another user of the org", "uniqueness")
    if fields.email == user.email:
        return
    if db.session.execute(select(User.id).where(User.email == fields.email)).scalar() is None:
        return
    removed = accounts.remove_unproven(fields.email)
    if removed is None:
        raise ScimError(409, "userName is already in use", "uniqueness")
    audit.record("scim.sign_up_removed", user, org=org_, via="scim", removed=removed, commit=False)


def _store(user: User, fields: Fields) -> None:
    if user.email is not None and fields.email != user.email:
        # Links mailed to the old address (invitation, reset) name a mailbox that is no
        # longer this person's: they must not set the password of the renamed account.
        mail_tokens.void_all(user)
    user.email = fields.email
    user.external_id = fields.external_id
    user.given_name = fields.given_name
    user.family_name = fields.family_name
    user.name = fields.name
    user.scim_data = fields.scim_data


def _set_active(user: User, active: bool | None, org_: ScimOrg) -> None:
    """Through `accounts`, so that a deactivation ends every session and grant at once."""
    if active is False and not user.disabled:
        accounts.disable(user)
        audit.record("scim.user_disabled", user, org=org_, via="scim")
    elif active is True and user.disabled:
        accounts.enable(user)
        audit.record("scim.user_enabled", user, org=org_, via="scim")


# --- views ------------------------------------------------------------------------------

@scim_route("/Users", methods=["GET"])
def list_users():
    return _search(request.args.to_dict())


@scim_route("/Users/.search", methods=["POST"])
def search_users():
    from .query import search_arguments
    from flask import g

    args = search_arguments()
    g.scim_search_attributes = args.get("attributes")
    g.scim_search_excludedAttributes = args.get("excludedAttributes")
    return _search(args)


def _search(args: dict):
    users, total, page = search(User, in_org(org()), FILTERABLE, args)
    groups = {}
    if selected("groups"):
        users = within_budget(users, _group_counts(users))
        groups = groups_of([u.id for u in users])
    resources = [project(representation(u, groups.get(u.id, []))) for u in users]
    return scim_response(list_response(resources, total, page))


@scim_route("/Users", methods=["POST"])
def create_user():
    org_ = org()
    fields = Fields(read_json(), org_)
    existing, clash = _holders(org_, fields)
    if existing is not None and (existing.org_id is not None or existing.is_admin):
        raise ScimError(409, "userName is already in use", "uniqueness")
    if clash:
        raise ScimError(409, "externalId is already used by another user of the org", "uniqueness")
    active = fields.active is not False
    if existing is None:
        return _create(org_, fields, active)
    user = db.session.get(User, existing.id)
    if user is None or user.org_id is not None or user.is_admin:  # changed since `_holders` read it
        raise ScimError(409, "userName is already in use", "uniqueness")
    wiped = accounts.join_org(user, org_)
    user.email_verified = True
    _store(user, fields)
    # Wiped, the person has no way in but the org's IdP: else the invitation, as for a new account.
    send = prepare_invitation(user, org_, own_idp=False) if wiped and active and not org_.own_idp else None
    audit.record("scim.user_adopted", user, org=org_, via="scim", wiped=wiped, commit=False)
    db.session.commit()
    _set_active(user, active, org_)  # enabled before the link can be opened: it refuses a disabled account
    if send is not None:
        send()
    return resource_response(_one(user), 201)


_INSERT_USER = User.__table__.insert()


def _create(org_: ScimOrg, fields: Fields, active: bool):
    """A new account. It, its audit event and the invitation's token are one transaction (one
    commit, on SQLite one fsync). The account is a Core INSERT (the ORM's flush of it cost
    more than the rest of the write), written first: the audit event, inserted at once on
    the same connection, names it. The User object is never in the session: it stands for
    the row to the audit event, the invitation and the answer."""
    now = utcnow()
    user = User(id=new_id(), email=fields.email, email_verified=True, org_id=org_.id, disabled=not active,
                is_admin=False, org_admin=False, created_at=now, updated_at=now)
    _store(user, fields)
    with db.session.no_autoflush:
        db.session.connection().execute(_INSERT_USER, {
            "id": user.id, "email": user.email, "email_verified": True, "org_id": org_.id, "disabled": not active,
            "is_admin": False, "org_admin": False, "external_id": user.external_id, "given_name": user.given_name,
            "family_name": user.family_name, "name": user.name, "scim_data": user.scim_data,
            "created_at": now, "updated_at": now})
        audit.record("scim.user_created", user, org=org_, via="scim", commit=False)
        send = prepare_invitation(user, org_, own_idp=False, new_account=True) if active and not org_.own_idp else None
    db.session.commit()
    if send is not None:
        send()
    return resource_response(representation(user, []), 201)  # new: in no group yet


# Built once (making it anew cost about as much as running it). external_id = NULL is never
# true, so without an externalId the query finds the address's holder alone.
_HOLDERS = select(User.id, User.email, User.org_id, User.is_admin, User.external_id).where(or_(
    User.email == bindparam("email"),
    (User.org_id == bindparam("org_id")) & (User.is_admin == false()) & (User.external_id == bindparam("external_id"))))


def _holders(org_: ScimOrg, fields: Fields):
    """For a create, in one query: the account that has the address (any org, or none: a row
    of id, email, org_id, is_admin, external_id), and whether another person of the org
    (`in_org`) has the externalId."""
    found = db.session.execute(_HOLDERS, {"email": fields.email, "org_id": org_.id,
                                          "external_id": fields.external_id}).all()
    existing = next((row for row in found if row.email == fields.email), None)
    clash = fields.external_id is not None and any(
        row is not existing and row.external_id == fields.external_id for row in found)
    return existing, clash


@scim_route("/Users/<user_id>", methods=["GET"])
def get_user(user_id: str):
    return resource_response(_one(member(org(), user_id)))


def _replace(user: User, doc: dict, org_: ScimOrg):
    fields = Fields(doc, org_, user.email)
    if fields.ident is not None and fields.ident != user.id:
        raise mutability("id cannot be changed")
    _unique(org_, fields, user)
    _store(user, fields)
    db.session.commit()
    audit.record("scim.user_updated", user, org=org_, via="scim")
    _set_active(user, fields.active, org_)
    return resource_response(_one(user))


@scim_route("/Users/<user_id>", methods=["PUT"])
def replace_user(user_id: str):
    org_ = org()
    user = member(org_, user_id)
    check_if_match(version_of(user.updated_at))
    return _replace(user, read_json(), org_)


@scim_route("/Users/<user_id>", methods=["PATCH"])
def patch_user(user_id: str):
    org_ = org()
    user = member(org_, user_id)
    check_if_match(version_of(user.updated_at))
    operations = patch.operations_of(read_json())
    before = _one(user)
    after = patch.apply(patch.Document(before, BOOLEANS, READ_ONLY, EXTENSIONS), operations)
    for key in [k for k in after if k.lower() in READ_ONLY - {"id"}]:
        del after[key]
    _names_follow(before, after)
    return _replace(user, after, org_)


def _names_follow(before: dict, after: dict) -> None:
    """A PATCH of name.formatted, or of the given or family name of someone whose display
    name was made of them, changes the display name too (it is one column, `name`)."""
    if after.get("displayName") != before.get("displayName"):
        return
    old, new = before.get("name") or {}, after.get("name") or {}
    new = new if isinstance(new, dict) else {}
    if new.get("formatted") != old.get("formatted") and new.get("formatted"):
        after["displayName"] = new["formatted"]
        return
    joined_before = " ".join(p for p in (old.get("givenName"), old.get("familyName")) if p)
    if before.get("displayName") in (None, joined_before):
        parts = (p if isinstance(p, str) else None for p in (new.get("givenName"), new.get("familyName")))
        after["displayName"] = accounts.joined_name(*parts)


@scim_route("/Users/<user_id>", methods=["DELETE"])
def delete_user(user_id: str):
    org_ = org()
    user = member(org_, user_id)
    check_if_match(version_of(user.updated_at))
    # Disabled first: a DELETE failing between the two commits leaves a disabled person the
    # directory still sees (its retry completes), not an enabled one gone from its view.
    accounts.disable(user)
    accounts.leave_org(user, via="scim")
    db.session.commit()
    audit.record("scim.user_deleted", user, org=org_, via="scim")
    return scim_response(None, 204)
