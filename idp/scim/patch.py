"""PATCH (RFC 7644 §3.5.2) on a resource's JSON document, in the forms directories send.

The view turns the resource into its document, `apply` runs the operations on it, and the
result is stored as a replacement would be, through the same checks. Besides the RFC's
forms this accepts what Entra ID and Okta send: `"op": "Replace"` (any case), booleans as
the strings "True"/"False", a `value` object without a `path` whose keys are themselves
paths (`"name.givenName"`, an extension URN plus attribute), and removal of members by a
`value` list (`{"op": "Remove", "path": "members", "value": [{"value": "id"}]}`).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .errors import ScimError, invalid_syntax, invalid_value, mutability, no_target
from .filters import matches, parse_patch_path, size

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_OPERATIONS = 1000
# Filter steps a request's filtered operations may take, all operations together: each scans the
# whole attribute and runs its filter (every node of it) on each value, so 1,000 one-term
# filters, or 24 of a hundred terms, over a 40,000-member list cost minutes of CPU. Okta sends
# one filtered removal per request; 1,000 one-term operations on a group of 1,000 still fit.
MAX_SCANNED = 1_000_000


def _names(attributes: list[dict]):
    for attribute in attributes:
        yield attribute["name"]
        yield from _names(attribute.get("subAttributes", []))


def _canonical_names() -> dict[str, str]:
    from .views import SCHEMAS

    return {name.lower(): name for schema in SCHEMAS for name in _names(schema["attributes"])} | {
        "externalid": "externalId", "id": "id", "meta": "meta", "schemas": "schemas"}


CANONICAL: dict[str, str] = {}


def canonical(name: str) -> str:
    """The schema's spelling of a lower-cased attribute name (paths are case-insensitive,
    but what we store and return is spelt as RFC 7643 does)."""
    if not CANONICAL:
        CANONICAL.update(_canonical_names())
    return CANONICAL.get(name.lower(), name)


def _key(container: dict, name: str) -> str | None:
    """The existing key of `container` spelt `name` in any case."""
    return next((k for k in container if k.lower() == name), None)


def operations_of(body: dict) -> list[dict]:
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_SCHEMA not in schemas):
        raise invalid_syntax(f"A PATCH request's schemas must hold {PATCH_SCHEMA}")
    ops = body.get(_key(body, "operations") or "Operations")
    if not isinstance(ops, list) or not ops:
        raise invalid_syntax("Operations must be a non-empty list")
    if len(ops) > MAX_OPERATIONS:
        raise ScimError(413, f"At most {MAX_OPERATIONS} operations per request")
    for op in ops:
        if not isinstance(op, dict):
            raise invalid_syntax("Each operation must be an object")
    return ops


class Document:
    """The document being patched, with what the resource says about its attributes:
    `booleans` lists boolean attributes (as (attr, sub)), `read_only` those no operation
    may touch, `extensions` the schema extensions it may carry."""

    def __init__(self, doc: dict, booleans: set, read_only: set, extensions: dict[str, str]):
        self.doc = copy.deepcopy(doc)
        self.booleans = booleans
        self.read_only = read_only
        self.extensions = extensions  # lower-cased URN → canonical URN
        self.scanned = 0
        # id(object) → [the object, its length when indexed, lower-cased key → key] (see `key`)
        self._indexes: dict[int, list] = {}

    def key(self, obj: dict, name: str) -> str | None:
        """`_key` in constant time: looking each attribute of a path-less value (or each key of
        a merged object) up among all those before it was quadratic, a minute of a worker's CPU
        for one 1 MB request. An object's index is made at its first look-up and kept by `put`;
        a key removed or added otherwise changes the object's length, and the index is made anew."""
        held = self._indexes.get(id(obj))
        if held is None or held[0] is not obj or held[1] != len(obj):
            index: dict[str, str] = {}
            for k in obj:
                index.setdefault(k.lower(), k)
            held = self._indexes[id(obj)] = [obj, len(obj), index]
        found = held[2].get(name)
        return found if found is not None and found in obj else None

    def put(self, obj: dict, key: str, value: Any) -> None:
        """obj[key] = value, kept in the object's index (`key`)."""
        held = self._indexes.get(id(obj))
        consistent = held is not None and held[0] is obj and held[1] == len(obj)
        obj[key] = value
        if consistent:
            held[2].setdefault(key.lower(), key)
            held[1] = len(obj)

    def scan(self, values: Any, value_filter) -> None:
        """Count the steps a filtered operation is about to take (its values times its filter's
        nodes), against MAX_SCANNED."""
        self.scanned += (len(values) if isinstance(values, list) else 1) * size(value_filter)
        if self.scanned > MAX_SCANNED:
            raise ScimError(413, "The operations' filters would look at too many values; send fewer per request")

    def container(self, schema: str | None, create: bool) -> dict | None:
        if schema is None:
            return self.doc
        urn = self.extensions.get(schema)
        if urn is None:
            raise invalid_value(f"Unknown schema {schema}")
        key = self.key(self.doc, schema)
        if key is None:
            if not create:
                return None
            key = urn
            self.put(self.doc, key, {})
            schemas = self.doc.setdefault("schemas", [])
            if urn not in schemas:
                schemas.append(urn)
        return self.doc[key]

    def name_of(self, container: dict, attr: str) -> str:
        return self.key(container, attr) or canonical(attr)

    def coerce(self, attr: str, sub: str | None, value: Any) -> Any:
        """Booleans sent as strings ("True", "false"), as Entra ID does."""
        if (attr, sub) in self.booleans and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if sub is None and isinstance(value, dict):
            return {k: self.coerce(attr, k.lower(), v) for k, v in value.items()}
        if sub is None and isinstance(value, list):
            return [self.coerce(attr, None, v) for v in value]
        return value


def apply(document: Document, operations: list[dict]) -> dict:
    for operation in operations:
        op_key = _key(operation, "op")
        op = operation.get(op_key) if op_key else None
        if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
            raise invalid_syntax("Each operation's op is add, replace or remove")
        op = op.lower()
        path = operation.get(_key(operation, "path") or "path")
        value_key = _key(operation, "value")
        has_value = value_key is not None
        value = operation.get(value_key) if has_value else None
        if path in (None, ""):
            if op == "remove":
                raise no_target("remove needs a path")
            if not isinstance(value, dict):
                raise invalid_syntax("Without a path, value must be an object of attributes")
            for name, item in value.items():
                if name.lower() in document.extensions and isinstance(item, dict):
                    for sub_name, sub_item in item.items():
                        _apply_path(document, op, f"{name}:{sub_name}", sub_item, True)
                elif name.lower() == "schemas":
                    continue
                else:
                    _apply_path(document, op, name, item, True)
        else:
            if op != "remove" and not has_value:
                raise invalid_syntax(f"{op} needs a value")
            _apply_path(document, op, path, value, has_value)
    return document.doc


def _apply_path(document: Document, op: str, path: str, value: Any, has_value: bool) -> None:
    (schema, attr, sub), value_filter, filter_sub = parse_patch_path(path)
    if schema is None and attr in document.read_only or (schema is None and attr == "schemas"):
        raise mutability(f"{attr} cannot be changed")
    if value_filter is not None:
        sub = filter_sub
    value = document.coerce(attr, sub, value)
    container = document.container(schema, create=op != "remove")
    if container is None:
        return
    name = document.name_of(container, attr)
    current = container.get(name)
    if value_filter is not None:
        document.scan(current, value_filter)
        _apply_filtered(container, name, current, op, value_filter, sub, value)
        return
    if op == "remove":
        _remove(container, name, current, sub, value if has_value else None)
        return
    if sub is not None:
        target = current if isinstance(current, dict) else {}
        document.put(target, document.key(target, sub) or canonical(sub), value)
        document.put(container, name, target)
        return
    if op == "add" and isinstance(current, list):
        additions = value if isinstance(value, list) else [value]
        # a set of the values' JSON, not `not in current`: that was quadratic in the list's length
        present = {_identity(v) for v in current}
        kept = []
        for item in additions:
            key = _identity(item)
            if key not in present:
                present.add(key)
                kept.append(item)
        document.put(container, name, current + kept)
    elif isinstance(current, dict) and isinstance(value, dict):
        merged = dict(current)
        for k, v in value.items():
            document.put(merged, document.key(merged, k.lower()) or k, v)
        document.put(container, name, merged)
    else:
        document.put(container, name, value)


def _identity(value: Any) -> str:
    """A value's identity for an add's duplicate check (objects equal whatever their key order)."""
    return json.dumps(value, sort_keys=True)


def _remove(container: dict, name: str, current: Any, sub: str | None, value: Any) -> None:
    if current is None:
        return
    if sub is not None:
        if isinstance(current, dict):
            for k in [k for k in current if k.lower() == sub]:
                del current[k]
        elif isinstance(current, list):
            for item in current:
                if isinstance(item, dict):
                    for k in [k for k in item if k.lower() == sub]:
                        del item[k]
        return
    if isinstance(current, list) and value is not None:
        # Entra ID removes members by listing them in `value` rather than in a filter.
        gone = value if isinstance(value, list) else [value]
        ids = {_identity(_value_of(v)) for v in gone}  # a value may be an object: by its JSON
        container[name] = [item for item in current if _identity(_value_of(item)) not in ids]
        return
    del container[name]


def _value_of(item: Any) -> Any:
    if isinstance(item, dict):
        key = _key(item, "value")
        return item.get(key) if key else None
    return item


def _apply_filtered(container: dict, name: str, current: Any, op: str, value_filter, sub: str | None,
                    value: Any) -> None:
    items = current if isinstance(current, list) else []
    hits = [i for i, item in enumerate(items) if matches(value_filter, item)]
    if op == "remove":
        if sub is None:
            container[name] = [item for i, item in enumerate(items) if i not in hits]
        else:
            for i in hits:
                if isinstance(items[i], dict):
                    for k in [k for k in items[i] if k.lower() == sub]:
                        del items[i][k]
        return
    if not hits:
        # Entra ID replaces `emails[type eq "work"].value` on a user without a work email
        # and expects one: a new item made of the filter's equalities and the value.
        seed = _equalities(value_filter)
        if seed is None:
            raise no_target(f"No value of {name} matches the filter")
        item = dict(seed)
        if sub is not None:
            item[canonical(sub)] = value
        elif isinstance(value, dict):
            item.update(value)
        else:
            raise invalid_value("The value must be an object")
        container[name] = [*items, item]
        return
    for i in hits:
        if sub is not None:
            item = items[i] if isinstance(items[i], dict) else {"value": items[i]}
            item[_key(item, sub) or canonical(sub)] = value
            items[i] = item
        elif isinstance(value, dict):
            if op == "replace":
                items[i] = value
            else:
                items[i] = {**items[i], **value} if isinstance(items[i], dict) else value
        else:
            raise invalid_value("The value must be an object")
    container[name] = items


def _equalities(node) -> dict | None:
    if node[0] == "cmp" and node[2] == "eq" and node[1][2] is None:
        return {canonical(node[1][1]): node[3]}
    if node[0] == "and":
        left, right = _equalities(node[1]), _equalities(node[2])
        if left is not None and right is not None:
            return {**left, **right}
    return None
