"""What every SCIM route shares: the token rule, JSON bodies, versions (ETags), attribute
selection, and the static discovery endpoints (RFC 7644 §4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from flask import current_app, g, request
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import HTTPException

from . import bp
from .errors import ScimError, error_response, http_error_response, invalid_syntax, invalid_value, scim_response
from .filters import split_path, storable
from .query import MAX_COUNT
from .tokens import ScimOrg, org_of_request

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_BODY = 1024 * 1024  # bytes; a user is a few kB, a group of 10,000 members about 500 kB
# A PATCH of an extension's manager is 5 levels deep; 1 MB of "[" would be a million, and
# every recursive walk of the body (the JSON decoder, copies, the NUL check) would overflow.
MAX_DEPTH = 32


@bp.before_request
def authenticate():
    """The rule of every SCIM route, in one place: a live token of an org, whose org is
    then the only one the view sees (`g.scim_org`)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ScimError(413, "Request body too large")
    g.scim_org = org_of_request()
    from ..security import has_nul

    if has_nul(form=False):  # a JSON body is checked by `read_json`
        raise invalid_value("A NUL character is not allowed here")


@bp.errorhandler(ScimError)
def _scim_error(error: ScimError):
    return error_response(error)


@bp.errorhandler(IntegrityError)
def _conflict(error: IntegrityError):
    """Two requests creating the same person or group at once: the database's unique
    index decides, and the loser hears what a sequential request would have."""
    from ..store import db

    db.session.rollback()
    return error_response(ScimError(409, "The resource conflicts with one that exists", "uniqueness"))


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    return http_error_response(error.code or 400, error.description)


def org() -> ScimOrg:
    return g.scim_org


def issuer() -> str:
    return current_app.extensions["idp.settings"].issuer


def base_url() -> str:
    return issuer() + bp.url_prefix


def read_json() -> dict:
    """The request's JSON object (any JSON media type); invalidSyntax when it is not one."""
    data = request.get_data(cache=True)
    # A chunked body (no Content-Length) is cut at the app's MAX_CONTENT_LENGTH without an
    # error: one that reached that limit is taken as over it.
    cut_at = request.max_content_length if request.content_length is None else None
    if len(data) > MAX_BODY or (cut_at is not None and len(data) >= cut_at):
        raise ScimError(413, "Request body too large")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise invalid_syntax("The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid_syntax("The request body must be a JSON object")
    _check_values(body)
    return body


def _check_values(body: dict) -> None:
    """invalidValue for text no database column holds (`filters.storable`) or nesting deeper than
    MAX_DEPTH; walked with a stack, not recursion, whatever the depth."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not storable(value):
                raise invalid_value("A NUL character or a lone surrogate is not allowed in a value")
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise invalid_value(f"The request body is nested more than {MAX_DEPTH} levels deep")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def timestamp(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def version_of(updated_at: datetime | None) -> str:
    """A weak ETag from the row's last change (microseconds)."""
    micros = int(updated_at.replace(tzinfo=UTC).timestamp() * 1_000_000) if updated_at else 0
    return f'W/"{micros:x}"'


def check_if_match(version: str) -> None:
    """If-Match (RFC 7644 §3.14, weak comparison): 412 when the resource has changed."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return
    wanted = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if version.removeprefix("W/") not in wanted:
        raise ScimError(412, "The resource has changed since this version")


def resource_response(doc: dict, status: int = 200, *, select: bool = True):
    body = project(doc) if select else doc
    headers = {"ETag": doc["meta"]["version"]}
    if status == 201:
        headers["Location"] = doc["meta"]["location"]
    return scim_response(body, status, headers)


# Distinct names one `attributes` or `excludedAttributes` may list: more than every path of
# every schema served (about 90). `project` looks each one up in every resource of a page.
MAX_SELECTED = 200


def _selection(name: str) -> list[tuple]:
    """The paths `name` lists, read once per request (a page projects up to MAX_COUNT
    resources) and each once: a list of 100,000 names cost a worker seconds per resource."""
    memo = g.setdefault("scim_selection", {})
    if name not in memo:
        raw = request.args.get(name)
        if raw is None:
            raw = g.get("scim_search_" + name)
        parts = dict.fromkeys(p.strip().lower() for p in (raw or "").split(",") if p.strip())
        if len(parts) > MAX_SELECTED:
            raise invalid_value(f"{name} lists more than {MAX_SELECTED} attributes")
        memo[name] = list(dict.fromkeys(split_path(part) for part in parts))
    return memo[name]


def _first_keys(obj: dict) -> dict[str, str]:
    """Each lower-cased key of `obj` → its first spelling: names are looked up in it once
    each, not by a walk of every key (a page of people of 80,000 attributes each, asked for
    200 names, was minutes of a worker's CPU)."""
    index: dict[str, str] = {}
    for key in obj:
        index.setdefault(key.lower(), key)
    return index


def _grouped(paths: list[tuple]) -> dict[tuple, set | None]:
    """(schema, attribute) → the sub-attributes named, or None for the whole attribute."""
    groups: dict[tuple, set | None] = {}
    for schema, attr, sub in paths:
        if sub is None:
            groups[(schema, attr)] = None
        elif groups.setdefault((schema, attr), set()) is not None:
            groups[(schema, attr)].add(sub)
    return groups


class _Lookup:
    """Where an attribute is in a document: its container (the document or an extension's
    object) and its key there, each object indexed once (`_first_keys`)."""

    def __init__(self, doc: dict):
        self.doc = doc
        self.indexes: dict[int, dict[str, str]] = {}

    def key(self, obj: dict, name: str) -> str | None:
        index = self.indexes.get(id(obj))
        if index is None:
            index = self.indexes[id(obj)] = _first_keys(obj)
        key = index.get(name)
        return key if key in obj else None

    def find(self, schema: str | None, attr: str):
        container = self.doc
        if schema is not None:
            urn = self.key(self.doc, schema)
            container = self.doc[urn] if urn is not None else None
            if not isinstance(container, dict):
                return None, None
        return container, self.key(container, attr)


def selected(attr: str) -> bool:
    """Whether the answer shows the core attribute `attr` (lower-cased) by `attributes` and
    `excludedAttributes`: a view need not read what `project` would drop."""
    wanted = _selection("attributes")
    if wanted:
        return any(schema is None and name == attr for schema, name, _ in wanted)
    return (None, attr, None) not in _selection("excludedAttributes")


ALWAYS = {"id", "schemas", "meta"}


def project(doc: dict) -> dict:
    """The resource with `attributes` or `excludedAttributes` applied (RFC 7644 §3.9);
    id, schemas and meta always stay. Each object of the document is walked once."""
    wanted, excluded = _selection("attributes"), _selection("excludedAttributes")
    if wanted:
        out = {k: v for k, v in doc.items() if k in ALWAYS}
        lookup = _Lookup(doc)
        for (schema, attr), subs in _grouped(wanted).items():
            container, key = lookup.find(schema, attr)
            if key is None:
                continue
            target = out
            if schema is not None:
                target = out.setdefault(lookup.key(doc, schema), {})
            value = container[key]
            if subs is None:
                target[key] = value
            elif isinstance(value, dict):
                picked = {k: value[k] for k in _first_keys(value).values() if k.lower() in subs}
                if picked:
                    target[key] = picked
            elif isinstance(value, list):
                target[key] = [{k: item[k] for k in _first_keys(item).values() if k.lower() in subs}
                               if isinstance(item, dict) else {} for item in value]
        return out
    if excluded:
        out = json.loads(json.dumps(doc))
        lookup = _Lookup(out)
        for (schema, attr), subs in _grouped(excluded).items():
            if schema is None and attr in ALWAYS:
                continue
            container, key = lookup.find(schema, attr)
            if key is None:
                continue
            value = container[key]
            if subs is None:
                del container[key]
                continue
            for obj in (value if isinstance(value, list) else [value]):
                if isinstance(obj, dict):
                    for k in [k for k in obj if k.lower() in subs]:
                        del obj[k]
        return out
    return doc


def scim_route(rule: str, **options):
    """A SCIM view: registered on the blueprint, whose `authenticate` applies the token rule
    to every route (tests/test_scim.py walks the url_map to hold it to that)."""

    def decorate(view):
        bp.add_url_rule(rule, view_func=view, **options)
        return view

    return decorate


# --- discovery (static, and true to what the views do) ---------------------------------

SCHEMAS = json.loads((Path(__file__).with_name("schemas.json")).read_text())


def _with_meta(doc: dict, resource_type: str, location: str) -> dict:
    return {**doc, "meta": {"resourceType": resource_type, "location": location}}


@scim_route("/ServiceProviderConfig", methods=["GET"])
def service_provider_config():
    return scim_response({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": issuer() + "/",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "OAuth Bearer Token", "primary": True,
            "description": "A bearer token from `idp orgs scim-token ORG`; it names the org.",
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": base_url() + "/ServiceProviderConfig"},
    })


def _resource_types() -> list[dict]:
    return [
        _with_meta({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "User", "name": "User",
            "endpoint": "/Users", "description": "People of the org", "schema": CORE_USER,
            "schemaExtensions": [{"schema": ENTERPRISE_USER, "required": False}],
        }, "ResourceType", base_url() + "/ResourceTypes/User"),
        _with_meta({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": "Group", "name": "Group",
            "endpoint": "/Groups", "description": "Groups of the org's people", "schema": CORE_GROUP,
        }, "ResourceType", base_url() + "/ResourceTypes/Group"),
    ]


def _schemas() -> list[dict]:
    return [_with_meta({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"], **s}, "Schema",
                       f"{base_url()}/Schemas/{s['id']}") for s in SCHEMAS]


def _listed(resources: list[dict]):
    return scim_response({"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                          "totalResults": len(resources), "startIndex": 1, "itemsPerPage": len(resources),
                          "Resources": resources})


def _one(resources: list[dict], ident: str):
    for resource in resources:
        if resource["id"] == ident:
            return scim_response(resource)
    raise ScimError(404, "Resource not found")


@scim_route("/Me", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@scim_route("/Bulk", methods=["POST"])
def not_implemented():
    """RFC 7644 §3.11 (/Me) and §3.12: an operation the server does not support is a 501. A
    SCIM token names an org, not a person, so there is no "me"; bulk is off in
    ServiceProviderConfig."""
    raise ScimError(501, "Not implemented by this service provider")


@scim_route("/ResourceTypes", methods=["GET"])
def resource_types():
    return _listed(_resource_types())


@scim_route("/ResourceTypes/<ident>", methods=["GET"])
def resource_type(ident: str):
    return _one(_resource_types(), ident)


@scim_route("/Schemas", methods=["GET"])
def schemas():
    return _listed(_schemas())


@scim_route("/Schemas/<ident>", methods=["GET"])
def schema(ident: str):
    return _one(_schemas(), ident)
